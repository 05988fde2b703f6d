/*
 * progress.h — the live progress line of long runs on a terminal (cpeft train, cpeft eval) and the
 * short durations they print ("42s", "3m05s", "1h02m").
 *
 *   [##########..............] step 12/40  loss 3.2101  lr 2.000e-04  grad norm 1.234  ETA 1m05s
 *
 * The line is redrawn in place with '\r'; the caller decides that the stream is a terminal (isatty)
 * and ends the line when the run is over. Not here: the per-step log lines, which stay plain text.
 */
#ifndef CP_CORE_PROGRESS_H
#define CP_CORE_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

/* Writes s seconds as "42s", "3m05s" or "1h02m" ("?" when not finite or negative). */
void cp_format_duration(double s, char *buf, size_t n);

/* Redraws "\r[bar] LABEL DONE/TOTAL  DETAIL  ETA eta   " on f and flushes it; DETAIL may be NULL. */
void cp_progress_bar(FILE *f, const char *label, int64_t done, int64_t total, const char *detail, double eta_seconds);

#endif
