/*
 * plot.c — the loss curve drawn with cairo; see plot.h.
 *
 *   the axes   "nice" ticks (1, 2, 5 x 10^k) covering the data, labels with just enough digits
 *   the plot   one drawing function over a cairo_t: grid, frame, ticks, axis names, the two series,
 *              the best checkpoint, legend, title; run on an image surface for the PNG and on an
 *              SVG surface for the SVG
 *
 * It is not a plotting library: one fixed layout, two series, linear axes.
 */
#include "train/plot.h"
#include "core/alloc.h"

#include <cairo.h>
#include <cairo-svg.h>
#include <dlfcn.h>
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PLOT_W CP_PLOT_WIDTH
#define PLOT_H CP_PLOT_HEIGHT
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
    double left, right, top, bottom; /* the plot area in user units (pixels of the PNG) */
    axis x, y;
} frame;

/* ---- cairo, loaded on the first plot ----------------------------------------------------------------
 * libcairo.so.2 pulls in some twenty libraries (pixman, FreeType, fontconfig, libpng, X11 / xcb): about
 * 2 MiB resident in every process that links them. Opened with dlopen when a plot is first drawn, it
 * costs nothing to the commands and library users that never draw one (and its absence at run time
 * is an error of the plot alone). The headers are cairo's own (pkg-config cairo). */
#define CAIRO_FUNCS(X) \
    X(arc) \
    X(clip) \
    X(create) \
    X(debug_reset_static_data) \
    X(destroy) \
    X(fill) \
    X(fill_preserve) \
    X(image_surface_create) \
    X(line_to) \
    X(move_to) \
    X(new_path) \
    X(paint) \
    X(rectangle) \
    X(restore) \
    X(rotate) \
    X(save) \
    X(select_font_face) \
    X(set_dash) \
    X(set_font_size) \
    X(set_line_join) \
    X(set_line_width) \
    X(set_source_rgb) \
    X(show_text) \
    X(status) \
    X(status_to_string) \
    X(stroke) \
    X(surface_destroy) \
    X(surface_finish) \
    X(surface_status) \
    X(surface_write_to_png) \
    X(svg_surface_create) \
    X(text_extents) \
    X(translate)

static struct {
#define X(f) __typeof__(&cairo_##f) f;
    CAIRO_FUNCS(X)
#undef X
} cx;

static int cairo_loaded;
static char cairo_why[256];

/* At exit: cairo's and fontconfig's caches released (they live for the process; LeakSanitizer would
 * report them under `make test-asan`, and so would any program of a user's built with it). */
static void release_cairo(void) {
    cx.debug_reset_static_data();
    void *fc = dlopen("libfontconfig.so.1", RTLD_NOW | RTLD_NOLOAD);
    void (*fini)(void) = NULL;
    if (fc) *(void **)&fini = dlsym(fc, "FcFini");
    if (fini) fini();
    if (fc) dlclose(fc); /* the NOLOAD reference only */
}

