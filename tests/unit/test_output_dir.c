/*
 * test_output_dir.c — a training run's output directory (src/train/output_dir.c) and the file-system
 * steps under it (src/io/fsutil.c): the final adapter's commit and checkpoint-N's replacement killed
 * (SIGKILL, in a child process) at every step, and what a reader of the directory sees after each
 * kill and after the next run's cleanup; the lock between two runs; the refusal of a directory that
 * is not empty; the cleanup of dead processes' temporary names.
 *
 * An "adapter" here is two small files whose contents name the version they belong to, so a reader
 * that sees the config of one version and the weights of another is caught.
 */
#include "test.h"
#include "io/fsutil.h"
#include "train/output_dir.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char root[64];

static void sh(const char *fmt, const char *arg) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, fmt, arg, arg, arg);
    if (system(cmd) != 0) fprintf(stderr, "  command failed: %s\n", cmd);
}

static void put(const char *dir, const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (!f) { CHECK(0, "cannot write %s", p); return; }
    fputs(text, f);
    fclose(f);
}

/* The file's first line ("" when it cannot be read). */
static void get(const char *dir, const char *name, char *buf, size_t cap) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    buf[0] = '\0';
    FILE *f = fopen(p, "r");
    if (!f) return;
    if (!fgets(buf, (int)cap, f)) buf[0] = '\0';
    fclose(f);
}

/* Writes adapter version `v` into <out>/<name> as the trainer does: complete, then renamed into place. */
static void write_adapter(const char *out, const char *name, const char *v) {
    char dir[512], *staging = NULL, text[64];
    snprintf(dir, sizeof dir, "%s/%s", out, name);
    CHECK_OK(cp_dir_begin(dir, &staging));
    if (!staging) return;
    snprintf(text, sizeof text, "config %s", v);
    put(staging, "adapter_config.json", text);
    snprintf(text, sizeof text, "weights %s", v);
    put(staging, "adapter_model.safetensors", text);
    CHECK_OK(cp_dir_replace(&staging, dir));
}

/* What a reader of `out` sees: the version both files name, "" when neither exists, "MIXED" else. */
static void seen(const char *out, char *v, size_t cap) {
    char c[64], w[64];
    get(out, "adapter_config.json", c, sizeof c);
    get(out, "adapter_model.safetensors", w, sizeof w);
    if (!c[0] && !w[0]) { snprintf(v, cap, "%s", ""); return; }
    if (!strncmp(c, "config ", 7) && !strncmp(w, "weights ", 8) && !strcmp(c + 7, w + 8)) { snprintf(v, cap, "%s", c + 7); return; }
    snprintf(v, cap, "MIXED (config \"%s\", weights \"%s\")", c, w);
}

/* Leftover temporary names ("*.partial-N", "*.old-N", ...) and final-adapter directories in out. */
static int leftovers(const char *out) {
    char cmd[512], line[256];
    snprintf(cmd, sizeof cmd, "ls -A %s", out);
    FILE *p = popen(cmd, "r");
    int n = 0;
    while (p && fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = '\0';
        if (cp_temp_name_pid(line, NULL)) n++;
    }
    if (p) pclose(p);
    return n;
}

static const char *kill_at;
static int kill_hook(const char *step) {
    if (kill_at && !strcmp(step, kill_at)) raise(SIGKILL);
    return 0;
}
static int no_exchange_hook(const char *step) {
    if (!strcmp(step, "replace:exchange")) return 1;
    return kill_hook(step);
}

/* Runs fn(arg) in a child that SIGKILLs itself at step `at` (NULL: runs to the end). Returns 1 when
 * the child was killed, 0 when it ended normally. */
static int run_killed_at(const char *at, int exchange, void (*fn)(const char *), const char *arg) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        kill_at = at;
        cp_fs_set_hook(exchange ? kill_hook : no_exchange_hook);
        fn(arg);
        _exit(test_checks_failed_in_current ? 3 : 0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) return 1;
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed (status %d)", status);
    return 0;
}

static char out_dir[128];
static void commit_b(const char *name) {
    write_adapter(out_dir, name, "B");
    CHECK_OK(cp_output_dir_commit_adapter(out_dir, name));
}

/* Starting state of the commit test: 0 no adapter, 1 adapter A committed, 2 A as regular files (the
 * layout of an older cpeft). */
static void setup_out(int state) {
    sh("rm -rf %s && mkdir -p %s", out_dir);
    if (state == 1) {
        write_adapter(out_dir, "adapter-step-4", "A");
        CHECK_OK(cp_output_dir_commit_adapter(out_dir, "adapter-step-4"));
    } else if (state == 2) {
        put(out_dir, "adapter_config.json", "config A");
        put(out_dir, "adapter_model.safetensors", "weights A");
    }
}

