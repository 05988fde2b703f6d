/*
 * test_layers.c — the layering of src/ holds: every #include "dir/file.h" in src/<layer>/ names a
 * header of its own layer or of a lower one, never one above it, and two layers of the same rank
 * (siblings such as nn and tokenizer, or train and generate) do not include each other.
 *
 *   core ← kernels ← io ← {tokenizer, nn, chat} ← models ← peft ← {train, generate, convert} ← cli
 *
 * A directory of src/ that is not in the table fails the test too: a new layer takes its place in
 * the table (and in docs/architecture.md) before it takes code. It also checks that the checker
 * itself can fail: an include going up is reported for a made-up file.
 */
#include "test.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

static const struct { const char *dir; int rank; } layers[] = {
    {"core", 0}, {"kernels", 1}, {"io", 2}, {"tokenizer", 3}, {"nn", 3}, {"chat", 3}, {"models", 4},
    {"peft", 5}, {"train", 6}, {"generate", 6}, {"convert", 6}, {"serve", 7}, {"cli", 8},
};

static int quiet; /* the checker's own test: count, do not print */

static int rank_of(const char *dir) {
    for (size_t i = 0; i < sizeof layers / sizeof *layers; i++)
        if (!strcmp(layers[i].dir, dir)) return layers[i].rank;
    return -1;
}

/* The violations in one file's text (from layer `dir`), printed; their count. */
static int check_text(const char *dir, const char *file, const char *text) {
    int bad = 0, own = rank_of(dir);
    for (const char *p = strstr(text, "#include \""); p; p = strstr(p + 1, "#include \"")) {
        const char *name = p + 10, *slash = strchr(name, '/'), *quote = strchr(name, '"');
        if (!slash || !quote || slash > quote) continue; /* "cpeft.h", "test.h": not a layer header */
        char target[64];
        size_t n = (size_t)(slash - name);
        if (n >= sizeof target) continue;
        memcpy(target, name, n);
        target[n] = 0;
        int r = rank_of(target);
        if (r < 0) {
            if (!quiet) fprintf(stderr, "  %s/%s includes %.*s: no layer \"%s\" in the table\n", dir, file, (int)(quote - name), name, target);
            bad++;
        } else if (r > own || (r == own && strcmp(target, dir))) {
            if (!quiet) fprintf(stderr, "  %s/%s includes %.*s: %s is %s %s\n", dir, file, (int)(quote - name), name, target,
                    r > own ? "a layer above" : "a sibling of", dir);
            bad++;
        }
    }
    return bad;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) { free(s); s = NULL; }
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

TEST(no_include_goes_up) {
    DIR *src = opendir("src");
    CHECK(src != NULL, "cannot open src/ (tests run from the repository root)");
    if (!src) return;
    int files = 0, bad = 0;
    struct dirent *d;
    while ((d = readdir(src))) {
        if (d->d_name[0] == '.') continue;
        char dir_path[512];
        snprintf(dir_path, sizeof dir_path, "src/%s", d->d_name);
        DIR *sub = opendir(dir_path);
        if (!sub) continue;
        CHECK(rank_of(d->d_name) >= 0, "src/%s is not a layer of the table in test_layers.c", d->d_name);
        struct dirent *e;
        while ((e = readdir(sub))) {
            size_t n = strlen(e->d_name);
            if (n < 3 || (strcmp(e->d_name + n - 2, ".c") && strcmp(e->d_name + n - 2, ".h"))) continue;
            char path[1024];
            snprintf(path, sizeof path, "%s/%s", dir_path, e->d_name);
            char *text = read_file(path);
            CHECK(text != NULL, "cannot read %s", path);
            if (!text) continue;
            bad += check_text(d->d_name, e->d_name, text);
            files++;
            free(text);
        }
        closedir(sub);
    }
    closedir(src);
    printf("  %d source files checked, %d includes going up or sideways\n", files, bad);
    CHECK(files > 50, "only %d source files found", files);
    CHECK(bad == 0, "%d includes break the layering (listed above)", bad);
}

TEST(the_checker_reports_violations) {
    quiet = 1;
    CHECK(check_text("nn", "made_up.c", "#include \"peft/lora.h\"\n") == 1, "nn including peft was not reported");
    CHECK(check_text("nn", "made_up.c", "#include \"tokenizer/tokenizer.h\"\n") == 1, "a sibling include was not reported");
    CHECK(check_text("models", "made_up.c", "#include \"nn/linear.h\"\n#include \"cpeft.h\"\n") == 0, "a legal include was reported");
    quiet = 0;
}

int main(void) {
    RUN(no_include_goes_up);
    RUN(the_checker_reports_violations);
    return test_summary();
}
