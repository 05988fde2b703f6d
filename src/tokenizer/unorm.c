/*
 * unorm.c — Unicode normalization (NFD, NFKD, NFC, NFKC) that also reports, for every output
 * char, the alignment change HF's `unicode_normalization_alignments` crate reports: the first char
 * of a decomposition replaces its source (0), the others are inserted (+1), and each composition
 * folds the change of its second char in (k + change - 1). Canonical reordering moves the changes
 * with their chars. Decomposition data, combining classes and primary composites come from
 * utf8proc; the algorithm (buffering, stable sort, blocking rules) is the crate's, ported.
 */
#include "tokenizer/internal.h"
#include "core/alloc.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

typedef struct { uint8_t ccc; uint32_t c; int32_t change; } dchar;
typedef struct { dchar *v; size_t n, cap; } dvec;

static int dvec_push(dvec *d, dchar x) {
    if (cp_grow(&d->v, &d->cap, d->n + 1, sizeof *d->v, 64, "a normalization buffer")) return CP_ERR;
    d->v[d->n++] = x;
    return CP_OK;
}

static uint8_t ccc_of(uint32_t c) {
    if (c < 0x300) return 0;
    return (uint8_t)utf8proc_get_property((utf8proc_int32_t)c)->combining_class;
}

/* Stable insertion sort of v[a..n) by ccc (runs are short). */
static void sort_pending(dvec *d, size_t a) {
    for (size_t i = a + 1; i < d->n; i++) {
        dchar x = d->v[i];
        size_t j = i;
        while (j > a && d->v[j - 1].ccc > x.ccc) { d->v[j] = d->v[j - 1]; j--; }
        d->v[j] = x;
    }
}

/* Decomposes s into d with changes, in canonical order. */
static int decompose(const char *s, size_t len, int compat, dvec *d) {
    size_t ready_end = 0;
    utf8proc_option_t opt = (utf8proc_option_t)(UTF8PROC_DECOMPOSE | (compat ? UTF8PROC_COMPAT : 0));
    for (size_t i = 0; i < len;) {
        size_t l;
        uint32_t c = cp_utf8_decode(s + i, &l);
        i += l;
        utf8proc_int32_t buf[32];
        utf8proc_ssize_t k;
        if (c < 0xA0) { buf[0] = (utf8proc_int32_t)c; k = 1; }
        else {
            int last = 0;
            k = utf8proc_decompose_char((utf8proc_int32_t)c, buf, 32, opt, &last);
            if (k < 1 || k > 32) { buf[0] = (utf8proc_int32_t)c; k = 1; }
        }
        for (utf8proc_ssize_t j = 0; j < k; j++) {
            uint8_t cc = ccc_of((uint32_t)buf[j]);
            if (cc == 0) { sort_pending(d, ready_end); ready_end = d->n; }
            if (dvec_push(d, (dchar){cc, (uint32_t)buf[j], j == 0 ? 0 : 1})) return CP_ERR;
        }
    }
    sort_pending(d, ready_end);
    return CP_OK;
}

/* The primary composite of a + b, or 0. */
static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (b < 0x300) return 0; /* every second char of a primary composite is >= U+0300 */
    utf8proc_int32_t buf[2] = {(utf8proc_int32_t)a, (utf8proc_int32_t)b};
    utf8proc_ssize_t n = utf8proc_normalize_utf32(buf, 2, UTF8PROC_COMPOSE | UTF8PROC_STABLE);
    return n == 1 ? (uint32_t)buf[0] : 0;
}

static int emit(tk_changes *out, uint32_t c, int32_t change) { return tk_changes_push(out, c, change); }

/* Recomposition (Recompositions::next), consuming the decomposed stream. */
static int recompose(const dvec *d, tk_changes *out) {
    int have_composee = 0;
    uint32_t kc = 0;
    int32_t kchg = 0;
    int have_last_ccc = 0;
    uint8_t last_ccc = 0;
    dvec buffer = {0};
    int rc = CP_OK;
    for (size_t i = 0; i < d->n && rc == CP_OK; i++) {
        uint32_t ch = d->v[i].c;
        int32_t change = d->v[i].change;
        uint8_t ch_class = d->v[i].ccc;
        if (!have_composee) {
            if (ch_class != 0) { rc = emit(out, ch, change); continue; }
            have_composee = 1; kc = ch; kchg = change;
            continue;
        }
        if (!have_last_ccc) {
            uint32_t r = compose_pair(kc, ch);
            if (r) { kc = r; kchg = kchg + change - 1; continue; }
            if (ch_class == 0) {
                rc = emit(out, kc, kchg);
                kc = ch; kchg = change;
                continue;
            }
            rc = dvec_push(&buffer, (dchar){ch_class, ch, change});
            have_last_ccc = 1; last_ccc = ch_class;
            continue;
        }
        if (last_ccc >= ch_class) {
            if (ch_class == 0) {
                /* Purging: emit the composee, then the buffered chars, continue composing. */
                rc = emit(out, kc, kchg);
                for (size_t b = 0; b < buffer.n && rc == CP_OK; b++)
                    rc = emit(out, buffer.v[b].c, buffer.v[b].change);
                buffer.n = 0;
                kc = ch; kchg = change;
                have_last_ccc = 0;
                continue;
            }
            rc = dvec_push(&buffer, (dchar){ch_class, ch, change});
            last_ccc = ch_class;
            continue;
        }
        uint32_t r = compose_pair(kc, ch);
        if (r) { kc = r; kchg = kchg + change - 1; continue; }
        rc = dvec_push(&buffer, (dchar){ch_class, ch, change});
        last_ccc = ch_class;
    }
    /* Finished: buffered chars first, then the composee (the crate's order). */
    if (rc == CP_OK) {
        if (have_composee) {
            /* In the crate, Finished(0) returns the composee first only when composee is Some at
             * the point the input ends: `if self.composee.is_some() { return composee.take() }`
             * happens before the buffer is drained. */
            rc = emit(out, kc, kchg);
        }
        for (size_t b = 0; b < buffer.n && rc == CP_OK; b++)
            rc = emit(out, buffer.v[b].c, buffer.v[b].change);
    }
    free(buffer.v);
    return rc;
}

int tk_unorm_changes(const char *s, size_t len, int compose, int compat, tk_changes *out);
int tk_unorm_changes(const char *s, size_t len, int compose, int compat, tk_changes *out) {
    dvec d = {0};
    int rc = decompose(s, len, compat, &d);
    if (rc == CP_OK) {
        if (compose) rc = recompose(&d, out);
        else
            for (size_t i = 0; i < d.n && rc == CP_OK; i++) rc = emit(out, d.v[i].c, d.v[i].change);
    }
    free(d.v);
    return rc;
}
