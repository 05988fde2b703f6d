/*
 * tokenizer_bench.c — encoding throughput of cpeft's tokenizer on one thread.
 *
 *   build/bench/tokenizer_bench TOKENIZER(dir or tokenizer.json) TEXT_FILE [--whole]
 *
 * Splits TEXT_FILE into documents at blank lines and encodes each (no special tokens), reusing one
 * cp_encoding as a data loader would; --whole encodes the file as a single string instead. Prints
 * one line: "cpeft: <bytes> bytes, <docs> docs, <tokens> tokens, <secs> s, <MB/s> MB/s, <tok/s> tokens/s".
 * bench/tokenizer_bench.py runs this beside the Rust `tokenizers` library on the same text.
 */
#include "tokenizer/tokenizer.h"
#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s TOKENIZER TEXT_FILE [--whole]\n", argv[0]);
        return 2;
    }
    int whole = argc > 3 && strcmp(argv[3], "--whole") == 0;
    struct stat st;
    cp_tokenizer *tok = NULL;
    int rc = stat(argv[1], &st) == 0 && S_ISDIR(st.st_mode) ? cp_tokenizer_load_dir(&tok, argv[1])
                                                            : cp_tokenizer_load_file(&tok, argv[1]);
    if (rc) { fprintf(stderr, "tokenizer_bench: %s\n", cp_last_error()); return 1; }
    FILE *f = fopen(argv[2], "rb");
    if (!f) { perror(argv[2]); return 1; }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "read error\n"); return 1; }
    fclose(f);
    text[n] = '\0';

    cp_encoding enc = {0};
    size_t tokens = 0, docs = 0;
    double t0 = now();
    if (whole) {
        if (cp_tokenizer_encode(tok, text, (size_t)n, 0, &enc)) { fprintf(stderr, "%s\n", cp_last_error()); return 1; }
        tokens = enc.n;
        docs = 1;
    } else {
        size_t i = 0;
        while (i < (size_t)n) {
            const char *e = strstr(text + i, "\n\n");
            size_t end = e ? (size_t)(e - text) + 2 : (size_t)n;
            if (cp_tokenizer_encode(tok, text + i, end - i, 0, &enc)) { fprintf(stderr, "%s\n", cp_last_error()); return 1; }
            tokens += enc.n;
            docs++;
            i = end;
        }
    }
    double secs = now() - t0;
    printf("cpeft: %ld bytes, %zu docs, %zu tokens, %.3f s, %.2f MB/s, %.0f tokens/s\n", n, docs, tokens, secs,
           (double)n / 1e6 / secs, (double)tokens / secs);
    cp_encoding_free(&enc);
    cp_tokenizer_free(tok);
    free(text);
    return 0;
}
