/*
 * strbuf.h — a growable string for building output (module reprs, JSON lines, error lists).
 * Allocation failure is sticky: the buffer remembers it and cp_sb_finish() reports it once.
 */
#ifndef CP_CORE_STRBUF_H
#define CP_CORE_STRBUF_H

#include <stddef.h>

#include "core/error.h"

typedef struct {
    char *data;   /* always NUL-terminated when len > 0 or after any append */
    size_t len, cap;
    int failed;
} cp_strbuf;

void cp_sb_init(cp_strbuf *sb);
void cp_sb_append(cp_strbuf *sb, const char *s);
void cp_sb_append_n(cp_strbuf *sb, const char *s, size_t n);
void cp_sb_printf(cp_strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s with every line but the first indented by n spaces (torch's _addindent). */
void cp_sb_append_indented(cp_strbuf *sb, const char *s, int n);
/* Hands over the string (caller frees with cp_free), or returns NULL with an error set. */
char *cp_sb_finish(cp_strbuf *sb);
void cp_sb_free(cp_strbuf *sb);

#endif
