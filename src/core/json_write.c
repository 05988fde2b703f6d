/*
 * json_write.c — JSON string literals; see json_write.h.
 */
#include "core/json_write.h"

#include <string.h>

#include "core/alloc.h"
#include "core/utf8.h"

/* The escape of an ASCII byte, or NULL when it stands for itself. */
static const char *short_escape(unsigned char c) {
    switch (c) {
    case '"': return "\\\"";
    case '\\': return "\\\\";
    case '\b': return "\\b";
    case '\f': return "\\f";
    case '\n': return "\\n";
    case '\r': return "\\r";
    case '\t': return "\\t";
    default: return NULL;
    }
}

void cp_json_write_string(cp_strbuf *sb, const char *s, size_t n, int flags) {
    const unsigned char *u = (const unsigned char *)s;
    size_t run = 0; /* start of the bytes not yet appended, copied in one piece */
    cp_sb_append_n(sb, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        const char *esc = short_escape(c);
        if (!esc && c >= 0x20 && (c < 0x7F || !(flags & CP_JSON_ASCII))) { i++; continue; }
        cp_sb_append_n(sb, s + run, i - run);
        if (esc) {
            cp_sb_append(sb, esc);
            i++;
        } else if (c < 0x80) {
            cp_sb_printf(sb, "\\u%04x", c);
            i++;
        } else { /* CP_JSON_ASCII: one character, or one stray byte */
            size_t len = cp_utf8_char_len(s + i, n - i);
            uint32_t cp = len ? cp_utf8_decode(s + i, &len) : c;
            if (cp >= 0x10000)
                cp_sb_printf(sb, "\\u%04x\\u%04x", 0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF));
            else
                cp_sb_printf(sb, "\\u%04x", cp);
            i += len ? len : 1;
        }
        run = i;
    }
    cp_sb_append_n(sb, s + run, n - run);
    cp_sb_append_n(sb, "\"", 1);
}

void cp_json_write_cstring(cp_strbuf *sb, const char *s, int flags) { cp_json_write_string(sb, s, strlen(s), flags); }

cp_status cp_json_print_string(FILE *f, const char *s, size_t n, int flags) {
    cp_strbuf sb;
    cp_sb_init(&sb);
    cp_json_write_string(&sb, s, n, flags);
    size_t len = sb.len;
    char *lit = cp_sb_finish(&sb);
    if (!lit) return CP_ERR;
    fwrite(lit, 1, len, f);
    cp_free(lit);
    return CP_OK;
}
