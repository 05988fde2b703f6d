/*
 * plot.c — the loss-curve PNG; see plot.h.
 *
 * Three small parts, top to bottom:
 *   the PNG encoder   one IDAT chunk holding a zlib stream with a single fixed-Huffman deflate block;
 *                     matches come from a hash-chain LZ77 over a 32 KiB window. A plot is mostly flat
 *                     colour, so this gets within a small factor of zlib's level 6 with no tables to
 *                     build. CRC-32 (chunks) and Adler-32 (zlib) are computed here too.
 *   the canvas        RGB pixels, alpha-blended anti-aliased segments and discs (coverage from the
 *                     distance to the pixel centre), filled rectangles, and a 5x7 font drawn at 2x.
 *   the plot          "nice" ticks (1, 2, 5 x 10^k), grid, axes, the two series, legend and title.
 *
 * It is not a plotting library: one fixed layout, two series, linear axes.
 */
#include "train/plot.h"
#include "core/alloc.h"
#include "core/utf8.h"
#include "io/fsutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- PNG encoder ------------------------------------------------------------------------------- */

/* CRC-32 of PNG chunks (ISO 3309, reflected, polynomial 0xEDB88320); chunks are small, so bitwise. */
static uint32_t crc32_of(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
}

static uint32_t adler32(const uint8_t *p, size_t n) {
    uint32_t a = 1, b = 0;
    while (n) {
        size_t k = n < 5552 ? n : 5552; /* the largest run before b can overflow 32 bits */
        n -= k;
        while (k--) { a += *p++; b += a; }
        a %= 65521;
        b %= 65521;
    }
    return (b << 16) | a;
}

/* A growable byte buffer with an LSB-first bit writer (deflate's bit order). */
typedef struct {
    uint8_t *data;
    size_t len, cap;
    uint64_t bits;
    int nbits;
    int failed;
} bytebuf;

