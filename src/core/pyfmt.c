/*
 * pyfmt.c — Python's float repr: shortest round-trip digits (the "repr" mode of dtoa), shown in
 * fixed notation when the decimal exponent is in [-4, 16) and in scientific notation otherwise,
 * with at least one digit after the point in fixed notation and a two-digit signed exponent.
 */
#include "core/pyfmt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *cp_py_float_repr(double x, char *buf, size_t bufsize) {
    if (isnan(x)) { snprintf(buf, bufsize, "nan"); return buf; }
    if (isinf(x)) { snprintf(buf, bufsize, x < 0 ? "-inf" : "inf"); return buf; }
    if (x == 0) { snprintf(buf, bufsize, signbit(x) ? "-0.0" : "0.0"); return buf; }

    /* Shortest precision p whose %.{p-1}e form round-trips. */
    char sci[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(sci, sizeof sci, "%.*e", p - 1, x);
        if (strtod(sci, NULL) == x) break;
    }
    /* Split "d.ddde±XX" into sign, digits and exponent. */
    const char *s = sci;
    int negative = 0;
    if (*s == '-') { negative = 1; s++; }
    char digits[24];
    int nd = 0;
    for (; *s && *s != 'e'; s++)
        if (*s != '.') digits[nd++] = *s;
    digits[nd] = '\0';
    int exp10 = atoi(s + 1); /* value = 0.d1d2... * 10^(exp10+1) */
    while (nd > 1 && digits[nd - 1] == '0') digits[--nd] = '\0';

    char out[64];
    int n = 0;
    if (negative) out[n++] = '-';
    if (exp10 >= -5 + 1 && exp10 < 16) { /* Python: fixed when -4 <= exp10 < 16 */
        if (exp10 < 0) {
            out[n++] = '0'; out[n++] = '.';
            for (int i = 0; i < -exp10 - 1; i++) out[n++] = '0';
            for (int i = 0; i < nd; i++) out[n++] = digits[i];
        } else {
            for (int i = 0; i <= exp10; i++) out[n++] = i < nd ? digits[i] : '0';
            out[n++] = '.';
            if (nd > exp10 + 1) for (int i = exp10 + 1; i < nd; i++) out[n++] = digits[i];
            else out[n++] = '0';
        }
        out[n] = '\0';
    } else {
        out[n++] = digits[0];
        if (nd > 1) { out[n++] = '.'; for (int i = 1; i < nd; i++) out[n++] = digits[i]; }
        n += snprintf(out + n, sizeof out - (size_t)n, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    }
    snprintf(buf, bufsize, "%s", out);
    return buf;
}
