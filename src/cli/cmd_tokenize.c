/*
 * cmd_tokenize.c — `cpeft tokenize`: encode text with a model directory's tokenizer, decode ids,
 * look up tokens and show the special tokens. Output is plain (ids on one line) or --json.
 */
#include "cli/commands.h"
#include "cli/args.h"
#include "core/error.h"
#include "core/json_write.h"
#include "tokenizer/tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: cpeft tokenize --tokenizer DIR [--tokens] [--json] [--no-special] TEXT|-\n"
            "       cpeft tokenize --tokenizer DIR --decode \"ID ID ...\" [--skip-special] [--json]\n"
            "       cpeft tokenize --tokenizer DIR --id ID | --special\n\n"
            "Encodes TEXT (\"-\" reads standard input) with the tokenizer of a Hugging Face model directory\n"
            "(tokenizer.json, or vocab.json + merges.txt, or vocab.txt; DIR may also be a tokenizer.json)\n"
            "and prints the token ids separated by spaces, exactly as the `tokenizers` library would.\n\n"
            "  --tokenizer DIR    model directory or tokenizer.json file\n"
            "  --tokens           print the token strings instead of ids\n"
            "  --json             print {\"ids\", \"tokens\", \"offsets\"} (byte offsets into the text)\n"
            "  --no-special       do not add the special tokens the post-processor adds ([CLS], <s>, ...)\n"
            "  --pair TEXT        encode TEXT as the second sequence of a pair\n"
            "  --decode \"IDS\"     decode space- or comma-separated ids to text\n"
            "  --skip-special     with --decode: drop special tokens\n"
            "  --id ID            print the token string of one id\n"
            "  --special          print the bos, eos, pad and unk tokens and the vocabulary size\n");
}

static int fail(const char *msg) {
    fprintf(stderr, "cpeft tokenize: %s\n", msg);
    return 1;
}

static char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    for (;;) {
        if (n == cap) {
            char *p = realloc(buf, cap *= 2);
            if (!p) { free(buf); return NULL; }
            buf = p;
        }
        size_t r = fread(buf + n, 1, cap - n, stdin);
        if (r == 0) break;
        n += r;
    }
    *len = n;
    return buf;
}

static int load(cp_tokenizer **tok, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "cpeft tokenize: %s: %s\n", path, strerror(errno));
        return 1;
    }
    int rc = S_ISDIR(st.st_mode) ? cp_tokenizer_load_dir(tok, path) : cp_tokenizer_load_file(tok, path);
    if (rc) return fail(cp_last_error());
    return 0;
}

static int do_decode(const cp_tokenizer *tok, const char *list, int skip, int json) {
    size_t cap = 64, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return fail("out of memory");
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n' || *p == '[' || *p == ']') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < INT32_MIN || v > INT32_MAX) {
            fprintf(stderr, "cpeft tokenize: --decode: \"%.*s\" is not a token id\n", (int)strcspn(p, " ,\t\n"), p);
            free(ids);
            return 2;
        }
        if (n == cap) {
            int32_t *q = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!q) { free(ids); return fail("out of memory"); }
            ids = q;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    char *text;
    size_t len;
    int rc = cp_tokenizer_decode(tok, ids, n, skip, &text, &len);
    free(ids);
    if (rc) return fail(cp_last_error());
    /* decoded text is bytes with a length: a NUL in it is printed (or escaped as \u0000), not an end */
    if (json) { fputs("{\"text\": ", stdout); cp_json_print_string(stdout, text, len, 0); fputs("}\n", stdout); }
    else { fwrite(text, 1, len, stdout); fputc('\n', stdout); }
    free(text);
    return 0;
}

static void print_special(const cp_tokenizer *tok, int json) {
    static const char *names[4] = {"bos_token", "eos_token", "pad_token", "unk_token"};
    if (json) printf("{\"vocab_size\": %zu", cp_tokenizer_vocab_size(tok));
    else printf("vocab_size: %zu\n", cp_tokenizer_vocab_size(tok));
    for (int r = 0; r < 4; r++) {
        int32_t id = cp_tokenizer_special_id(tok, (cp_special_role)r);
        const char *s = id >= 0 ? cp_tokenizer_id_to_token(tok, id) : NULL;
        if (json) {
            printf(", \"%s\": ", names[r]);
            if (s) { fputs("{\"content\": ", stdout); cp_json_print_string(stdout, s, strlen(s), 0); printf(", \"id\": %d}", id); }
            else fputs("null", stdout);
        } else if (s) {
            printf("%s: %s (%d)\n", names[r], s, id);
        } else {
            int32_t dummy;
            cp_tokenizer_require_special(tok, (cp_special_role)r, &dummy);
            printf("%s: not set (%s)\n", names[r], cp_last_error());
        }
    }
    if (json) printf(", \"adds_bos\": %s, \"adds_eos\": %s}\n", cp_tokenizer_adds_bos(tok) ? "true" : "false",
                     cp_tokenizer_adds_eos(tok) ? "true" : "false");
    else printf("adds_bos: %s\nadds_eos: %s\n", cp_tokenizer_adds_bos(tok) ? "yes" : "no", cp_tokenizer_adds_eos(tok) ? "yes" : "no");
}