static void bb_reserve(bytebuf *b, size_t extra) {
    if (b->failed || b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    uint8_t *p = cp_realloc(b->data, cap, "the PNG image");
    if (!p) { b->failed = 1; return; }
    b->data = p;
    b->cap = cap;
}

static void bb_put(bytebuf *b, const void *p, size_t n) {
    bb_reserve(b, n);
    if (b->failed) return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void bb_u32be(bytebuf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    bb_put(b, x, 4);
}

static void put_bits(bytebuf *b, uint32_t v, int n) {
    b->bits |= (uint64_t)v << b->nbits;
    b->nbits += n;
    while (b->nbits >= 8) {
        uint8_t byte = (uint8_t)b->bits;
        bb_put(b, &byte, 1);
        b->bits >>= 8;
        b->nbits -= 8;
    }
}

/* Huffman codes are sent most significant bit first. */
static void put_code(bytebuf *b, uint32_t code, int n) {
    uint32_t r = 0;
    for (int i = 0; i < n; i++) r |= ((code >> i) & 1u) << (n - 1 - i);
    put_bits(b, r, n);
}

static void put_litlen(bytebuf *b, int sym) { /* the fixed literal/length code (RFC 1951 3.2.6) */
    if (sym < 144) put_code(b, 0x30u + (uint32_t)sym, 8);
    else if (sym < 256) put_code(b, 0x190u + (uint32_t)(sym - 144), 9);
    else if (sym < 280) put_code(b, (uint32_t)(sym - 256), 7);
    else put_code(b, 0xC0u + (uint32_t)(sym - 280), 8);
}

static const uint16_t len_base[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27,
                                      31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t dist_base[30] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193,
                                       257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

static void put_match(bytebuf *b, int len, int dist) {
    int l = 28;
    while (len_base[l] > len) l--;
    put_litlen(b, 257 + l);
    if (len_extra[l]) put_bits(b, (uint32_t)(len - len_base[l]), len_extra[l]);
    int d = 29;
    while (dist_base[d] > dist) d--;
    put_code(b, (uint32_t)d, 5);
    if (dist_extra[d]) put_bits(b, (uint32_t)(dist - dist_base[d]), dist_extra[d]);
}

#define WSIZE 32768
#define HBITS 15
#define MAX_CHAIN 48
#define MIN_MATCH 3
#define MAX_MATCH 258

static uint32_t hash3(const uint8_t *p) {
    return ((uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2]) * 2654435761u >> (32 - HBITS);
}

/* A zlib stream (RFC 1950) of src: one final fixed-Huffman block. */
static cp_status zlib_compress(const uint8_t *src, size_t n, bytebuf *out) {
    int32_t *head = cp_malloc(sizeof(int32_t) << HBITS, "the PNG compressor");
    int32_t *prev = head ? cp_malloc(sizeof(int32_t) * WSIZE, "the PNG compressor") : NULL;
    if (!prev) { cp_free(head); return CP_ERR; }
    for (size_t i = 0; i < (1u << HBITS); i++) head[i] = -1;
    uint8_t hdr[2] = {0x78, 0x01}; /* deflate, 32 KiB window, no dictionary, fastest-level flag */
    bb_put(out, hdr, 2);
    put_bits(out, 1, 1); /* BFINAL */
    put_bits(out, 1, 2); /* BTYPE = 01, fixed Huffman */
    size_t i = 0;
    while (i < n) {
        int best = 0, best_dist = 0;
        if (i + MIN_MATCH <= n) {
            uint32_t h = hash3(src + i);
            int32_t cand = head[h];
            size_t max = n - i < MAX_MATCH ? n - i : MAX_MATCH;
            for (int chain = 0; cand >= 0 && i - (size_t)cand <= WSIZE && chain < MAX_CHAIN; chain++) {
                const uint8_t *a = src + cand, *s = src + i;
                size_t l = 0;
                while (l < max && a[l] == s[l]) l++;
                if ((int)l > best) { best = (int)l; best_dist = (int)(i - (size_t)cand); if (l == max) break; }
                int32_t nx = prev[cand & (WSIZE - 1)];
                if (nx >= cand) break; /* a slot overwritten by a newer position */
                cand = nx;
            }
        }
        size_t step = best >= MIN_MATCH ? (size_t)best : 1;
        if (best >= MIN_MATCH) put_match(out, best, best_dist);
        else put_litlen(out, src[i]);
        for (size_t k = 0; k < step; k++, i++) {
            if (i + MIN_MATCH > n) continue;
            uint32_t h = hash3(src + i);
            prev[i & (WSIZE - 1)] = head[h];
            head[h] = (int32_t)i;
        }
    }
    put_litlen(out, 256);
    if (out->nbits) put_bits(out, 0, 8 - out->nbits);
    bb_u32be(out, adler32(src, n));
    cp_free(head);
    cp_free(prev);
    return out->failed ? CP_ERR : CP_OK;
}

static void png_chunk(bytebuf *b, const char type[4], const uint8_t *data, size_t n) {
    bb_u32be(b, (uint32_t)n);
    size_t at = b->len;
    bb_put(b, type, 4);
    if (n) bb_put(b, data, n);
    if (!b->failed) bb_u32be(b, crc32_of(b->data + at, n + 4));
}

cp_status cp_png_encode_rgb(const uint8_t *rgb, int w, int h, uint8_t **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    if (w <= 0 || h <= 0 || w > (1 << 16) || h > (1 << 16)) return cp_error("PNG size %dx%d is out of range", w, h);
    size_t row = (size_t)w * 3 + 1;
    uint8_t *raw = cp_malloc(row * (size_t)h, "the PNG rows");
    if (!raw) return CP_ERR;
    for (int y = 0; y < h; y++) {
        raw[(size_t)y * row] = 0; /* filter: none */
        memcpy(raw + (size_t)y * row + 1, rgb + (size_t)y * (size_t)w * 3, (size_t)w * 3);
    }
    bytebuf z = {0}, png = {0};
    cp_status st = zlib_compress(raw, row * (size_t)h, &z);
    cp_free(raw);
    if (st == CP_OK) {
        static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
        uint8_t ihdr[13] = {(uint8_t)(w >> 24), (uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w,
                            (uint8_t)(h >> 24), (uint8_t)(h >> 16), (uint8_t)(h >> 8), (uint8_t)h,
                            8 /* bit depth */, 2 /* truecolour */, 0, 0, 0 /* deflate, adaptive, no interlace */};
        bb_put(&png, sig, sizeof sig);
        png_chunk(&png, "IHDR", ihdr, sizeof ihdr);
        png_chunk(&png, "IDAT", z.data, z.len);
        png_chunk(&png, "IEND", NULL, 0);
        if (png.failed) st = CP_ERR;
    }
    cp_free(z.data);
    if (st != CP_OK) { cp_free(png.data); return CP_ERR; }
    *out = png.data;
    *out_len = png.len;
    return CP_OK;
}

/* ---- canvas ------------------------------------------------------------------------------------ */

typedef struct { uint8_t r, g, b; } rgb8;
typedef struct {
    int w, h;
    uint8_t *px; /* (h, w, 3) */
    int cx0, cy0, cx1, cy1; /* clip rectangle, inclusive-exclusive */
} canvas;

static void blend(canvas *c, int x, int y, rgb8 col, double a) {
    if (x < c->cx0 || y < c->cy0 || x >= c->cx1 || y >= c->cy1 || a <= 0) return;
    if (a > 1) a = 1;
    uint8_t *p = c->px + ((size_t)y * (size_t)c->w + (size_t)x) * 3;
    p[0] = (uint8_t)lrint(p[0] + (col.r - p[0]) * a);
    p[1] = (uint8_t)lrint(p[1] + (col.g - p[1]) * a);
    p[2] = (uint8_t)lrint(p[2] + (col.b - p[2]) * a);
}

static void fill_rect(canvas *c, int x0, int y0, int x1, int y1, rgb8 col) {
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) blend(c, x, y, col, 1);
}

static int clampi(double v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : (int)v; }

/* An anti-aliased segment of width 2*hw between pixel-space points (centres at +0.5). */
static void draw_segment(canvas *c, double x0, double y0, double x1, double y1, double hw, rgb8 col) {
    int bx0 = clampi(floor(fmin(x0, x1) - hw - 1), c->cx0, c->cx1), bx1 = clampi(ceil(fmax(x0, x1) + hw + 1), c->cx0, c->cx1);
    int by0 = clampi(floor(fmin(y0, y1) - hw - 1), c->cy0, c->cy1), by1 = clampi(ceil(fmax(y0, y1) + hw + 1), c->cy0, c->cy1);
    double dx = x1 - x0, dy = y1 - y0, l2 = dx * dx + dy * dy;
    for (int y = by0; y < by1; y++) {
        for (int x = bx0; x < bx1; x++) {
            double px = x + 0.5 - x0, py = y + 0.5 - y0;
            double t = l2 > 0 ? (px * dx + py * dy) / l2 : 0;
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            double ex = px - t * dx, ey = py - t * dy;
            double cov = hw + 0.5 - sqrt(ex * ex + ey * ey);
            if (cov > 0) blend(c, x, y, col, cov);
        }
    }
}

static void draw_disc(canvas *c, double cx, double cy, double r, rgb8 col) {
    for (int y = (int)floor(cy - r - 1); y <= (int)ceil(cy + r + 1); y++)
        for (int x = (int)floor(cx - r - 1); x <= (int)ceil(cx + r + 1); x++) {
            double d = hypot(x + 0.5 - cx, y + 0.5 - cy);
            blend(c, x, y, col, r + 0.5 - d);
        }
}

/* 5x7 glyphs for ASCII 32..126: seven rows down to the baseline and an eighth for descenders (g j p q y ,);
 * bit 4 is the leftmost column. */
static const uint8_t font5x7[95][8] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04, 0x00}, /*   ! */
    {0x0A, 0x0A, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A, 0x00}, /* " # */
    {0x04, 0x0F, 0x14, 0x0E, 0x05, 0x1E, 0x04, 0x00}, {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03, 0x00}, /* $ % */
    {0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D, 0x00}, {0x04, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, /* & ' */
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02, 0x00}, {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08, 0x00}, /* ( ) */
    {0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00, 0x00}, {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00, 0x00}, /* * + */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}, {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00, 0x00}, /* , - */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C, 0x00}, {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00, 0x00}, /* . / */
    {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E, 0x00}, {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00}, /* 0 1 */
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F, 0x00}, {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E, 0x00}, /* 2 3 */
    {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02, 0x00}, {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E, 0x00}, /* 4 5 */
    {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E, 0x00}, {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08, 0x00}, /* 6 7 */
    {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E, 0x00}, {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C, 0x00}, /* 8 9 */
    {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00, 0x00}, {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x04, 0x08, 0x00}, /* : ; */
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02, 0x00}, {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00, 0x00}, /* < = */
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08, 0x00}, {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04, 0x00}, /* > ? */
    {0x0E, 0x11, 0x01, 0x0D, 0x15, 0x15, 0x0E, 0x00}, {0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x00}, /* @ A */
    {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E, 0x00}, {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E, 0x00}, /* B C */
    {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C, 0x00}, {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F, 0x00}, /* D E */
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10, 0x00}, {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F, 0x00}, /* F G */
    {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11, 0x00}, {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00}, /* H I */
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C, 0x00}, {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11, 0x00}, /* J K */
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F, 0x00}, {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11, 0x00}, /* L M */
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x00}, {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0x00}, /* N O */
    {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10, 0x00}, {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D, 0x00}, /* P Q */
    {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11, 0x00}, {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E, 0x00}, /* R S */
    {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00}, {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0x00}, /* T U */
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04, 0x00}, {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A, 0x00}, /* V W */
    {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11, 0x00}, {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x00}, /* X Y */
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F, 0x00}, {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E, 0x00}, /* Z [ */
    {0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00, 0x00}, {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E, 0x00}, /* \ ] */
    {0x04, 0x0A, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00}, {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F, 0x00}, /* ^ _ */
    {0x08, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00}, {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F, 0x00}, /* ` a */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E, 0x00}, {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E, 0x00}, /* b c */
    {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F, 0x00}, {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E, 0x00}, /* d e */
    {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08, 0x00}, {0x00, 0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E}, /* f g */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00}, {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E, 0x00}, /* h i */
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x02, 0x12, 0x0C}, {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12, 0x00}, /* j k */
    {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00}, {0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11, 0x00}, /* l m */
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00}, {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E, 0x00}, /* n o */
    {0x00, 0x00, 0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10}, {0x00, 0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x01}, /* p q */
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10, 0x00}, {0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E, 0x00}, /* r s */
    {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06, 0x00}, {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D, 0x00}, /* t u */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04, 0x00}, {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A, 0x00}, /* v w */
    {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x00}, {0x00, 0x00, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E}, /* x y */
    {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F, 0x00}, {0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02, 0x00}, /* z { */
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00}, {0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08, 0x00}, /* | } */
    {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00, 0x00},                                             /* ~   */
};

