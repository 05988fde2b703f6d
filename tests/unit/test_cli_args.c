/*
 * test_cli_args.c — the subcommands' option tables (cli/args.c cp_args_parse): each kind of option
 * and each error, through the program, with the messages and exit statuses users see.
 */
#include "test.h"
#include "run_cmd.h"

#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>

static const char *bin(void) {
    const char *b = getenv("CPEFT_BIN");
    return b ? b : "build/cpeft";
}

static void expect(const char *args, int status, const char *needle) {
    char out[16384];
    int rc = run_cmdf(out, sizeof out, "%s %s", bin(), args);
    CHECK(rc == status && strstr(out, needle), "cpeft %s: exit %d (expected %d), output: %.300s", args, rc, status, out);
}

TEST(help_and_unknown_options) {
    expect("eval --help", 0, "usage: cpeft eval");
    expect("merge -h", 0, "usage: cpeft merge");
    expect("eval --bogus", 2, "cpeft eval: unknown argument --bogus\nusage: cpeft eval");
    expect("adapter combine --help", 2, "cpeft adapter combine: unknown argument --help");
    expect("info --bogus", 2, "cpeft info: unknown option --bogus");
    expect("tokenize --bogus", 2, "cpeft tokenize: unknown option \"--bogus\" (see cpeft tokenize --help)");
}

TEST(values_numbers_lists_and_choices) {
    expect("convert --gguf", 2, "cpeft convert: --gguf needs a value");
    expect("eval --model m --data d --seq-len abc", 2, "cpeft eval: --seq-len: expected an integer in [1, 1048576], got \"abc\"");
    expect("eval --model m --data d --batch-size=0", 2, "--batch-size: expected an integer in [1, 65536], got \"0\"");
    expect("generate --model m --prompt x --temperature nan", 2, "cpeft generate: --temperature: expected a number, got \"nan\"");
    expect("info --peft-format zzz x", 2, "cpeft info: --peft-format: expected notebook or current, got \"zzz\"");
    char args[2048] = "merge --model m --out o";
    for (int i = 0; i < 65; i++) strcat(args, " --adapter=a");
    expect(args, 2, "cpeft merge: at most 64 --adapter options");
    /* a value given as --name=V reaches the command: the model directory is named in its error */
    expect("eval --model=/nonexistent-cpeft-dir --data d", 1, "/nonexistent-cpeft-dir");
}

TEST(positional_arguments) {
    expect("info a b", 2, "cpeft info: unexpected argument b");
    expect("tokenize --tokenizer t a b", 2, "cpeft tokenize: more than one TEXT (quote it, or use - for stdin)");
    expect("convert stray", 2, "cpeft convert: unknown argument stray");
}

int main(void) {
    RUN(help_and_unknown_options);
    RUN(values_numbers_lists_and_choices);
    RUN(positional_arguments);
    return test_summary();
}