static void open_cairo(void) {
    void *h = dlopen("libcairo.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h) { snprintf(cairo_why, sizeof cairo_why, "%s", dlerror()); return; }
#define X(f)                                                                                       \
    if (!(*(void **)&cx.f = dlsym(h, "cairo_" #f))) {                                              \
        snprintf(cairo_why, sizeof cairo_why, "libcairo.so.2 has no cairo_" #f);                   \
        return;                                                                                    \
    }
    CAIRO_FUNCS(X)
#undef X
    cairo_loaded = 1; /* the handle stays open for the process */
    atexit(release_cairo);
}

static cp_status load_cairo(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, open_cairo);
    return cairo_loaded ? CP_OK : cp_error("the loss curve needs cairo (Debian: libcairo2): %s", cairo_why);
}

static double map_x(const frame *f, double v) { return f->left + (v - f->x.lo) / (f->x.hi - f->x.lo) * (f->right - f->left); }
static double map_y(const frame *f, double v) { return f->bottom - (v - f->y.lo) / (f->y.hi - f->y.lo) * (f->bottom - f->top); }

typedef struct { double r, g, b; } rgb;
static const rgb INK = {0.16, 0.16, 0.16}, GRID = {0.894, 0.894, 0.894}, FRAME = {0.35, 0.35, 0.35}, BLUE = {31 / 255.0, 119 / 255.0, 180 / 255.0},
                 RED = {214 / 255.0, 39 / 255.0, 40 / 255.0}, GREEN = {44 / 255.0, 160 / 255.0, 44 / 255.0};

static void color(cairo_t *cr, rgb c) { cx.set_source_rgb(cr, c.r, c.g, c.b); }

static double text_width(cairo_t *cr, const char *s) {
    cairo_text_extents_t e;
    cx.text_extents(cr, s, &e);
    return e.x_advance;
}

/* Text with its left end at x and its baseline at y. */
static void text_at(cairo_t *cr, double x, double y, const char *s) {
    cx.move_to(cr, x, y);
    cx.show_text(cr, s);
}

/* The finite points of a series, as one path (a polyline). Returns how many; *last the last value. */
static int series_path(cairo_t *cr, const frame *f, const double *xs, const double *ys, int n, double *last) {
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(xs[i]) || !isfinite(ys[i])) continue;
        double x = map_x(f, clamp_big(xs[i])), y = map_y(f, clamp_big(ys[i]));
        if (k++) cx.line_to(cr, x, y);
        else cx.move_to(cr, x, y);
        *last = ys[i];
    }
    return k;
}

static void disc(cairo_t *cr, double x, double y, double r) {
    cx.new_path(cr);
    cx.arc(cr, x, y, r, 0, 2 * M_PI);
    cx.fill(cr);
}

static void draw(cairo_t *cr, const cp_plot_data *d) {
    const int nt = d->n_train, ne = d->n_eval;
    cx.set_source_rgb(cr, 1, 1, 1);
    cx.paint(cr);
    cx.select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cx.set_font_size(cr, 13);

    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    int any = 0, x_whole = 1;
    fold_range(d->train_step, d->train_loss, nt, &xlo, &xhi, &ylo, &yhi, &any, &x_whole);
    fold_range(d->eval_step, d->eval_loss, ne, &xlo, &xhi, &ylo, &yhi, &any, &x_whole);
    if (!any) { xlo = 0; xhi = 1; ylo = 0; yhi = 1; }
    frame f;
    make_axis(&f.x, clamp_big(xlo), clamp_big(xhi), any && x_whole);
    make_axis(&f.y, clamp_big(ylo), clamp_big(yhi), 0);

    /* layout: the y tick labels decide the left margin */
    double ylab = 0;
    for (int i = 0; i < f.y.n; i++) ylab = fmax(ylab, text_width(cr, f.y.labels[i]));
    f.left = 48 + fmin(ylab, 240);
    f.right = PLOT_W - 24;
    f.top = 44;
    f.bottom = PLOT_H - 56;

    /* grid */
    color(cr, GRID);
    cx.set_line_width(cr, 1);
    for (int i = 0; i < f.x.n; i++) {
        double x = floor(map_x(&f, f.x.ticks[i])) + 0.5;
        cx.move_to(cr, x, f.top);
        cx.line_to(cr, x, f.bottom);
    }
    for (int i = 0; i < f.y.n; i++) {
        double y = floor(map_y(&f, f.y.ticks[i])) + 0.5;
        cx.move_to(cr, f.left, y);
        cx.line_to(cr, f.right, y);
    }
    cx.stroke(cr);

    /* frame, ticks and their labels */
    color(cr, FRAME);
    cx.rectangle(cr, floor(f.left) + 0.5, floor(f.top) + 0.5, floor(f.right - f.left), floor(f.bottom - f.top));
    for (int i = 0; i < f.x.n; i++) {
        double x = floor(map_x(&f, f.x.ticks[i])) + 0.5;
        cx.move_to(cr, x, f.bottom);
        cx.line_to(cr, x, f.bottom + 5);
    }
    for (int i = 0; i < f.y.n; i++) {
        double y = floor(map_y(&f, f.y.ticks[i])) + 0.5;
        cx.move_to(cr, f.left - 5, y);
        cx.line_to(cr, f.left, y);
    }
    cx.stroke(cr);
    color(cr, INK);
    for (int i = 0; i < f.x.n; i++) {
        double w = text_width(cr, f.x.labels[i]), x = map_x(&f, f.x.ticks[i]) - w / 2;
        text_at(cr, fmin(x, PLOT_W - 2 - w), f.bottom + 20, f.x.labels[i]);
    }
    for (int i = 0; i < f.y.n; i++)
        text_at(cr, f.left - 9 - text_width(cr, f.y.labels[i]), map_y(&f, f.y.ticks[i]) + 4.5, f.y.labels[i]);

    /* axis names and title */
    cx.set_font_size(cr, 14);
    text_at(cr, (f.left + f.right - text_width(cr, "step")) / 2, f.bottom + 44, "step");
    cx.save(cr);
    cx.translate(cr, 20, (f.top + f.bottom) / 2 + text_width(cr, "loss") / 2);
    cx.rotate(cr, -M_PI / 2);
    text_at(cr, 0, 0, "loss");
    cx.restore(cr);
    const char *title = d->title && d->title[0] ? d->title : "loss";
    cx.set_font_size(cr, 16);
    text_at(cr, (PLOT_W - text_width(cr, title)) / 2, 28, title);
    cx.set_font_size(cr, 13);

    /* the series, clipped to the plot area */
    cx.save(cr);
    cx.rectangle(cr, f.left - 4, f.top - 4, f.right - f.left + 8, f.bottom - f.top + 8);
    cx.clip(cr);
    double last_train = NAN, last_eval = NAN;
    cx.set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cx.set_line_width(cr, 2);
    color(cr, BLUE);
    int kt = series_path(cr, &f, d->train_step, d->train_loss, nt, &last_train);
    cx.stroke(cr);
    if (kt == 1) disc(cr, map_x(&f, clamp_big(d->train_step[0])), map_y(&f, clamp_big(d->train_loss[0])), 3.5);
    color(cr, RED);
    cx.set_line_width(cr, 1.6);
    int ke = series_path(cr, &f, d->eval_step, d->eval_loss, ne, &last_eval);
    cx.stroke(cr);
    for (int i = 0; i < ne; i++)
        if (isfinite(d->eval_step[i]) && isfinite(d->eval_loss[i]))
            disc(cr, map_x(&f, clamp_big(d->eval_step[i])), map_y(&f, clamp_big(d->eval_loss[i])), 3.5);
    /* the best checkpoint: a dashed line at its step, a ring on its eval point */
    int best = isfinite(d->best_step) && d->best_step >= f.x.lo && d->best_step <= f.x.hi;
    double best_loss = NAN;
    if (best) {
        double x = map_x(&f, d->best_step), dash[2] = {5, 4};
        color(cr, GREEN);
        cx.set_line_width(cr, 1.5);
        cx.set_dash(cr, dash, 2, 0);
        cx.move_to(cr, x, f.top);
        cx.line_to(cr, x, f.bottom);
        cx.stroke(cr);
        cx.set_dash(cr, NULL, 0, 0);
        for (int i = 0; i < ne; i++)
            if (d->eval_step[i] == d->best_step && isfinite(d->eval_loss[i])) best_loss = d->eval_loss[i];
        if (isfinite(best_loss)) {
            cx.set_line_width(cr, 2.5);
            cx.new_path(cr);
            cx.arc(cr, x, map_y(&f, clamp_big(best_loss)), 7, 0, 2 * M_PI);
            cx.stroke(cr);
        }
    }
    cx.restore(cr);
    (void)ke;

    /* legend, top right inside the frame: a sample of each series with its last value */
    char entries[3][80];
    rgb cols[3];
    int kind[3], n = 0; /* 0 line, 1 line with a dot, 2 dashed (the best) */
    if (!isnan(last_train)) { snprintf(entries[n], sizeof entries[n], "train loss %.4g", last_train); cols[n] = BLUE; kind[n++] = 0; }
    if (!isnan(last_eval)) { snprintf(entries[n], sizeof entries[n], "eval loss %.4g", last_eval); cols[n] = RED; kind[n++] = 1; }
    if (best) {
        if (isfinite(best_loss)) snprintf(entries[n], sizeof entries[n], "best checkpoint: step %.0f (%.4g)", d->best_step, best_loss);
        else snprintf(entries[n], sizeof entries[n], "best checkpoint: step %.0f", d->best_step);
        cols[n] = GREEN;
        kind[n++] = 2;
    }
    if (n) {
        double tw = 0;
        for (int i = 0; i < n; i++) tw = fmax(tw, text_width(cr, entries[i]));
        double bw = 12 + 28 + 8 + tw + 12, bh = 10 + n * 22, bx = floor(f.right - 12 - bw) + 0.5, by = floor(f.top + 12) + 0.5;
        cx.rectangle(cr, bx, by, bw, bh);
        cx.set_source_rgb(cr, 1, 1, 1);
        cx.fill_preserve(cr);
        color(cr, FRAME);
        cx.set_line_width(cr, 1);
        cx.stroke(cr);
        for (int i = 0; i < n; i++) {
            double cy = by + 16 + i * 22;
            double dash[2] = {5, 4};
            color(cr, cols[i]);
            cx.set_line_width(cr, kind[i] == 0 ? 2 : 1.6);
            if (kind[i] == 2) cx.set_dash(cr, dash, 2, 0);
            cx.move_to(cr, bx + 12, cy);
            cx.line_to(cr, bx + 40, cy);
            cx.stroke(cr);
            cx.set_dash(cr, NULL, 0, 0);
            if (kind[i] == 1) disc(cr, bx + 26, cy, 3.5);
            color(cr, INK);
            text_at(cr, bx + 48, cy + 4.5, entries[i]);
        }
    } else {
        color(cr, INK);
        text_at(cr, (f.left + f.right - text_width(cr, "no data")) / 2, (f.top + f.bottom) / 2, "no data");
    }
}

static cp_status check_data(const char *path, const cp_plot_data *d) {
    if (!path) return cp_error("loss curve: no output path given");
    if (!d || d->n_train < 0 || d->n_eval < 0 || (d->n_train && (!d->train_step || !d->train_loss)) ||
        (d->n_eval && (!d->eval_step || !d->eval_loss)))
        return cp_error("%s: loss curve: bad series (n_train %d, n_eval %d)", path, d ? d->n_train : -1, d ? d->n_eval : -1);
    return CP_OK;
}

/* "<path>.tmp.<pid>" (caller frees): written, then renamed over path. */
static char *temp_name(const char *path) {
    size_t n = strlen(path) + 32;
    char *t = cp_malloc(n, "a file name");
    if (t) snprintf(t, n, "%s.tmp.%d", path, (int)getpid());
    return t;
}

static cp_status finish(const char *path, char *tmp, cairo_status_t cs) {
    cp_status st = CP_OK;
    if (cs != CAIRO_STATUS_SUCCESS) st = cp_error("%s: cairo: %s", path, cx.status_to_string(cs));
    else if (rename(tmp, path) != 0) st = cp_error("%s: cannot rename %s into place", path, tmp);
    if (st != CP_OK) unlink(tmp);
    cp_free(tmp);
    return st;
}

cp_status cp_plot_loss_png(const char *path, const cp_plot_data *d) {
    if (check_data(path, d) != CP_OK || load_cairo() != CP_OK) return CP_ERR;
    char *tmp = temp_name(path);
    if (!tmp) return CP_ERR;
    cairo_surface_t *s = cx.image_surface_create(CAIRO_FORMAT_RGB24, PLOT_W, PLOT_H);
    cairo_t *cr = cx.create(s);
    draw(cr, d);
    cairo_status_t cs = cx.status(cr);
    cx.destroy(cr);
    if (cs == CAIRO_STATUS_SUCCESS) cs = cx.surface_write_to_png(s, tmp);
    cx.surface_destroy(s);
    return finish(path, tmp, cs);
}

cp_status cp_plot_loss_svg(const char *path, const cp_plot_data *d) {
    if (check_data(path, d) != CP_OK || load_cairo() != CP_OK) return CP_ERR;
    char *tmp = temp_name(path);
    if (!tmp) return CP_ERR;
    cairo_surface_t *s = cx.svg_surface_create(tmp, PLOT_W, PLOT_H);
    cairo_t *cr = cx.create(s);
    draw(cr, d);
    cairo_status_t cs = cx.status(cr);
    cx.destroy(cr);
    cx.surface_finish(s); /* writes the document */
    if (cs == CAIRO_STATUS_SUCCESS) cs = cx.surface_status(s);
    cx.surface_destroy(s);
    return finish(path, tmp, cs);
}

size_t cp_plot_peak_bytes(void) {
    const size_t image = (size_t)PLOT_W * PLOT_H * 4, row = (size_t)PLOT_W * 4;
    const size_t deflate = ((size_t)1 << 17) + ((size_t)1 << 17); /* zlib: (1 << (windowBits + 2)) + (1 << (memLevel + 9)) */
    /* fontconfig's configuration and cache, FreeType, cairo's glyph cache: the first plot of a process
     * grew the resident set by 2.8 MiB in all (surface and zlib included) on Debian 12; test_plot
     * measures it against this total */
    const size_t fonts = (size_t)5 << 18; /* 1.25 MiB */
    /* libcairo.so.2 and the libraries it loads (dlopen above): a process linking them starts 1.8 MiB
     * larger (`cpeft info --help`, Debian 12) */
    const size_t libraries = (size_t)2 << 20;
    return image + row + deflate + fonts + libraries;
}