#define FONT_SCALE 2
#define GLYPH_ADVANCE (6 * FONT_SCALE)
#define GLYPH_HEIGHT (7 * FONT_SCALE)

/* The glyph for one byte of UTF-8 text: ASCII as is, '?' for the first byte of anything else, and
 * nothing (-1) for continuation bytes. */
static int glyph_of(unsigned char ch) {
    if (ch >= 32 && ch < 127) return ch - 32;
    if (cp_utf8_is_continuation(ch)) return -1;
    return '?' - 32;
}

static int text_width(const char *s) {
    int n = 0;
    for (; *s; s++) n += glyph_of((unsigned char)*s) >= 0;
    return n ? n * GLYPH_ADVANCE - FONT_SCALE : 0;
}

/* Draws s one glyph after another, each 5x7 font pixel a FONT_SCALE square: left to right from the
 * top-left corner (x, y), or with `up` rotated a quarter turn counter-clockwise (read bottom to
 * top) from the bottom-left corner (x, y). */
static void draw_glyphs(canvas *c, int x, int y, const char *s, rgb8 col, int up) {
    const int S = FONT_SCALE;
    for (; *s; s++) {
        int g = glyph_of((unsigned char)*s);
        if (g < 0) continue;
        for (int r = 0; r < 8; r++)     /* across the text */
            for (int k = 0; k < 5; k++) /* along it */
                if (font5x7[g][r] & (0x10 >> k)) {
                    if (up) fill_rect(c, x + r * S, y - (k + 1) * S, x + (r + 1) * S, y - k * S, col);
                    else fill_rect(c, x + k * S, y + r * S, x + (k + 1) * S, y + (r + 1) * S, col);
                }
        if (up) y -= GLYPH_ADVANCE;
        else x += GLYPH_ADVANCE;
    }
}