TEST(final_adapter_commit_is_atomic_under_sigkill) {
    static const char *const points[] = {"commit:legacy-copied", "commit:legacy-linked", "commit:linked", "commit:switched", NULL};
    static const char *const before[3] = {"", "A", "A"};
    snprintf(out_dir, sizeof out_dir, "%s/out", root);
    int kills = 0;
    for (int state = 0; state < 3; state++)
        for (int k = 0; k < 5; k++) {
            setup_out(state);
            char v[160];
            seen(out_dir, v, sizeof v);
            CHECK(!strcmp(v, before[state]), "state %d: set up as \"%s\", expected \"%s\"", state, v, before[state]);
            int killed = run_killed_at(points[k], 1, commit_b, "adapter-step-8");
            kills += killed;
            /* right after the kill: the old adapter or the new one */
            seen(out_dir, v, sizeof v);
            CHECK(!strcmp(v, before[state]) || !strcmp(v, "B"), "state %d, killed at %s: a reader sees %s", state,
                  points[k] ? points[k] : "(not killed)", v);
            if (!killed) CHECK(!strcmp(v, "B"), "state %d: the completed commit shows \"%s\"", state, v);
            if (k == 3 && killed) CHECK(!strcmp(v, "B"), "state %d: killed after the switch, yet \"%s\"", state, v);
            /* the next run's start cleans up without changing what is seen, then commits C */
            char before_clean[160];
            snprintf(before_clean, sizeof before_clean, "%s", v);
            cp_output_dir od;
            int cleaned = 0;
            CHECK_OK(cp_output_dir_open(&od, out_dir, 1, "--overwrite-output-dir", "test", &cleaned));
            cp_output_dir_close(&od);
            seen(out_dir, v, sizeof v);
            CHECK(!strcmp(v, before_clean), "state %d, killed at %s: cleanup changed \"%s\" to \"%s\"", state,
                  points[k] ? points[k] : "-", before_clean, v);
            CHECK(leftovers(out_dir) == 0, "state %d, killed at %s: temporary names left after cleanup", state, points[k] ? points[k] : "-");
            write_adapter(out_dir, "adapter-step-12", "C");
            CHECK_OK(cp_output_dir_commit_adapter(out_dir, "adapter-step-12"));
            seen(out_dir, v, sizeof v);
            CHECK(!strcmp(v, "C"), "state %d, killed at %s: the next commit shows \"%s\"", state, points[k] ? points[k] : "-", v);
            /* only the committed adapter's directory remains */
            char p[256];
            struct stat sb;
            snprintf(p, sizeof p, "%s/adapter-step-8", out_dir);
            CHECK(lstat(p, &sb) != 0, "state %d: the replaced adapter-step-8 is still there", state);
            snprintf(p, sizeof p, "%s/adapter-previous", out_dir);
            CHECK(lstat(p, &sb) != 0, "state %d: adapter-previous is still there", state);
        }
    printf("  %d of 15 commits killed at a step; a reader was checked after each kill, cleanup and the next commit\n", kills);
    CHECK(kills == 8, "expected 8 kills (4 steps with an older cpeft's layout, 2 with a committed adapter, 2 with none), got %d", kills);
}

/* Without symbolic links the commit copies file by file: the test above must catch that as mixed. */
static int no_links_hook(const char *step) {
    if (!strcmp(step, "symlink")) return 1;
    return 0;
}
TEST(commit_without_links_still_completes) {
    snprintf(out_dir, sizeof out_dir, "%s/nolinks", root);
    setup_out(2);
    cp_fs_set_hook(no_links_hook);
    write_adapter(out_dir, "adapter-step-8", "B");
    CHECK_OK(cp_output_dir_commit_adapter(out_dir, "adapter-step-8"));
    cp_fs_set_hook(NULL);
    char v[160];
    seen(out_dir, v, sizeof v);
    CHECK(!strcmp(v, "B"), "copied commit shows \"%s\"", v);
}

static char ckpt[160];
static void replace_ckpt(const char *v) {
    char *staging = NULL, text[64];
    CHECK_OK(cp_dir_begin(ckpt, &staging));
    if (!staging) return;
    snprintf(text, sizeof text, "config %s", v);
    put(staging, "adapter_config.json", text);
    snprintf(text, sizeof text, "weights %s", v);
    put(staging, "adapter_model.safetensors", text);
    CHECK_OK(cp_dir_replace(&staging, ckpt));
}

