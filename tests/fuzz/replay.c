/*
 * replay.c — a main() for the libFuzzer targets without libFuzzer: feeds every committed input of a
 * target (tests/fuzz/corpus/NAME and tests/fuzz/seeds/NAME, or the files and directories given on
 * the command line) to its LLVMFuzzerTestOneInput, one at a time, in name order.
 *
 * `make test` links each tests/fuzz/fuzz_*.c with this file into $(BUILD)/tests/fuzz/NAME and runs it
 * like any test program: with gcc, so no clang is needed, and under ASan + UBSan with
 * -fno-sanitize-recover in `make test-asan`. A sanitizer report, a trap in the target's own checks or
 * a leak kills the process before the summary line, which tests/run.sh counts as a failure. The
 * sanitizers are told to end with abort() (the hooks below, read by their runtimes only when they are
 * linked in), so that one signal handler can name the input that was running.
 *
 * This replays, it does not fuzz: new inputs come from `make fuzz` (clang + libFuzzer).
 * NAME is compiled in (-DCP_FUZZ_TARGET="fuzz_config"); run from the repository root.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef CP_FUZZ_TARGET
#error "compile with -DCP_FUZZ_TARGET=\"fuzz_NAME\""
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Default options of the ASan and UBSan runtimes: a report ends in abort(), caught below; UBSan prints
 * the stack. ASAN_OPTIONS / UBSAN_OPTIONS still override them. */
const char *__asan_default_options(void);
const char *__ubsan_default_options(void);
const char *__asan_default_options(void) { return "abort_on_error=1"; }
const char *__ubsan_default_options(void) { return "abort_on_error=1:print_stacktrace=1"; }

static const char *volatile current; /* the input being replayed */

/* Names the current input on stderr; async-signal-safe. */
static void name_current(void) {
    if (!current) return;
    static const char what[] = "replay " CP_FUZZ_TARGET ": the input that failed is ";
    if (write(2, what, sizeof what - 1) < 0 || write(2, current, strlen(current)) < 0 || write(2, "\n", 1) < 0) return;
}

static void on_fatal_signal(int sig) {
    name_current();
    signal(sig, SIG_DFL);
    raise(sig);
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Reads the whole file into an exactly-sized heap buffer (so ASan sees any overread); NULL on error. */
static uint8_t *read_input(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            uint8_t *g = realloc(buf, cap *= 2);
            if (!g) { free(buf); buf = NULL; }
            buf = g;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) { free(buf); return NULL; }
    uint8_t *exact = malloc(n ? n : 1);
    if (exact) memcpy(exact, buf, n);
    free(buf);
    *size = n;
    return exact;
}

/* Replays one file. Returns 0, or -1 when it cannot be read. */
static int replay_file(const char *path) {
    size_t size = 0;
    uint8_t *data = read_input(path, &size);
    if (!data) {
        fprintf(stderr, "replay %s: cannot read %s: %s\n", CP_FUZZ_TARGET, path, strerror(errno));
        return -1;
    }
    current = path;
    LLVMFuzzerTestOneInput(data, size);
    current = NULL;
    free(data);
    return 0;
}

/* Replays every regular file in `dir`, sorted by name. Returns the count, or -1 on a read error. */
static long replay_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "replay %s: cannot open %s: %s\n", CP_FUZZ_TARGET, dir, strerror(errno));
        return -1;
    }
    size_t n = 0, cap = 256;
    char **names = malloc(cap * sizeof *names);
    for (struct dirent *e; names && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            char **g = realloc(names, (cap *= 2) * sizeof *names);
            if (!g) { free(names); names = NULL; break; }
            names = g;
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        if (!(names[n] = malloc(len))) break;
        snprintf(names[n++], len, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (!names) return -1;
    qsort(names, n, sizeof *names, cmp_names);
    long count = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (count >= 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) count = replay_file(names[i]) ? -1 : count + 1;
        free(names[i]);
    }
    free(names);
    return count;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    static const int fatal[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP};
    for (size_t i = 0; i < sizeof fatal / sizeof *fatal; i++) { /* leave the sanitizers' own handlers in place */
        struct sigaction old;
        if (sigaction(fatal[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL) signal(fatal[i], on_fatal_signal);
    }
    const char *defaults[] = {"tests/fuzz/corpus/" CP_FUZZ_TARGET, "tests/fuzz/seeds/" CP_FUZZ_TARGET};
    const char **paths = argc > 1 ? (const char **)argv + 1 : defaults;
    int n_paths = argc > 1 ? argc - 1 : 2, passed = 0, failed = 0;
    for (int i = 0; i < n_paths; i++) {
        double t0 = now();
        struct stat st;
        long count = stat(paths[i], &st) != 0 ? (fprintf(stderr, "replay %s: %s: %s\n", CP_FUZZ_TARGET, paths[i],
                                                          strerror(errno)), -1)
                     : S_ISDIR(st.st_mode)    ? replay_dir(paths[i])
                                              : (replay_file(paths[i]) ? -1 : 1);
        /* an empty directory is a failure too: the replay would prove nothing */
        if (count > 0) {
            printf("ok   %s replays %s: %ld inputs in %.2f s\n", CP_FUZZ_TARGET, paths[i], count, now() - t0);
            passed++;
        } else {
            printf("FAIL %s replays %s: %s\n", CP_FUZZ_TARGET, paths[i], count == 0 ? "no inputs" : "unreadable");
            failed++;
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
