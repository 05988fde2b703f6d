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

/* Stores one option's value; 0, or the exit status 2 after an error. */
static int take(const cp_args_spec *spec, const cp_opt *o, char *value) {
    switch (o->kind) {
    case CP_ARG_FLAG: *(int *)o->dest = 1; break;
    case CP_ARG_STRING:
        if (o->choices) {
            int k = 0;
            while (o->choices[k] && strcmp(value, o->choices[k])) k++;
            if (!o->choices[k]) {
                fprintf(stderr, "cpeft %s: %s: expected ", spec->cmd, o->name);
                for (k = 0; o->choices[k]; k++)
                    fprintf(stderr, "%s%s", k == 0 ? "" : o->choices[k + 1] ? ", " : " or ", o->choices[k]);
                fprintf(stderr, ", got \"%s\"\n", value);
                return 2;
            }
        }
        *(const char **)o->dest = value;
        break;
    case CP_ARG_INT:
        if (cp_arg_int(value, o->name, o->min, o->max, (int64_t *)o->dest, spec->cmd)) return 2;
        break;
    case CP_ARG_DOUBLE:
        if (cp_arg_double(value, o->name, (double *)o->dest, spec->cmd)) return 2;
        break;
    case CP_ARG_LIST:
        if (*o->count >= o->max) {
            fprintf(stderr, "cpeft %s: %s\n", spec->cmd, o->full);
            return 2;
        }
        memcpy((char *)o->dest + (size_t)(*o->count)++ * sizeof value, &value, sizeof value);
        break;
    }
    if (o->given) *o->given = 1;
    return 0;
}

int cp_args_parse(const cp_args_spec *spec, int argc, char **argv, int first) {
    for (int i = first; i < argc; i++) {
        char *a = argv[i];
        if (spec->help && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
            spec->help(stdout);
            return 0;
        }
        const cp_opt *o = spec->opts;
        char *value = NULL;
        for (; o->name; o++) {
            if (o->kind == CP_ARG_FLAG) {
                if (!strcmp(a, o->name)) break;
                continue;
            }
            const char *v;
            int r = cp_arg_value(argc, argv, &i, o->name, &v, spec->cmd);
            if (r < 0) return 2;
            if (r) {
                value = argv[i] + (v - argv[i]); /* v points into argv[i] ("--name=V") or is argv[i] */
                break;
            }
        }
        if (o->name) {
            int rc = take(spec, o, value);
            if (rc) return rc;
            continue;
        }
        if (spec->positional && !(a[0] == '-' && a[1])) {
            if (*spec->positional) {
                fprintf(stderr, "cpeft %s: ", spec->cmd);
                fprintf(stderr, spec->extra, a);
                fputc('\n', stderr);
                return 2;
            }
            *spec->positional = a;
            continue;
        }
        fprintf(stderr, "cpeft %s: ", spec->cmd);
        fprintf(stderr, spec->unknown, a);
        fputc('\n', stderr);
        if (spec->help_after_unknown && spec->help) spec->help(stderr);
        return 2;
    }
    return -1;
}