/* Draws s with its top-left corner at (x, y). */
static void draw_text(canvas *c, int x, int y, const char *s, rgb8 col) { draw_glyphs(c, x, y, s, col, 0); }

/* Draws s rotated a quarter turn counter-clockwise (read bottom to top), its left edge at x and its
 * middle at height ymid. */
static void draw_text_up(canvas *c, int x, int ymid, const char *s, rgb8 col) {
    draw_glyphs(c, x, ymid + text_width(s) / 2, s, col, 1);
}

/* ---- the plot ---------------------------------------------------------------------------------- */

#define PLOT_W 800
#define PLOT_H 480
#define MAX_TICKS 16

typedef struct {
    double lo, hi, step; /* axis range, a whole number of steps */
    int n;
    double ticks[MAX_TICKS + 1];
    char labels[MAX_TICKS + 1][32];
} axis;

static double nice_step(double span) {
    double raw = span / 5, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

/* Ticks at multiples of a 1-2-5 step covering [lo, hi] (a whole step at least when `whole`, for
 * axes of integers); labels with just enough digits. */
static void make_axis(axis *a, double lo, double hi, int whole) {
    if (!(hi > lo)) { /* one value, or none: a window around it */
        double d = lo != 0 ? fabs(lo) * 0.1 : 0.5;
        lo -= d;
        hi += d;
    }
    double mid = 0.5 * (lo + hi), min_span = fabs(mid) * 1e-6;
    if (hi - lo < min_span) { lo = mid - min_span / 2; hi = mid + min_span / 2; }
    double step = nice_step(hi - lo);
    if (whole && step < 1) step = 1;
    double k0 = floor(lo / step + 1e-9), k1 = ceil(hi / step - 1e-9);
    while (k1 - k0 > MAX_TICKS) { step *= 2; k0 = floor(lo / step + 1e-9); k1 = ceil(hi / step - 1e-9); }
    if (k1 <= k0) k1 = k0 + 1;
    a->lo = k0 * step;
    a->hi = k1 * step;
    a->step = step;
    a->n = (int)(k1 - k0) + 1;
    double big = fmax(fabs(a->lo), fabs(a->hi));
    int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    int sci = big >= 1e6 || decimals > 6;
    int sig = (int)ceil(log10(big / step) - 1e-9) + 1;
    if (sig < 1) sig = 1;
    if (sig > 12) sig = 12;
    for (int i = 0; i < a->n; i++) {
        double v = (k0 + i) * step;
        if (fabs(v) < step * 1e-9) v = 0; /* no "-0" */
        a->ticks[i] = v;
        if (sci) snprintf(a->labels[i], sizeof a->labels[i], "%.*g", sig, v);
        else snprintf(a->labels[i], sizeof a->labels[i], "%.*f", decimals, v);
    }
}

/* Range of the finite (x, y) points of a series, folded into the x and y bounds. */
static void fold_range(const double *xs, const double *ys, int n, double *xlo, double *xhi, double *ylo,
                       double *yhi, int *any, int *x_whole) {
    for (int i = 0; i < n; i++) {
        if (!isfinite(xs[i]) || !isfinite(ys[i])) continue;
        if (xs[i] != floor(xs[i])) *x_whole = 0;
        *xlo = fmin(*xlo, xs[i]); *xhi = fmax(*xhi, xs[i]);
        *ylo = fmin(*ylo, ys[i]); *yhi = fmax(*yhi, ys[i]);
        *any = 1;
    }
}

static double clamp_big(double v) { return v > 1e300 ? 1e300 : v < -1e300 ? -1e300 : v; }

typedef struct {
    int left, right, top, bottom; /* the plot area in pixels */
    axis x, y;
} frame;

static double map_x(const frame *f, double v) { return f->left + (v - f->x.lo) / (f->x.hi - f->x.lo) * (f->right - f->left); }
static double map_y(const frame *f, double v) { return f->bottom - (v - f->y.lo) / (f->y.hi - f->y.lo) * (f->bottom - f->top); }

/* A series: a polyline through its finite points and, with dots (or when there is just one point), a
 * disc at each. Returns the last finite value (NaN if none). */
static double draw_series(canvas *c, const frame *f, const double *xs, const double *ys, int n, rgb8 col, int dots) {
    double px = 0, py = 0, last = NAN;
    int have = 0, n_finite = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(xs[i]) || !isfinite(ys[i])) continue;
        double x = map_x(f, clamp_big(xs[i])), y = map_y(f, clamp_big(ys[i]));
        if (have) draw_segment(c, px, py, x, y, dots ? 1.0 : 1.1, col);
        px = x;
        py = y;
        have = 1;
        n_finite++;
        last = ys[i];
    }
    if (dots || (have && n_finite == 1))
        for (int i = 0; i < n; i++)
            if (isfinite(xs[i]) && isfinite(ys[i])) draw_disc(c, map_x(f, clamp_big(xs[i])), map_y(f, clamp_big(ys[i])), 3.5, col);
    return last;
}

