/*
 * progress.c — the live progress line and durations; see progress.h.
 */
#include "core/progress.h"

#include <math.h>

void cp_format_duration(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) { snprintf(buf, n, "?"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

#define BAR_WIDTH 24

void cp_progress_bar(FILE *f, const char *label, int64_t done, int64_t total, const char *detail, double eta_seconds) {
    char eta[32];
    cp_format_duration(eta_seconds, eta, sizeof eta);
    int fill = total > 0 ? (int)((double)BAR_WIDTH * (double)done / (double)total) : 0;
    fill = fill < 0 ? 0 : fill > BAR_WIDTH ? BAR_WIDTH : fill;
    fprintf(f, "\r[%.*s%.*s] %s %lld/%lld  %s%sETA %s   ", fill, "########################", BAR_WIDTH - fill,
            "........................", label, (long long)done, (long long)total, detail ? detail : "",
            detail && *detail ? "  " : "", eta);
    fflush(f);
}
