/*
 * args.c — option parsing helpers for the subcommands; see args.h.
 */
#include "cli/args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cp_arg_value(int argc, char **argv, int *i, const char *name, const char **value, const char *cmd) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0) return 0;
    if (a[n] == '=') { *value = a + n + 1; return 1; }
    if (a[n] != '\0') return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "cpeft %s: %s needs a value\n", cmd, name);
        return -1;
    }
    *value = argv[++*i];
    return 1;
}

int cp_arg_int(const char *value, const char *name, int64_t min, int64_t max, int64_t *out, const char *cmd) {
    char *end;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (errno || end == value || *end || v < min || v > max) {
        fprintf(stderr, "cpeft %s: %s: expected an integer in [%lld, %lld], got \"%s\"\n", cmd, name,
                (long long)min, (long long)max, value);
        return -1;
    }
    *out = v;
    return 0;
}

int cp_arg_double(const char *value, const char *name, double *out, const char *cmd) {
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (errno || end == value || *end || !isfinite(v)) {
        fprintf(stderr, "cpeft %s: %s: expected a number, got \"%s\"\n", cmd, name, value);
        return -1;
    }
    *out = v;
    return 0;
}
