/*
 * strbuf.c — growable strings; see strbuf.h.
 */
#include "core/strbuf.h"
#include "core/alloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void cp_sb_init(cp_strbuf *sb) { memset(sb, 0, sizeof *sb); }

static int reserve(cp_strbuf *sb, size_t extra) {
    if (sb->failed) return 0;
    if (sb->len + extra + 1 <= sb->cap) return 1;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < sb->len + extra + 1) cap *= 2;
    char *p = cp_realloc(sb->data, cap, "a string buffer");
    if (!p) { sb->failed = 1; return 0; }
    sb->data = p;
    sb->cap = cap;
    return 1;
}

void cp_sb_append_n(cp_strbuf *sb, const char *s, size_t n) {
    if (!reserve(sb, n)) return;
    memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
}

void cp_sb_append(cp_strbuf *sb, const char *s) { cp_sb_append_n(sb, s, strlen(s)); }

void cp_sb_printf(cp_strbuf *sb, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(sb, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
}

void cp_sb_append_indented(cp_strbuf *sb, const char *s, int n) {
    for (const char *p = s; *p; p++) {
        cp_sb_append_n(sb, p, 1);
        if (*p == '\n') for (int i = 0; i < n; i++) cp_sb_append_n(sb, " ", 1);
    }
}

char *cp_sb_finish(cp_strbuf *sb) {
    if (sb->failed) { cp_free(sb->data); cp_sb_init(sb); return NULL; }
    if (!sb->data) { cp_sb_append_n(sb, "", 0); if (sb->failed) return NULL; }
    char *out = sb->data;
    cp_sb_init(sb);
    return out;
}

void cp_sb_free(cp_strbuf *sb) { cp_free(sb->data); cp_sb_init(sb); }
