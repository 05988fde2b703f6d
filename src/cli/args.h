/*
 * args.h — small helpers for the subcommands' option parsing: "--name VALUE" and "--name=VALUE",
 * with numbers checked (a learning rate of "abc" is an error naming the option, not a zero).
 */
#ifndef CP_CLI_ARGS_H
#define CP_CLI_ARGS_H

#include <stdint.h>

/* If argv[*i] is option `name` (as "--name V" or "--name=V"), stores V, advances *i and returns 1.
 * Returns -1 (after printing an error) when the value is missing, 0 when argv[*i] is another option. */
int cp_arg_value(int argc, char **argv, int *i, const char *name, const char **value, const char *cmd);
/* Parses V as an integer in [min, max] / a finite double; prints "cpeft CMD: --name: ..." and
 * returns -1 on failure. */
int cp_arg_int(const char *value, const char *name, int64_t min, int64_t max, int64_t *out, const char *cmd);
int cp_arg_double(const char *value, const char *name, double *out, const char *cmd);

#endif
