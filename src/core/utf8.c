/*
 * utf8.c — UTF-8 validation and coding; see utf8.h.
 */
#include "core/utf8.h"

/* For a byte that can start a multi-byte sequence: the sequence's length and the range the second
 * byte must lie in (narrower than 0x80..0xBF after E0 and F0, which would be overlong, after ED,
 * which would be a surrogate, and after F4, which would pass U+10FFFF). 0 for any other byte. */
static size_t lead_byte(unsigned char b, unsigned char *lo, unsigned char *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (b >= 0xC2 && b < 0xE0) return 2;
    if (b >= 0xE0 && b < 0xF0) {
        if (b == 0xE0) *lo = 0xA0;
        if (b == 0xED) *hi = 0x9F;
        return 3;
    }
    if (b >= 0xF0 && b < 0xF5) {
        if (b == 0xF0) *lo = 0x90;
        if (b == 0xF4) *hi = 0x8F;
        return 4;
    }
    return 0;
}

size_t cp_utf8_char_len(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) return 1;
    unsigned char lo, hi;
    size_t need = lead_byte(u[0], &lo, &hi);
    if (!need || n < need || u[1] < lo || u[1] > hi) return 0;
    for (size_t i = 2; i < need; i++)
        if ((u[i] & 0xC0) != 0x80) return 0;
    return need;
}

size_t cp_utf8_valid_prefix(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) { i++; continue; }
        size_t l = cp_utf8_char_len(s + i, n - i);
        if (!l) break;
        i += l;
    }
    return i;
}

size_t cp_utf8_invalid_len(const char *s, size_t n) {
    /* The maximal subpart: the longest prefix of a well-formed sequence, at least one byte. */
    const unsigned char *u = (const unsigned char *)s;
    unsigned char lo, hi;
    size_t need = lead_byte(u[0], &lo, &hi), i = 1;
    if (!need) return 1;
    if (i < n && u[i] >= lo && u[i] <= hi) {
        i++;
        while (i < need && i < n && (u[i] & 0xC0) == 0x80) i++;
    }
    return i;
}

uint32_t cp_utf8_decode(const char *s, size_t *len) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) { *len = 1; return u[0]; }
    if (u[0] < 0xE0) { *len = 2; return ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F); }
    if (u[0] < 0xF0) {
        *len = 3;
        return ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
    }
    *len = 4;
    return ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
           ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
}

size_t cp_utf8_encode(uint32_t c, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (c < 0x80) { o[0] = (unsigned char)c; return 1; }
    if (c < 0x800) { o[0] = (unsigned char)(0xC0 | (c >> 6)); o[1] = (unsigned char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (c >> 12));
        o[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (c >> 18));
    o[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}