TEST(checkpoint_replace_is_atomic_under_sigkill) {
    snprintf(out_dir, sizeof out_dir, "%s/ckpt", root);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint-4", out_dir);
    static const char *const points[] = {"replace:aside", "replace:swapped", NULL};
    int kills = 0;
    for (int exchange = 0; exchange < 2; exchange++)
        for (int k = 0; k < 3; k++) {
            sh("rm -rf %s && mkdir -p %s", out_dir);
            replace_ckpt("A");
            put(ckpt, "only-in-A", "x");
            int killed = run_killed_at(points[k], exchange, replace_ckpt, "B");
            kills += killed;
            char v[160];
            seen(ckpt, v, sizeof v);
            /* killed between the fallback's two renames, checkpoint-4 is missing until the cleanup */
            int aside = killed && !exchange && k == 0;
            CHECK(aside ? !strcmp(v, "") : (!strcmp(v, "A") || !strcmp(v, "B")), "%s, killed at %s: a reader sees \"%s\"",
                  exchange ? "exchange" : "fallback", points[k] ? points[k] : "-", v);
            int cleaned = 0;
            CHECK_OK(cp_dir_clean_stale(out_dir, &cleaned));
            seen(ckpt, v, sizeof v);
            CHECK(!strcmp(v, "A") || !strcmp(v, "B"), "%s, killed at %s: after cleanup \"%s\"", exchange ? "exchange" : "fallback",
                  points[k] ? points[k] : "-", v);
            if (!killed) CHECK(!strcmp(v, "B"), "completed replace shows \"%s\"", v);
            char p[256];
            struct stat sb;
            snprintf(p, sizeof p, "%s/only-in-A", ckpt);
            CHECK((lstat(p, &sb) == 0) == !strcmp(v, "A"), "checkpoint-4 mixes the two versions' files (%s)", v);
            CHECK(leftovers(out_dir) == 0, "temporary names left after cleanup");
        }
    printf("  checkpoint-N replaced with and without RENAME_EXCHANGE, %d of 6 killed at a step\n", kills);
    CHECK(kills == 3, "expected 3 kills, got %d", kills);
}

TEST(lock_refusal_and_cleanup) {
    char out[128], p[256];
    snprintf(out, sizeof out, "%s/lock", root);
    sh("rm -rf %s && mkdir -p %s", out);
    /* a second run on a locked directory is refused, naming the holder */
    cp_output_dir a, b;
    int cleaned;
    CHECK_OK(cp_output_dir_open(&a, out, 0, "--overwrite-output-dir", "cpeft train (pid 111)", &cleaned));
    CHECK_ERR(cp_output_dir_open(&b, out, 1, "--overwrite-output-dir", "cpeft train (pid 222)", &cleaned), "is in use by cpeft train (pid 111)");
    cp_output_dir_close(&a);
    /* released: a run that may reuse it gets it; one that may not is refused, naming a file */
    put(out, "metrics.jsonl", "{}\n");
    CHECK_ERR(cp_output_dir_open(&b, out, 0, "--overwrite-output-dir", "x", &cleaned), "is not empty (it holds \"metrics.jsonl\"); give --overwrite-output-dir");
    CHECK_OK(cp_output_dir_open(&b, out, 1, "--overwrite-output-dir", "x", &cleaned));
    cp_output_dir_close(&b);
    /* a refused directory gains no lock file */
    snprintf(p, sizeof p, "%s/foreign", root);
    sh("rm -rf %s && mkdir -p %s && touch %s/notes.txt", p);
    CHECK_ERR(cp_output_dir_open(&b, p, 0, "--overwrite-output-dir", "x", &cleaned), "notes.txt");
    snprintf(p, sizeof p, "%s/foreign/" CP_LOCK_FILE, root);
    CHECK(access(p, F_OK) != 0, "%s was created in a refused directory", p);
    /* the temporary names of a dead process go; a live one's stay; a moved-aside directory comes back */
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    waitpid(dead, NULL, 0);
    char name[300];
    snprintf(name, sizeof name, "%s/checkpoint-3.partial-%d", out, (int)dead);
    mkdir(name, 0755);
    put(name, "adapter_model.safetensors.tmp.1", "half");
    snprintf(name, sizeof name, "loss.png.tmp.%d", (int)dead);
    put(out, name, "half");
    snprintf(name, sizeof name, "%s/checkpoint-5.old-%d", out, (int)dead);
    mkdir(name, 0755);
    put(name, "trainer_state.json", "old");
    snprintf(name, sizeof name, "%s/checkpoint-9.partial-%d", out, (int)getpid());
    mkdir(name, 0755);
    snprintf(p, sizeof p, "%s/adapter-step-77", out);
    mkdir(p, 0755); /* a final adapter directory nothing points to */
    CHECK_OK(cp_output_dir_open(&b, out, 1, "--overwrite-output-dir", "x", &cleaned));
    cp_output_dir_close(&b);
    printf("  cleaned %d leftovers of a dead process (pid %d)\n", cleaned, (int)dead);
    CHECK(cleaned == 4, "cleaned %d, expected 4 (two temporary names, one restored directory, one orphan adapter)", cleaned);
    char v[64];
    snprintf(name, sizeof name, "%s/checkpoint-5", out);
    get(name, "trainer_state.json", v, sizeof v);
    CHECK(!strcmp(v, "old"), "checkpoint-5 was not moved back (\"%s\")", v);
    snprintf(name, sizeof name, "%s/checkpoint-9.partial-%d", out, (int)getpid());
    CHECK(access(name, F_OK) == 0, "a live process's staging directory was removed");
    CHECK(leftovers(out) == 1, "expected only the live process's staging directory to remain");
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/cpeft-outdir-XXXXXX");
    if (!mkdtemp(root)) { perror("mkdtemp"); return 1; }
    cp_set_quiet(1);
    RUN(final_adapter_commit_is_atomic_under_sigkill);
    RUN(commit_without_links_still_completes);
    RUN(checkpoint_replace_is_atomic_under_sigkill);
    RUN(lock_refusal_and_cleanup);
    sh("rm -rf %s", root);
    return test_summary();
}
