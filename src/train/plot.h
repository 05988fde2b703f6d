/*
 * plot.h — the loss curve of a training run as a PNG image (loss_curve.png beside metrics.jsonl).
 *
 * Self-contained: a small RGB canvas, a built-in 5x7 bitmap font, anti-aliased lines and a minimal
 * PNG encoder (zlib with one fixed-Huffman deflate block, CRC-32, Adler-32). No libpng, no zlib.
 */
#ifndef CP_TRAIN_PLOT_H
#define CP_TRAIN_PLOT_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Writes an 800x480 PNG to `path` (atomically: temporary file + rename): train loss against step as a
 * blue line, eval loss as red points joined by a line, axes with tick values, a legend with the last
 * value of each series, and `title` (NULL: "loss") at the top. Points whose step or loss is NaN or
 * infinite are skipped; either series may be empty (n = 0, pointers may then be NULL). */
cp_status cp_plot_loss_png(const char *path, const double *train_steps, const double *train_loss, int n_train,
                           const double *eval_steps, const double *eval_loss, int n_eval, const char *title);

/* The memory cp_plot_loss_png holds at its peak: the canvas, the PNG rows and the compressor's
 * tables (the compressed image, small for a plot, comes on top). The memory plan of a run counts it. */
size_t cp_plot_peak_bytes(void);

/* Encodes an 8-bit RGB image (rgb is (h, w, 3), row-major) as a PNG file in memory: *out (free with
 * cp_free) holds *out_len bytes. */
cp_status cp_png_encode_rgb(const uint8_t *rgb, int w, int h, uint8_t **out, size_t *out_len);

#endif
