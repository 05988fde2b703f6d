/*
 * error.c — the thread-local error message behind cp_error() / cp_last_error().
 */
#include "core/error.h"
#include "cpeft.h" /* cp_last_error and cp_set_quiet are public: their CP_API declarations export them */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define CP_ERROR_MAX 4096

static _Thread_local char error_message[CP_ERROR_MAX];
static int quiet_warnings;

cp_status cp_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_message, sizeof error_message, fmt, ap);
    va_end(ap);
    return CP_ERR;
}

cp_status cp_error_context(const char *fmt, ...) {
    char old[CP_ERROR_MAX];
    memcpy(old, error_message, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(error_message, sizeof error_message, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    size_t used = (size_t)n < sizeof error_message ? (size_t)n : sizeof error_message - 1;
    size_t room = sizeof error_message - 1 - used;
    size_t old_len = strlen(old);
    if (room >= 2) {
        memcpy(error_message + used, ": ", 2);
        size_t take = old_len < room - 2 ? old_len : room - 2;
        memcpy(error_message + used + 2, old, take);
        error_message[used + 2 + take] = '\0';
    }
    return CP_ERR;
}

const char *cp_last_error(void) { return error_message; }

void cp_clear_error(void) { error_message[0] = '\0'; }

void cp_set_quiet(int quiet) { quiet_warnings = quiet; }

void cp_warn(const char *fmt, ...) {
    if (quiet_warnings) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