size_t cp_plot_peak_bytes(void) {
    const size_t canvas = (size_t)PLOT_W * PLOT_H * 3, rows = ((size_t)PLOT_W * 3 + 1) * PLOT_H;
    return canvas + rows + (sizeof(int32_t) << HBITS) + sizeof(int32_t) * WSIZE;
}

cp_status cp_plot_loss_png(const char *path, const double *train_steps, const double *train_loss, int n_train,
                           const double *eval_steps, const double *eval_loss, int n_eval, const char *title) {
    static const rgb8 white = {255, 255, 255}, ink = {40, 40, 40}, grid = {228, 228, 228}, frame_col = {90, 90, 90},
                      blue = {31, 119, 180}, red = {214, 39, 40};
    if (!path) return cp_error("loss curve: no output path given");
    if (n_train < 0 || n_eval < 0 || (n_train && (!train_steps || !train_loss)) || (n_eval && (!eval_steps || !eval_loss)))
        return cp_error("%s: loss curve: bad series (n_train %d, n_eval %d)", path, n_train, n_eval);
    canvas c = {.w = PLOT_W, .h = PLOT_H, .cx1 = PLOT_W, .cy1 = PLOT_H};
    c.px = cp_malloc((size_t)PLOT_W * PLOT_H * 3, "the loss-curve image");
    if (!c.px) return CP_ERR;
    memset(c.px, 255, (size_t)PLOT_W * PLOT_H * 3);

    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    int any = 0, x_whole = 1;
    fold_range(train_steps, train_loss, n_train, &xlo, &xhi, &ylo, &yhi, &any, &x_whole);
    fold_range(eval_steps, eval_loss, n_eval, &xlo, &xhi, &ylo, &yhi, &any, &x_whole);
    if (!any) { xlo = 0; xhi = 1; ylo = 0; yhi = 1; }
    frame f;
    make_axis(&f.x, clamp_big(xlo), clamp_big(xhi), any && x_whole);
    make_axis(&f.y, clamp_big(ylo), clamp_big(yhi), 0);

    /* layout: the y tick labels decide the left margin */
    int ylab = 0;
    for (int i = 0; i < f.y.n; i++) ylab = text_width(f.y.labels[i]) > ylab ? text_width(f.y.labels[i]) : ylab;
    f.left = 46 + (ylab < 240 ? ylab : 240);
    f.right = PLOT_W - 28;
    f.top = 48;
    f.bottom = PLOT_H - 64;

    /* title, axis names */
    const char *t = title && title[0] ? title : "loss";
    draw_text(&c, (PLOT_W - text_width(t)) / 2, 14, t, ink);
    draw_text_up(&c, 10, (f.top + f.bottom) / 2, "loss", ink);
    draw_text(&c, (f.left + f.right - text_width("step")) / 2, f.bottom + 38, "step", ink);

    /* grid, ticks and labels */
    for (int i = 0; i < f.x.n; i++) {
        int x = (int)lrint(map_x(&f, f.x.ticks[i]));
        fill_rect(&c, x, f.top, x + 1, f.bottom, grid);
        fill_rect(&c, x, f.bottom, x + 1, f.bottom + 6, frame_col);
        int w = text_width(f.x.labels[i]);
        int lx = x - w / 2;
        if (lx + w > PLOT_W - 2) lx = PLOT_W - 2 - w;
        draw_text(&c, lx, f.bottom + 12, f.x.labels[i], ink);
    }
    for (int i = 0; i < f.y.n; i++) {
        int y = (int)lrint(map_y(&f, f.y.ticks[i]));
        fill_rect(&c, f.left, y, f.right, y + 1, grid);
        fill_rect(&c, f.left - 6, y, f.left, y + 1, frame_col);
        draw_text(&c, f.left - 10 - text_width(f.y.labels[i]), y - GLYPH_HEIGHT / 2, f.y.labels[i], ink);
    }

    /* the series, clipped to the plot area (a little slack for the line width) */
    c.cx0 = f.left - 3; c.cx1 = f.right + 4; c.cy0 = f.top - 3; c.cy1 = f.bottom + 4;
    double last_train = draw_series(&c, &f, train_steps, train_loss, n_train, blue, 0);
    double last_eval = draw_series(&c, &f, eval_steps, eval_loss, n_eval, red, 1);
    c.cx0 = 0; c.cx1 = PLOT_W; c.cy0 = 0; c.cy1 = PLOT_H;

    /* the frame */
    fill_rect(&c, f.left, f.top, f.right + 1, f.top + 1, frame_col);
    fill_rect(&c, f.left, f.bottom, f.right + 1, f.bottom + 1, frame_col);
    fill_rect(&c, f.left, f.top, f.left + 1, f.bottom + 1, frame_col);
    fill_rect(&c, f.right, f.top, f.right + 1, f.bottom + 1, frame_col);

    /* legend, top right inside the frame: a line sample and the last value of each series */
    char entries[2][64];
    int ne = 0;
    rgb8 cols[2];
    int dots[2];
    if (!isnan(last_train)) { snprintf(entries[ne], sizeof entries[ne], "train %.4g", last_train); cols[ne] = blue; dots[ne++] = 0; }
    if (!isnan(last_eval)) { snprintf(entries[ne], sizeof entries[ne], "eval %.4g", last_eval); cols[ne] = red; dots[ne++] = 1; }
    if (ne) {
        int tw = 0;
        for (int i = 0; i < ne; i++) tw = text_width(entries[i]) > tw ? text_width(entries[i]) : tw;
        int bw = 12 + 28 + 8 + tw + 12, bh = 10 + ne * 22, bx = f.right - 12 - bw, by = f.top + 12;
        fill_rect(&c, bx, by, bx + bw, by + bh, frame_col);
        fill_rect(&c, bx + 1, by + 1, bx + bw - 1, by + bh - 1, white);
        for (int i = 0; i < ne; i++) {
            int cy = by + 8 + i * 22 + GLYPH_HEIGHT / 2;
            draw_segment(&c, bx + 12, cy + 0.5, bx + 40, cy + 0.5, dots[i] ? 1.0 : 1.1, cols[i]);
            if (dots[i]) draw_disc(&c, bx + 26, cy + 0.5, 3.5, cols[i]);
            draw_text(&c, bx + 48, cy - GLYPH_HEIGHT / 2, entries[i], ink);
        }
    } else {
        draw_text(&c, (f.left + f.right - text_width("no data")) / 2, (f.top + f.bottom) / 2 - GLYPH_HEIGHT / 2, "no data", ink);
    }

    uint8_t *png = NULL;
    size_t len = 0;
    cp_status st = cp_png_encode_rgb(c.px, PLOT_W, PLOT_H, &png, &len);
    cp_free(c.px);
    if (st != CP_OK) return cp_error_context("%s", path);
    st = cp_write_file_atomic(path, png, len);
    cp_free(png);
    return st;
}