int cmd_tokenize(int argc, char **argv) {
    const char *dir = NULL, *text = NULL, *decode = NULL, *pair = NULL, *id_arg = NULL;
    int tokens = 0, json = 0, no_special = 0, skip = 0, special = 0;
    const cp_opt options[] = {
        {CP_STRING("--tokenizer", &dir)},
        {CP_STRING("--decode", &decode)},
        {CP_STRING("--pair", &pair)},
        {CP_STRING("--id", &id_arg)},
        {CP_FLAG("--tokens", &tokens)},
        {CP_FLAG("--json", &json)},
        {CP_FLAG("--no-special", &no_special)},
        {CP_FLAG("--skip-special", &skip)},
        {CP_FLAG("--special", &special)},
        {0},
    };
    const cp_args_spec spec = {.cmd = "tokenize", .opts = options, .help = help,
                               .unknown = "unknown option \"%s\" (see cpeft tokenize --help)", .positional = &text,
                               .extra = "more than one TEXT (quote it, or use - for stdin)"};
    int r = cp_args_parse(&spec, argc, argv, 1);
    if (r >= 0) return r;
    if (!dir) { fprintf(stderr, "cpeft tokenize: --tokenizer DIR is required\n"); help(stderr); return 2; }
    int modes = (text != NULL) + (decode != NULL) + (id_arg != NULL) + special;
    if (modes != 1) {
        fprintf(stderr, "cpeft tokenize: give exactly one of TEXT, --decode, --id or --special\n");
        return 2;
    }
    int64_t id64 = 0;
    if (id_arg && cp_arg_int(id_arg, "--id", INT32_MIN, INT32_MAX, &id64, "tokenize")) return 2;

    cp_tokenizer *tok;
    int rc = load(&tok, dir);
    if (rc) return rc;
    if (decode) { rc = do_decode(tok, decode, skip, json); cp_tokenizer_free(tok); return rc; }
    if (special) { print_special(tok, json); cp_tokenizer_free(tok); return 0; }
    if (id_arg) {
        const char *s = cp_tokenizer_id_to_token(tok, (int32_t)id64);
        if (!s) {
            fprintf(stderr, "cpeft tokenize: id %lld is not in the vocabulary (size %zu)\n", (long long)id64,
                    cp_tokenizer_vocab_size(tok));
            cp_tokenizer_free(tok);
            return 1;
        }
        if (json) { cp_json_print_string(stdout, s, strlen(s), 0); fputc('\n', stdout); }
        else printf("%s\n", s);
        cp_tokenizer_free(tok);
        return 0;
    }

    char *owned = NULL;
    size_t len;
    if (strcmp(text, "-") == 0) {
        if (!(owned = read_stdin(&len))) { cp_tokenizer_free(tok); return fail("cannot read standard input"); }
        text = owned;
    } else {
        len = strlen(text);
    }
    cp_encoding enc = {0};
    rc = pair ? cp_tokenizer_encode_pair(tok, text, len, pair, strlen(pair), !no_special, &enc)
              : cp_tokenizer_encode(tok, text, len, !no_special, &enc);
    if (rc) {
        rc = fail(cp_last_error());
    } else if (json) {
        fputs("{\"ids\": [", stdout);
        for (size_t i = 0; i < enc.n; i++) printf("%s%d", i ? ", " : "", enc.ids[i]);
        fputs("], \"tokens\": [", stdout);
        for (size_t i = 0; i < enc.n; i++) {
            const char *s = cp_tokenizer_id_to_token(tok, enc.ids[i]);
            if (i) fputs(", ", stdout);
            cp_json_print_string(stdout, s ? s : "", s ? strlen(s) : 0, 0);
        }
        fputs("], \"offsets\": [", stdout);
        for (size_t i = 0; i < enc.n; i++) printf("%s[%zu, %zu]", i ? ", " : "", enc.offsets[2 * i], enc.offsets[2 * i + 1]);
        fputs("], \"type_ids\": [", stdout);
        for (size_t i = 0; i < enc.n; i++) printf("%s%d", i ? ", " : "", enc.type_ids[i]);
        fputs("], \"special_tokens_mask\": [", stdout);
        for (size_t i = 0; i < enc.n; i++) printf("%s%d", i ? ", " : "", enc.special_mask[i]);
        fputs("]}\n", stdout);
    } else {
        for (size_t i = 0; i < enc.n; i++) {
            if (i) fputc(' ', stdout);
            if (tokens) {
                const char *s = cp_tokenizer_id_to_token(tok, enc.ids[i]);
                fputs(s ? s : "", stdout);
            } else {
                printf("%d", enc.ids[i]);
            }
        }
        fputc('\n', stdout);
    }
    cp_encoding_free(&enc);
    free(owned);
    cp_tokenizer_free(tok);
    return rc;
}
