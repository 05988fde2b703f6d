/*
 * plot.h — the loss curve of a training run (loss_curve.png and loss_curve.svg beside
 * trainer_state.json), drawn with cairo (Debian's libcairo2): train loss against step as a blue
 * line, eval loss as red points joined by a line, the best checkpoint marked (a green ring on its
 * eval point and a dashed line at its step), axes with ticks and labels and a legend in a real font
 * (cairo's toy text API: fontconfig's "sans-serif"). The same drawing code renders onto an image
 * surface (written by cairo's PNG writer) and onto an SVG surface.
 */
#ifndef CP_TRAIN_PLOT_H
#define CP_TRAIN_PLOT_H

#include <stddef.h>

#include "core/error.h"

#define CP_PLOT_WIDTH 800
#define CP_PLOT_HEIGHT 480

typedef struct {
    const double *train_step, *train_loss; /* [n_train] (may be NULL when n_train is 0) */
    int n_train;
    const double *eval_step, *eval_loss;   /* [n_eval] */
    int n_eval;
    double best_step;                      /* the best checkpoint's step, marked; NAN: none */
    const char *title;                     /* NULL: "loss" */
} cp_plot_data;

/* Writes the plot to `path` atomically (temporary file + rename), CP_PLOT_WIDTH x CP_PLOT_HEIGHT:
 * a PNG or an SVG document. Points whose step or loss is NaN or infinite are skipped; either series
 * may be empty. */
cp_status cp_plot_loss_png(const char *path, const cp_plot_data *d);
cp_status cp_plot_loss_svg(const char *path, const cp_plot_data *d);

/* The memory drawing one plot holds at its peak, for the memory plan of a run: cairo's libraries
 * (opened on the first plot), the image surface, zlib's deflate state in the PNG writer, and cairo's
 * and fontconfig's font caches (the font configuration is loaded once per process). Measured: see
 * tests/unit/test_plot.c and plot.c. */
size_t cp_plot_peak_bytes(void);

#endif
