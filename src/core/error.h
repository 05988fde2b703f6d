/*
 * error.h — how cpeft reports failure.
 *
 * Every function that can fail on user input returns cp_status (CP_OK or CP_ERR) and leaves a
 * message in a thread-local buffer that names the file, tensor, field or line at fault. Callers
 * that add context wrap the message with cp_error_context() ("model/config.json: " + message).
 * Nothing here aborts: assert() is kept for internal invariants only.
 */
#ifndef CP_CORE_ERROR_H
#define CP_CORE_ERROR_H

#include <stddef.h>

#ifndef CP_OK
#define CP_OK 0
#define CP_ERR (-1)
typedef int cp_status;
#endif

/* Sets the error message (printf-style) and returns CP_ERR, so `return cp_error(...)` reads well. */
cp_status cp_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prepends context to the current message: "<context>: <old message>". Returns CP_ERR. */
cp_status cp_error_context(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The current message ("" when none). Valid until the next cp_error* call on this thread. */
const char *cp_last_error(void);
void cp_clear_error(void);

/* Prints "warning: ..." to stderr unless warnings are silenced (cp_set_quiet). */
void cp_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cp_set_quiet(int quiet);

#endif
