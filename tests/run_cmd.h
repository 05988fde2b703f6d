/*
 * run_cmd.h — running a shell command line from a test program (the `cpeft` binary, an example)
 * and capturing what it prints.
 *
 *   run_cmd(out, cap, "cmd")                 the line as given (stdout only, unless it redirects)
 *   run_cmdf(out, cap, "fmt", ...)           printf-formatted, " 2>&1" appended: stdout + stderr
 *   run_cmd_fmt(out, cap, err, "fmt", ...)   printf-formatted, stderr folded in (err) or dropped
 *
 * Each returns the command's exit status (-1 when it cannot be started or does not exit) with what
 * it printed in out (at most cap - 1 bytes, NUL-terminated).
 */
#ifndef CP_TEST_RUN_CMD_H
#define CP_TEST_RUN_CMD_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

static inline int run_cmd(char *out, size_t cap, const char *cmd) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static inline int run_cmd_va(char *out, size_t cap, int err, const char *fmt, va_list ap) {
    char cmd[4096];
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    strncat(cmd, err ? " 2>&1" : " 2>/dev/null", sizeof cmd - strlen(cmd) - 1);
    return run_cmd(out, cap, cmd);
}

static inline int run_cmd_fmt(char *out, size_t cap, int err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static inline int run_cmd_fmt(char *out, size_t cap, int err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = run_cmd_va(out, cap, err, fmt, ap);
    va_end(ap);
    return rc;
}

static inline int run_cmdf(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline int run_cmdf(char *out, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = run_cmd_va(out, cap, 1, fmt, ap);
    va_end(ap);
    return rc;
}

#endif
