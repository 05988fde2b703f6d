/*
 * test_plot.c — the loss-curve PNG (src/train/plot.c): every file written is taken apart here with an
 * independent reader (signature, IHDR, chunk CRCs, zlib header, a small inflater for the stored and
 * fixed-Huffman blocks the encoder emits, Adler-32) and its pixels are checked for the two series.
 */
#include "test.h"
#include "train/plot.h"
#include "core/alloc.h"
#include "io/fsutil.h"

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

static char tmpdir[64];

/* ---- an independent PNG reader ------------------------------------------------------------------ */

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

static uint32_t ref_crc32(const uint8_t *p, size_t n) {
    static uint32_t table[256];
    if (!table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
            table[i] = c;
        }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint32_t ref_adler32(const uint8_t *p, size_t n) {
    uint64_t a = 1, b = 0;
    for (size_t i = 0; i < n; i++) { a = (a + p[i]) % 65521; b = (b + a) % 65521; }
    return (uint32_t)(b << 16 | a);
}

typedef struct { const uint8_t *p; size_t n, pos; int bit; int err; } bitreader;

static unsigned get_bit(bitreader *r) {
    if (r->pos >= r->n) { r->err = 1; return 0; }
    unsigned v = (r->p[r->pos] >> r->bit) & 1;
    if (++r->bit == 8) { r->bit = 0; r->pos++; }
    return v;
}
static unsigned get_bits(bitreader *r, int n) { /* LSB first */
    unsigned v = 0;
    for (int i = 0; i < n; i++) v |= get_bit(r) << i;
    return v;
}

/* The fixed literal/length code, read most significant bit first (RFC 1951 3.2.6). */
static int fixed_litlen(bitreader *r) {
    unsigned c = 0;
    for (int i = 0; i < 7; i++) c = c << 1 | get_bit(r);
    if (c <= 0x17) return 256 + (int)c;
    c = c << 1 | get_bit(r);
    if (c >= 0x30 && c <= 0xBF) return (int)c - 0x30;
    if (c >= 0xC0 && c <= 0xC7) return 280 + (int)c - 0xC0;
    c = c << 1 | get_bit(r);
    if (c >= 0x190 && c <= 0x1FF) return 144 + (int)c - 0x190;
    r->err = 1;
    return -1;
}

/* Inflates a raw deflate stream made of stored and fixed-Huffman blocks into out (cap bytes). Returns
 * the size, or -1; *used is the number of input bytes consumed. */
static long inflate_simple(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *used) {
    static const int lbase[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
    static const int lext[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
    static const int dbase[30] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
    static const int dext[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
    bitreader r = {in, n, 0, 0, 0};
    size_t o = 0;
    int final = 0;
    while (!final) {
        final = (int)get_bit(&r);
        unsigned type = get_bits(&r, 2);
        if (type == 0) {
            if (r.bit) { r.bit = 0; r.pos++; }
            if (r.pos + 4 > n) return -1;
            unsigned len = in[r.pos] | in[r.pos + 1] << 8, nlen = in[r.pos + 2] | in[r.pos + 3] << 8;
            if ((len ^ 0xFFFF) != nlen || r.pos + 4 + len > n || o + len > cap) return -1;
            memcpy(out + o, in + r.pos + 4, len);
            o += len;
            r.pos += 4 + len;
        } else if (type == 1) {
            for (;;) {
                int sym = fixed_litlen(&r);
                if (r.err || sym < 0) return -1;
                if (sym < 256) { if (o >= cap) return -1; out[o++] = (uint8_t)sym; continue; }
                if (sym == 256) break;
                if (sym > 285) return -1;
                int len = lbase[sym - 257] + (int)get_bits(&r, lext[sym - 257]);
                unsigned dc = 0;
                for (int i = 0; i < 5; i++) dc = dc << 1 | get_bit(&r);
                if (dc > 29) return -1;
                size_t dist = (size_t)dbase[dc] + get_bits(&r, dext[dc]);
                if (r.err || dist > o || dist > 32768 || o + (size_t)len > cap) return -1;
                for (int i = 0; i < len; i++, o++) out[o] = out[o - dist];
            }
        } else {
            return -1; /* dynamic Huffman: this encoder does not write it */
        }
        if (r.err) return -1;
    }
    if (r.bit) r.pos++;
    *used = r.pos;
    return (long)o;
}

typedef struct {
    int w, h;
    uint8_t *rgb; /* (h, w, 3) */
    int n_idat;
} image;

/* Parses and checks a whole PNG file; fills img (free rgb). Reports each failed check. */
static int png_check(const uint8_t *d, size_t n, image *img) {
    int ok = 1;
    memset(img, 0, sizeof *img);
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    CHECK(n > 8 && memcmp(d, sig, 8) == 0, "PNG signature");
    if (n <= 8 || memcmp(d, sig, 8) != 0) return 0;
    size_t pos = 8, zlen = 0;
    uint8_t *z = NULL;
    int seen_ihdr = 0, seen_iend = 0, depth = 0, ctype = 0;
    while (pos + 12 <= n && !seen_iend) {
        uint32_t len = rd32(d + pos);
        if (pos + 12 + len > n) { CHECK(0, "chunk at %zu runs past the end", pos); ok = 0; break; }
        const uint8_t *type = d + pos + 4, *data = d + pos + 8;
        uint32_t crc = rd32(d + pos + 8 + len);
        CHECK(crc == ref_crc32(type, len + 4), "CRC of chunk %.4s", (const char *)type);
        ok &= crc == ref_crc32(type, len + 4);
        if (memcmp(type, "IHDR", 4) == 0) {
            CHECK(pos == 8 && len == 13, "IHDR first, 13 bytes");
            img->w = (int)rd32(data);
            img->h = (int)rd32(data + 4);
            depth = data[8];
            ctype = data[9];
            CHECK(data[10] == 0 && data[11] == 0 && data[12] == 0, "compression, filter, interlace 0");
            seen_ihdr = 1;
        } else if (memcmp(type, "IDAT", 4) == 0) {
            z = realloc(z, zlen + len);
            memcpy(z + zlen, data, len);
            zlen += len;
            img->n_idat++;
        } else if (memcmp(type, "IEND", 4) == 0) {
            CHECK(len == 0, "IEND empty");
            seen_iend = 1;
        }
        pos += 12 + len;
    }
    CHECK(seen_ihdr && seen_iend && img->n_idat > 0, "IHDR, IDAT and IEND present");
    CHECK(pos == n, "nothing after IEND (%zu of %zu bytes)", pos, n);
    CHECK(depth == 8 && ctype == 2, "8-bit RGB, got depth %d colour type %d", depth, ctype);
    ok &= seen_ihdr && seen_iend && img->n_idat > 0 && pos == n && depth == 8 && ctype == 2;
    if (!ok || zlen < 6) { free(z); return 0; }
    /* zlib: header, deflate data, Adler-32 of the raw rows */
    CHECK((z[0] & 0x0F) == 8 && (z[0] >> 4) <= 7 && ((z[0] << 8) | z[1]) % 31 == 0 && !(z[1] & 0x20), "zlib header");
    size_t raw_size = (size_t)img->h * (1 + 3 * (size_t)img->w), used = 0;
    uint8_t *raw = malloc(raw_size + 1);
    long got = inflate_simple(z + 2, zlen - 2, raw, raw_size + 1, &used);
    CHECK(got == (long)raw_size, "inflated %ld bytes, expected %zu", got, raw_size);
    if (got == (long)raw_size) {
        CHECK(2 + used + 4 == zlen, "Adler-32 right after the deflate data");
        CHECK(2 + used + 4 <= zlen && rd32(z + 2 + used) == ref_adler32(raw, raw_size), "zlib Adler-32");
        img->rgb = malloc(raw_size);
        for (int y = 0; y < img->h; y++) {
            const uint8_t *row = raw + (size_t)y * (1 + 3 * (size_t)img->w);
            CHECK(row[0] == 0, "row %d filter %d (the encoder writes filter 0)", y, row[0]);
            memcpy(img->rgb + (size_t)y * 3 * img->w, row + 1, 3 * (size_t)img->w);
        }
    } else {
        ok = 0;
    }
    free(raw);
    free(z);
    return ok;
}

static int read_png_file(const char *path, image *img) {
    char *data = NULL;
    size_t len = 0;
    if (cp_read_file(path, &data, &len) != CP_OK) { CHECK(0, "read %s: %s", path, cp_last_error()); return 0; }
    int ok = png_check((const uint8_t *)data, len, img);
    cp_free(data);
    return ok;
}

/* Pixels close to a colour. */
static long count_color(const image *img, int r, int g, int b, int tol) {
    long k = 0;
    for (long i = 0; i < (long)img->w * img->h; i++) {
        const uint8_t *p = img->rgb + 3 * i;
        k += abs(p[0] - r) <= tol && abs(p[1] - g) <= tol && abs(p[2] - b) <= tol;
    }
    return k;
}

static const char *tmp_path(const char *name) {
    static char buf[4][128];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, 128, "%s/%s", tmpdir, name);
    return p;
}

/* ---- tests ------------------------------------------------------------------------------------- */

TEST(encoder_round_trip) {
    /* noise, runs and gradients: literals, short and long matches, all distances */
    int w = 301, h = 97;
    uint8_t *rgb = malloc((size_t)w * h * 3);
    uint32_t s = 12345;
    for (int i = 0; i < w * h * 3; i++) {
        s = s * 1103515245u + 12345u;
        int y = i / (w * 3);
        rgb[i] = y < 30 ? (uint8_t)(s >> 24) : y < 60 ? (uint8_t)(i / 7) : (uint8_t)((i % 3) * 100);
    }
    uint8_t *png = NULL;
    size_t len = 0;
    CHECK_OK(cp_png_encode_rgb(rgb, w, h, &png, &len));
    image img;
    if (png && png_check(png, len, &img)) {
        CHECK(img.w == w && img.h == h, "size %dx%d", img.w, img.h);
        CHECK(memcmp(img.rgb, rgb, (size_t)w * h * 3) == 0, "pixels round-trip");
    }
    free(img.rgb);
    cp_free(png);
    uint8_t one[3] = {1, 2, 3};
    CHECK_OK(cp_png_encode_rgb(one, 1, 1, &png, &len));
    if (png && png_check(png, len, &img)) CHECK(img.rgb[0] == 1 && img.rgb[1] == 2 && img.rgb[2] == 3, "1x1");
    free(img.rgb);
    cp_free(png);
    CHECK_ERR(cp_png_encode_rgb(one, 0, 1, &png, &len), "out of range");
    free(rgb);
}

TEST(loss_curve_png) {
    enum { N = 200, E = 10 };
    double ts[N], tl[N], es[E], el[E];
    for (int i = 0; i < N; i++) {
        ts[i] = i + 1;
        tl[i] = 2.0 + 1.5 * exp(-i / 40.0) + 0.08 * sin(i * 1.7);
    }
    for (int i = 0; i < E; i++) { es[i] = 20.0 * (i + 1); el[i] = 2.1 + 1.4 * exp(-es[i] / 45.0); }
    tl[50] = NAN;  /* skipped */
    tl[51] = INFINITY;
    const char *path = tmp_path("loss_curve.png");
    CHECK_OK(cp_plot_loss_png(path, ts, tl, N, es, el, E, "gpt2 LoRA r=8: loss"));
    image img;
    if (read_png_file(path, &img)) {
        CHECK(img.w == 800 && img.h == 480, "800x480, got %dx%d", img.w, img.h);
        CHECK(img.rgb[0] == 255 && img.rgb[1] == 255 && img.rgb[2] == 255, "white background");
        long blue = count_color(&img, 31, 119, 180, 10), red = count_color(&img, 214, 39, 40, 10);
        long dark = count_color(&img, 40, 40, 40, 10);
        printf("  loss_curve.png: %ld blue, %ld red, %ld text pixels\n", blue, red, dark);
        CHECK(blue > 1000, "train line drawn (%ld blue pixels)", blue);
        CHECK(red > 300, "eval points drawn (%ld red pixels)", red);
        CHECK(dark > 1500, "text drawn (%ld pixels)", dark);
    }
    free(img.rgb);
    char *data;
    size_t len;
    if (cp_read_file(path, &data, &len) == CP_OK) {
        printf("  loss_curve.png: %zu bytes\n", len);
        CHECK(len < 200000, "compressed (%zu bytes)", len);
        cp_free(data);
    }
    CHECK(access(tmp_path("loss_curve.png.tmp"), F_OK) != 0, "no temporary left");
}

TEST(loss_curve_edge_cases) {
    double s1[1] = {5}, l1[1] = {3.25};
    double sc[4] = {1, 2, 3, 4}, lc[4] = {2, 2, 2, 2};
    double sn[3] = {NAN, 1, INFINITY}, ln[3] = {1, NAN, 2};
    double sb[3] = {0, 1e9, 2e9}, lb[3] = {1e-7, 3e-7, 2e-7};
    double sneg[3] = {-5, 0, 5}, lneg[3] = {-1e300, 0, 1e300};
    double sz[2] = {0, 1}, lz[2] = {0, 0};
    double sclose[3] = {1, 2, 3}, lclose[3] = {1000.0, 1000.0000001, 1000.0000002};
    struct { const char *name; const double *ts, *tl; int nt; const double *es, *el; int ne; } cases[] = {
        {"empty.png", NULL, NULL, 0, NULL, NULL, 0},
        {"one_point.png", s1, l1, 1, NULL, NULL, 0},
        {"eval_only.png", NULL, NULL, 0, s1, l1, 1},
        {"constant.png", sc, lc, 4, sc, lc, 4},
        {"all_nonfinite.png", sn, ln, 3, sn, ln, 3},
        {"big_steps_tiny_loss.png", sb, lb, 3, NULL, NULL, 0},
        {"huge_range.png", sneg, lneg, 3, NULL, NULL, 0},
        {"zero.png", sz, lz, 2, NULL, NULL, 0},
        {"nearly_constant.png", sclose, lclose, 3, NULL, NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *path = tmp_path(cases[i].name);
        CHECK_OK(cp_plot_loss_png(path, cases[i].ts, cases[i].tl, cases[i].nt, cases[i].es, cases[i].el, cases[i].ne, NULL));
        image img;
        if (read_png_file(path, &img)) CHECK(img.w == 800 && img.h == 480, "%s size", cases[i].name);
        free(img.rgb);
    }
    /* a title with non-ASCII text draws '?' and does not fail */
    CHECK_OK(cp_plot_loss_png(tmp_path("utf8.png"), s1, l1, 1, NULL, NULL, 0, "caf\xC3\xA9 \xE2\x80\x94 run"));
}

TEST(loss_curve_errors) {
    double s[1] = {1}, l[1] = {1};
    CHECK_ERR(cp_plot_loss_png("/nonexistent-dir/loss.png", s, l, 1, NULL, NULL, 0, "t"), "/nonexistent-dir/loss.png");
    CHECK_ERR(cp_plot_loss_png(NULL, s, l, 1, NULL, NULL, 0, "t"), "no output path");
    CHECK_ERR(cp_plot_loss_png(tmp_path("bad.png"), NULL, l, 1, NULL, NULL, 0, "t"), "bad series");
    CHECK_ERR(cp_plot_loss_png(tmp_path("bad.png"), s, l, -1, NULL, NULL, 0, "t"), "bad series");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cpeft-test-plot-XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    RUN(encoder_round_trip);
    RUN(loss_curve_png);
    RUN(loss_curve_edge_cases);
    RUN(loss_curve_errors);
    if (!getenv("CPEFT_KEEP_PLOTS")) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    } else {
        printf("  plots kept in %s\n", tmpdir);
    }
    return test_summary();
}
