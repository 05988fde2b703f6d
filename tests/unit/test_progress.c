/*
 * test_progress.c — the progress line (core/progress.c) that cpeft train and cpeft eval draw on a
 * terminal: the durations and the bar as text, and `cpeft eval` drawing it on stderr only when stderr
 * is a terminal (a pseudo-terminal here) and --json is not given. Runs $CPEFT_BIN (build/cpeft).
 */
#include "test.h"
#include "core/progress.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *bin(void) {
    const char *b = getenv("CPEFT_BIN");
    return b && *b ? b : "build/cpeft";
}

TEST(durations_and_bar_as_text) {
    static const struct { double s; const char *want; } d[] = {
        {0, "0s"}, {59.4, "59s"}, {65, "1m05s"}, {3599, "59m59s"}, {3725, "1h02m"}, {NAN, "?"}, {-1, "?"}, {INFINITY, "?"}};
    char buf[32];
    for (size_t i = 0; i < sizeof d / sizeof *d; i++) {
        cp_format_duration(d[i].s, buf, sizeof buf);
        CHECK(!strcmp(buf, d[i].want), "%g s: \"%s\", expected \"%s\"", d[i].s, buf, d[i].want);
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cp_progress_bar(f, "step", 12, 24, "loss 1.5000", 65);
    cp_progress_bar(f, "block", 0, 0, NULL, NAN); /* nothing to do yet: an empty bar, no detail */
    fclose(f);
    const char *want = "\r[############............] step 12/24  loss 1.5000  ETA 1m05s   "
                       "\r[........................] block 0/0  ETA ?   ";
    CHECK(text && !strcmp(text, want), "bar text \"%s\"", text ? text : "(null)");
    free(text);
}

/* Runs `cpeft eval ARGS...` with stderr on a pseudo-terminal (stdout to /dev/null); returns what the
 * terminal received and sets *rc to the exit status. */
static char *eval_on_terminal(char *const argv[], int *rc) {
    *rc = -1;
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) || unlockpt(master) || !ptsname(master)) return NULL;
    char slave_name[256];
    snprintf(slave_name, sizeof slave_name, "%s", ptsname(master));
    pid_t pid = fork();
    if (pid == 0) {
        int slave = open(slave_name, O_RDWR), null = open("/dev/null", O_WRONLY);
        if (slave < 0 || null < 0 || dup2(slave, 2) < 0 || dup2(null, 1) < 0) _exit(126);
        execv(bin(), argv);
        _exit(127);
    }
    size_t cap = 1 << 16, n = 0;
    char *out = calloc(cap, 1);
    for (ssize_t got; out && (got = read(master, out + n, cap - 1 - n)) != 0;) {
        if (got < 0) { if (errno == EINTR) continue; break; } /* EIO: the child closed the terminal */
        n += (size_t)got;
        if (n + 1 >= cap) break;
    }
    close(master);
    int status;
    if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status)) *rc = WEXITSTATUS(status);
    return out;
}

TEST(eval_draws_the_bar_only_on_a_terminal) {
    char *args[] = {(char *)bin(), "eval", "--model", "tests/fixtures/models/gpt_neo_tiny", "--data-ids",
                    "tests/fixtures/eval/gpt_neo_tiny.ids.txt", "--seq-len", "32", "--batch-size", "1", NULL, NULL};
    int rc;
    char *tty = eval_on_terminal(args, &rc);
    CHECK(tty && rc == 0, "eval on a terminal: exit %d", rc);
    if (!tty) return;
    /* the last drawing: every block done, the loss so far, the speed, the time left */
    const char *last = NULL;
    for (const char *p = tty; (p = strstr(p, "\r[")); p++) last = p;
    long done = -1, total = -2;
    int parsed = last && sscanf(last, "\r[%*[#.]] block %ld/%ld", &done, &total) == 2;
    printf("  on a terminal: %.*s\n", last ? (int)strcspn(last + 1, "\r\n") : 8, last ? last + 1 : "(no bar)");
    CHECK(parsed && done == total && total > 1, "last bar: \"%s\"", last ? last + 1 : tty);
    CHECK(last && strstr(last, "loss ") && strstr(last, "tokens/s") && strstr(last, "ETA "), "bar details missing: \"%s\"",
          last ? last + 1 : tty);
    free(tty);

    args[10] = "--json"; /* machine-readable output: no bar even on a terminal */
    tty = eval_on_terminal(args, &rc);
    CHECK(tty && rc == 0 && !strstr(tty, "block") && !strstr(tty, "ETA"), "--json on a terminal drew: \"%s\"", tty ? tty : "");
    free(tty);

    char cmd[512], out[4096] = "";
    snprintf(cmd, sizeof cmd, "%s eval --model tests/fixtures/models/gpt_neo_tiny --data-ids "
             "tests/fixtures/eval/gpt_neo_tiny.ids.txt --seq-len 32 --batch-size 1 2>&1 >/dev/null", bin());
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[n] = '\0';
    CHECK(p && pclose(p) == 0, "eval with stderr on a pipe failed: %s", out);
    CHECK(n == 0, "stderr on a pipe got: \"%s\"", out);
}

int main(void) {
    RUN(durations_and_bar_as_text);
    RUN(eval_draws_the_bar_only_on_a_terminal);
    return test_summary();
}
