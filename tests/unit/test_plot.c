/*
 * test_plot.c — the loss curve drawn with cairo (src/train/plot.c): the PNG is read back with cairo
 * (cairo_image_surface_create_from_png) and its pixels checked for the two series, the best
 * checkpoint and the text; the SVG is checked to be well-formed XML (an independent little
 * checker: every tag closed in order, attributes quoted) with the number of <path> elements the
 * drawing makes in each series' colour; the memory the first plot of a process takes is measured
 * against cp_plot_peak_bytes.
 */
#include "test.h"
#include "train/plot.h"
#include "core/alloc.h"
#include "core/memstat.h"
#include "io/fsutil.h"

#include <cairo.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static char tmpdir[64];

static const char *tmp_path(const char *name) {
    static char buf[4][128];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, 128, "%s/%s", tmpdir, name);
    return p;
}

/* ---- the PNG, read back by cairo ---------------------------------------------------------------- */

typedef struct { int w, h, stride; const uint8_t *px; cairo_surface_t *s; } image;

static int read_png(const char *path, image *img) {
    memset(img, 0, sizeof *img);
    img->s = cairo_image_surface_create_from_png(path);
    if (cairo_surface_status(img->s) != CAIRO_STATUS_SUCCESS) {
        CHECK(0, "%s: cairo cannot read it back: %s", path, cairo_status_to_string(cairo_surface_status(img->s)));
        cairo_surface_destroy(img->s);
        img->s = NULL;
        return 0;
    }
    img->w = cairo_image_surface_get_width(img->s);
    img->h = cairo_image_surface_get_height(img->s);
    img->stride = cairo_image_surface_get_stride(img->s);
    img->px = cairo_image_surface_get_data(img->s);
    return 1;
}

static void rgb_at(const image *img, int x, int y, int *r, int *g, int *b) {
    uint32_t p;
    memcpy(&p, img->px + (size_t)y * img->stride + 4 * (size_t)x, 4); /* native-endian xRGB */
    *r = (int)(p >> 16 & 255);
    *g = (int)(p >> 8 & 255);
    *b = (int)(p & 255);
}

/* Pixels within tol of (r, g, b); their x range in *x0, *x1. */
static long count_color(const image *img, int r, int g, int b, int tol, int *x0, int *x1) {
    long n = 0;
    *x0 = img->w;
    *x1 = -1;
    for (int y = 0; y < img->h; y++)
        for (int x = 0; x < img->w; x++) {
            int pr, pg, pb;
            rgb_at(img, x, y, &pr, &pg, &pb);
            if (abs(pr - r) <= tol && abs(pg - g) <= tol && abs(pb - b) <= tol) {
                n++;
                if (x < *x0) *x0 = x;
                if (x > *x1) *x1 = x;
            }
        }
    return n;
}

/* ---- the SVG: well-formed XML, paths counted ------------------------------------------------------ */

/* 1 when text is well-formed as far as a plot needs: every element closed in order, attribute values
 * quoted, comments / declarations / processing instructions closed. *n_paths counts <path elements
 * whose style holds `color` (NULL: all). */
static int xml_well_formed(const char *s, const char *color, int *n_paths, char *why, size_t why_n) {
    char stack[64][64];
    int depth = 0;
    *n_paths = 0;
    while ((s = strchr(s, '<'))) {
        if (!strncmp(s, "<?", 2) || !strncmp(s, "<!--", 4) || !strncmp(s, "<!", 2)) {
            const char *end = !strncmp(s, "<?", 2) ? strstr(s, "?>") : !strncmp(s, "<!--", 4) ? strstr(s, "-->") : strchr(s, '>');
            if (!end) { snprintf(why, why_n, "unclosed declaration"); return 0; }
            s = end + 1;
            continue;
        }
        int closing = s[1] == '/';
        const char *name = s + 1 + closing;
        size_t n = strcspn(name, " \t\r\n/>");
        if (!n || n >= 64) { snprintf(why, why_n, "bad tag name"); return 0; }
        const char *p = name + n;
        int self = 0;
        while (*p && *p != '>') { /* attributes: name="value" */
            if (*p == '"' || *p == '\'') {
                const char *q = strchr(p + 1, *p);
                if (!q) { snprintf(why, why_n, "unterminated attribute in <%.*s>", (int)n, name); return 0; }
                p = q + 1;
                continue;
            }
            if (*p == '/' && p[1] == '>') self = 1;
            p++;
        }
        if (!*p) { snprintf(why, why_n, "unterminated tag <%.*s", (int)n, name); return 0; }
        if (!closing && n == 4 && !strncmp(name, "path", 4)) {
            const char *st = strstr(name, "style=\"");
            size_t len = (size_t)(p - name);
            if (!color || (st && (size_t)(st - name) < len && memmem(name, len, color, strlen(color)))) (*n_paths)++;
        }
        if (closing) {
            if (!depth || strncmp(stack[depth - 1], name, n) || stack[depth - 1][n]) {
                snprintf(why, why_n, "</%.*s> closes %s", (int)n, name, depth ? stack[depth - 1] : "nothing");
                return 0;
            }
            depth--;
        } else if (!self) {
            if (depth == 64) { snprintf(why, why_n, "too deep"); return 0; }
            memcpy(stack[depth], name, n);
            stack[depth++][n] = '\0';
        }
        s = p + 1;
    }
    if (depth) { snprintf(why, why_n, "<%s> is never closed", stack[depth - 1]); return 0; }
    return 1;
}

