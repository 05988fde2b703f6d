/*
 * args.h — small helpers for the subcommands' option parsing: "--name VALUE" and "--name=VALUE",
 * with numbers checked (a learning rate of "abc" is an error naming the option, not a zero).
 */
#ifndef CP_CLI_ARGS_H
#define CP_CLI_ARGS_H

#include <stdint.h>
#include <stdio.h>

/* If argv[*i] is option `name` (as "--name V" or "--name=V"), stores V, advances *i and returns 1.
 * Returns -1 (after printing an error) when the value is missing, 0 when argv[*i] is another option. */
int cp_arg_value(int argc, char **argv, int *i, const char *name, const char **value, const char *cmd);
/* Parses V as an integer in [min, max] / a finite double; prints "cpeft CMD: --name: ..." and
 * returns -1 on failure. */
int cp_arg_int(const char *value, const char *name, int64_t min, int64_t max, int64_t *out, const char *cmd);
int cp_arg_double(const char *value, const char *name, double *out, const char *cmd);

/* A subcommand's options as a table (cp_args_parse). */
typedef enum {
    CP_ARG_FLAG,   /* "--name": *(int *)dest = 1 */
    CP_ARG_STRING, /* "--name V": *(const char **)dest = V (V is not copied: it lives in argv) */
    CP_ARG_INT,    /* *(int64_t *)dest, checked against [min, max] */
    CP_ARG_DOUBLE, /* *(double *)dest, finite */
    CP_ARG_LIST,   /* appended to the array of char * at dest, at most max of them, *count so far */
} cp_opt_kind;

typedef struct {
    const char *name;
    cp_opt_kind kind;
    void *dest;
    int64_t min, max;             /* INT: the range; LIST: max is the array's size */
    int *count;                   /* LIST: entries so far */
    const char *full;             /* LIST: the message when the array is full ("at most 64 --adapter options") */
    int *given;                   /* optional: set to 1 when the option appears */
    const char *const *choices;   /* STRING, optional: the values allowed (NULL-terminated) */
} cp_opt;

/* Table rows: {CP_STRING("--model", &model)}, {CP_INT("--seed", &seed, 0, INT64_MAX), .given = &has_seed}. */
#define CP_FLAG(n, p) .name = (n), .kind = CP_ARG_FLAG, .dest = (p)
#define CP_STRING(n, p) .name = (n), .kind = CP_ARG_STRING, .dest = (p)
#define CP_INT(n, p, lo, hi) .name = (n), .kind = CP_ARG_INT, .dest = (p), .min = (lo), .max = (hi)
#define CP_DOUBLE(n, p) .name = (n), .kind = CP_ARG_DOUBLE, .dest = (p)
#define CP_LIST(n, array, size, n_used, msg) \
    .name = (n), .kind = CP_ARG_LIST, .dest = (array), .max = (size), .count = (n_used), .full = (msg)

typedef struct {
    const char *cmd;              /* messages begin "cpeft CMD: " */
    const cp_opt *opts;           /* ends with a {NULL} entry */
    void (*help)(FILE *f);        /* --help / -h print it to stdout; NULL: they are not options */
    const char *unknown;          /* the message for an unknown option, "%s" the argument */
    int help_after_unknown;       /* the help follows that message on stderr */
    const char **positional;      /* where the one argument that is not an option goes; NULL: none */
    const char *extra;            /* the message for a second one ("%s" the argument) */
} cp_args_spec;

/* Parses argv[first..argc) by the table. Returns -1 when every argument was taken, else the exit
 * status for the command to return: 0 after --help, 2 after an error (printed on stderr as the
 * single-option helpers above print theirs). */
int cp_args_parse(const cp_args_spec *spec, int argc, char **argv, int first);

#endif