static int svg_paths(const char *path, const char *color) {
    char *text = NULL;
    size_t len;
    if (cp_read_file(path, &text, &len) != CP_OK) { CHECK(0, "%s unreadable", path); return -1; }
    char why[200];
    int n = 0;
    int ok = xml_well_formed(text, color, &n, why, sizeof why);
    CHECK(ok, "%s: not well-formed XML: %s", path, why);
    CHECK(strstr(text, "<svg") && strstr(text, "width=\"800\"") && strstr(text, "height=\"480\""), "%s: an 800x480 <svg>", path);
    cp_free(text);
    return ok ? n : -1;
}

/* ---- tests ------------------------------------------------------------------------------------- */

#define BLUE_SVG "rgb(12.156863%,46.666667%,70.588235%)"
#define RED_SVG "rgb(83.921569%,15.294118%,15.686275%)"
#define GREEN_SVG "rgb(17.254902%,62.745098%,17.254902%)"

TEST(loss_curve_png_and_svg) {
    enum { N = 200, E = 10 };
    double ts[N], tl[N], es[E], el[E];
    for (int i = 0; i < N; i++) {
        ts[i] = i + 1;
        tl[i] = 2.0 + 1.5 * exp(-i / 40.0) + 0.08 * sin(i * 1.7);
    }
    for (int i = 0; i < E; i++) { es[i] = 20.0 * (i + 1); el[i] = 2.1 + 1.4 * exp(-es[i] / 45.0); }
    tl[50] = NAN;  /* skipped */
    tl[51] = INFINITY;
    cp_mem_usage before, after;
    int measured = cp_mem_now(&before);
    cp_plot_data d = {ts, tl, N, es, el, E, 160, "gpt2 LoRA r=8: loss"};
    const char *png = tmp_path("loss_curve.png");
    CHECK_OK(cp_plot_loss_png(png, &d));
    if (UNDER_ASAN) printf("  (under ASan its shadow memory is in the growth: not compared)\n");
    else if (measured && cp_mem_now(&after)) { /* the first plot of the process: fontconfig, FreeType, the surface */
        double grew = (double)after.resident - (double)before.resident;
        printf("  the first plot grew the resident memory by %.2f MiB (cp_plot_peak_bytes %.2f MiB)\n", grew / 1048576,
               (double)cp_plot_peak_bytes() / 1048576);
        CHECK(grew <= (double)cp_plot_peak_bytes(), "the plot took %.0f bytes, more than cp_plot_peak_bytes %zu", grew, cp_plot_peak_bytes());
    }
    image img;
    if (read_png(png, &img)) {
        CHECK(img.w == 800 && img.h == 480, "800x480, got %dx%d", img.w, img.h);
        int r, g, b, x0, x1;
        rgb_at(&img, 2, 2, &r, &g, &b);
        CHECK(r == 255 && g == 255 && b == 255, "white background, got %d,%d,%d", r, g, b);
        long blue = count_color(&img, 31, 119, 180, 12, &x0, &x1);
        printf("  loss_curve.png: %ld blue pixels over x %d..%d\n", blue, x0, x1);
        CHECK(blue > 1000 && x1 - x0 > 600, "train line drawn across the plot (%ld blue pixels, x %d..%d)", blue, x0, x1);
        long red = count_color(&img, 214, 39, 40, 12, &x0, &x1);
        CHECK(red > 300 && x1 - x0 > 500, "eval points drawn (%ld red pixels, x %d..%d)", red, x0, x1);
        long green = count_color(&img, 44, 160, 44, 12, &x0, &x1);
        CHECK(green > 100, "best checkpoint marked (%ld green pixels)", green);
        long dark = count_color(&img, 40, 40, 40, 24, &x0, &x1);
        CHECK(dark > 800, "text drawn (%ld dark pixels)", dark);
        printf("  loss_curve.png: %ld red, %ld green, %ld text pixels\n", red, green, dark);
        cairo_surface_destroy(img.s);
    }
    char tmp[200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", png, (int)getpid());
    CHECK(access(tmp, F_OK) != 0, "no temporary left");

    const char *svg = tmp_path("loss_curve.svg");
    CHECK_OK(cp_plot_loss_svg(svg, &d));
    /* blue: the train line + its legend sample; red: the eval line, E points, the legend's line and
     * dot; green: the dashed line, the ring, the legend's sample */
    int nb = svg_paths(svg, BLUE_SVG), nr = svg_paths(svg, RED_SVG), ng = svg_paths(svg, GREEN_SVG), all = svg_paths(svg, NULL);
    printf("  loss_curve.svg: %d paths (%d blue, %d red, %d green)\n", all, nb, nr, ng);
    CHECK(nb == 2, "train: %d blue paths, expected 2", nb);
    CHECK(nr == 2 + E + 1, "eval: %d red paths, expected %d", nr, 2 + E + 1);
    CHECK(ng == 3, "best checkpoint: %d green paths, expected 3", ng);
}

TEST(loss_curve_edge_cases) {
    double s1[1] = {5}, l1[1] = {3.25};
    double sc[4] = {1, 2, 3, 4}, lc[4] = {2, 2, 2, 2};
    double sn[3] = {NAN, 1, INFINITY}, ln[3] = {1, NAN, 2};
    double sb[3] = {0, 1e9, 2e9}, lb[3] = {1e-7, 3e-7, 2e-7};
    double sneg[3] = {-5, 0, 5}, lneg[3] = {-1e300, 0, 1e300};
    double sz[2] = {0, 1}, lz[2] = {0, 0};
    double sclose[3] = {1, 2, 3}, lclose[3] = {1000.0, 1000.0000001, 1000.0000002};
    struct { const char *name; cp_plot_data d; } cases[] = {
        {"empty", {NULL, NULL, 0, NULL, NULL, 0, NAN, NULL}},
        {"one_point", {s1, l1, 1, NULL, NULL, 0, NAN, NULL}},
        {"eval_only", {NULL, NULL, 0, s1, l1, 1, 5, NULL}},
        {"constant", {sc, lc, 4, sc, lc, 4, 2, NULL}},
        {"all_nonfinite", {sn, ln, 3, sn, ln, 3, NAN, NULL}},
        {"big_steps_tiny_loss", {sb, lb, 3, NULL, NULL, 0, 1e9, NULL}},
        {"huge_range", {sneg, lneg, 3, NULL, NULL, 0, NAN, NULL}},
        {"zero", {sz, lz, 2, NULL, NULL, 0, NAN, NULL}},
        {"nearly_constant", {sclose, lclose, 3, NULL, NULL, 0, 99, NULL}},
        {"utf8_title", {s1, l1, 1, NULL, NULL, 0, NAN, "caf\xC3\xA9 \xE2\x80\x94 run"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char png[64], svg[64];
        snprintf(png, sizeof png, "%s.png", cases[i].name);
        snprintf(svg, sizeof svg, "%s.svg", cases[i].name);
        CHECK_OK(cp_plot_loss_png(tmp_path(png), &cases[i].d));
        CHECK_OK(cp_plot_loss_svg(tmp_path(svg), &cases[i].d));
        image img;
        if (read_png(tmp_path(png), &img)) {
            CHECK(img.w == 800 && img.h == 480, "%s size", cases[i].name);
            cairo_surface_destroy(img.s);
        }
        CHECK(svg_paths(tmp_path(svg), NULL) > 0, "%s.svg has paths", cases[i].name);
    }
}

TEST(loss_curve_errors) {
    double s[1] = {1}, l[1] = {1};
    cp_plot_data ok = {s, l, 1, NULL, NULL, 0, NAN, "t"}, no_steps = {NULL, l, 1, NULL, NULL, 0, NAN, "t"},
                 negative = {s, l, -1, NULL, NULL, 0, NAN, "t"};
    CHECK_ERR(cp_plot_loss_png("/nonexistent-dir/loss.png", &ok), "/nonexistent-dir/loss.png");
    CHECK_ERR(cp_plot_loss_svg("/nonexistent-dir/loss.svg", &ok), "/nonexistent-dir/loss.svg");
    CHECK_ERR(cp_plot_loss_png(NULL, &ok), "no output path");
    CHECK_ERR(cp_plot_loss_png(tmp_path("bad.png"), &no_steps), "bad series");
    CHECK_ERR(cp_plot_loss_svg(tmp_path("bad.svg"), &negative), "bad series");
    CHECK(access(tmp_path("bad.png"), F_OK) != 0, "nothing written for bad data");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cpeft-test-plot-XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    RUN(loss_curve_png_and_svg);
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
