/*
 * labels.c — label sets: discovery from the training file's values, lookup, description; see labels.h.
 */
#include "train/labels.h"
#include "core/alloc.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cp_status cp_raw_label_from_text(cp_raw_label *r, const char *s, size_t n) {
    memset(r, 0, sizeof *r);
    r->s = cp_malloc(n + 1, "a label");
    if (!r->s) return CP_ERR;
    memcpy(r->s, s, n);
    r->s[n] = '\0';
    if (n == 0 || memchr(s, '\0', n)) return CP_OK;
    size_t k = (s[0] == '-' || s[0] == '+') ? 1 : 0;
    int digits = k < n;
    for (size_t j = k; j < n; j++) digits &= s[j] >= '0' && s[j] <= '9';
    errno = 0;
    char *end;
    if (digits) {
        long long v = strtoll(r->s, &end, 10);
        if (errno == 0 && *end == '\0') { r->is_int = r->is_num = 1; r->i = v; r->v = (double)v; }
        return CP_OK;
    }
    /* a float as pandas reads one: decimal text, not inf / nan words */
    for (size_t j = 0; j < n; j++)
        if (!strchr("0123456789+-.eE", s[j])) return CP_OK;
    double v = strtod(r->s, &end);
    if (*end == '\0' && end != r->s && isfinite(v)) { r->is_num = 1; r->v = v; }
    return CP_OK;
}

void cp_label_set_free(cp_label_set *set) {
    for (int64_t i = 0; set->names && i < set->n; i++) cp_free(set->names[i]);
    cp_free(set->names);
    cp_strmap_free(&set->map);
    memset(set, 0, sizeof *set);
}

/* Integer labels are class ids: a set of them has max + 1 classes, and a stray large number (a
 * score, an id column taken for the label) must not allocate millions of them. */
#define CP_MAX_CLASS_IDS 65536

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static cp_status alloc_names(cp_label_set *set, int64_t n) {
    set->names = cp_calloc((size_t)n, sizeof *set->names, "label names");
    if (!set->names) return CP_ERR;
    set->n = n;
    return CP_OK;
}

cp_status cp_label_set_from_names(cp_label_set *set, const char *const *names, int64_t n, cp_problem_type problem) {
    memset(set, 0, sizeof *set);
    cp_strmap_init(&set->map);
    set->kind = CP_LABELS_NAMES;
    set->problem = problem;
    if (n <= 0 || n > INT32_MAX) return cp_error("a label set needs 1 to %d names, got %" PRId64, INT32_MAX, n);
    if (alloc_names(set, n)) goto fail;
    for (int64_t i = 0; i < n; i++) {
        if (!(set->names[i] = cp_strdup(names[i]))) goto fail;
        if (cp_strmap_get(&set->map, names[i], strlen(names[i])) >= 0) {
            cp_error("label \"%s\" appears twice in the label set", names[i]);
            goto fail;
        }
        if (cp_strmap_put(&set->map, names[i], strlen(names[i]), (int32_t)i)) goto fail;
    }
    return CP_OK;
fail:
    cp_label_set_free(set);
    return CP_ERR;
}

cp_status cp_label_set_discover(cp_label_set *set, cp_problem_type problem, const cp_raw_label *v, size_t n,
                                const int64_t *line, const char *path) {
    memset(set, 0, sizeof *set);
    cp_strmap_init(&set->map);
    set->problem = problem;
    snprintf(set->source, sizeof set->source, "%s", path);
    if (problem == CP_PROBLEM_REGRESSION) {
        set->kind = CP_LABELS_REGRESSION;
        if (alloc_names(set, 1) || !(set->names[0] = cp_strdup("LABEL_0"))) goto fail;
        return CP_OK;
    }
    if (n == 0) return cp_error("%s: no labels to build the label set from", path);
    int all_int = 1;
    for (size_t k = 0; k < n && all_int; k++) all_int = v[k].is_int;
    if (all_int) {
        int64_t max = -1;
        for (size_t k = 0; k < n; k++) {
            if (v[k].i < 0) {
                cp_error("%s:%" PRId64 ": label %" PRId64 " is negative (integer labels are class ids 0, 1, ...)",
                         path, line[k], v[k].i);
                goto fail;
            }
            if (v[k].i >= CP_MAX_CLASS_IDS) {
                cp_error("%s:%" PRId64 ": label %" PRId64 " would make %" PRId64 " classes (integer labels are class "
                         "ids 0, 1, ..., at most %d of them)", path, line[k], v[k].i, v[k].i + 1, CP_MAX_CLASS_IDS);
                goto fail;
            }
            if (v[k].i > max) max = v[k].i;
        }
        set->kind = CP_LABELS_INDICES;
        if (alloc_names(set, max + 1)) goto fail;
        for (int64_t i = 0; i <= max; i++) {
            char b[24];
            snprintf(b, sizeof b, "%" PRId64, i);
            if (!(set->names[i] = cp_strdup(b))) goto fail;
        }
        return CP_OK;
    }
    set->kind = CP_LABELS_NAMES;
    size_t m = 0;
    char **uniq = NULL;
    size_t cap = 0;
    for (size_t k = 0; k < n; k++) {
        if (cp_strmap_get(&set->map, v[k].s, strlen(v[k].s)) >= 0) continue;
        if (cp_strmap_put(&set->map, v[k].s, strlen(v[k].s), 0) ||
            cp_grow(&uniq, &cap, m + 1, sizeof *uniq, 16, "label names")) { cp_free(uniq); goto fail; }
        uniq[m++] = v[k].s;
    }
    if (m > INT32_MAX) { cp_free(uniq); cp_error("%s: too many distinct labels (%zu)", path, m); goto fail; }
    qsort(uniq, m, sizeof *uniq, cmp_str);
    cp_strmap_clear(&set->map);
    if (alloc_names(set, (int64_t)m)) { cp_free(uniq); goto fail; }
    for (size_t i = 0; i < m; i++) {
        if (!(set->names[i] = cp_strdup(uniq[i])) ||
            cp_strmap_put(&set->map, uniq[i], strlen(uniq[i]), (int32_t)i)) { cp_free(uniq); goto fail; }
    }
    cp_free(uniq);
    return CP_OK;
fail:
    cp_label_set_free(set);
    return CP_ERR;
}

int64_t cp_label_set_find(const cp_label_set *set, const cp_raw_label *r) {
    switch (set->kind) {
    case CP_LABELS_INDICES: return r->is_int && r->i >= 0 && r->i < set->n ? r->i : -1;
    case CP_LABELS_NAMES: return cp_strmap_get(&set->map, r->s, strlen(r->s));
    case CP_LABELS_REGRESSION: return r->is_num ? 0 : -1;
    }
    return -1;
}

const char *cp_label_set_describe(const cp_label_set *set, char *buf, size_t size) {
    size_t o = 0;
    buf[0] = '\0';
    if (set->kind == CP_LABELS_INDICES) {
        snprintf(buf, size, "0..%" PRId64, set->n - 1);
        return buf;
    }
    for (int64_t i = 0; i < set->n && o + 1 < size; i++) {
        if (i == 8 && set->n > 10) {
            snprintf(buf + o, size - o, ", ... (%" PRId64 " in all)", set->n);
            break;
        }
        int w = snprintf(buf + o, size - o, "%s%s", i ? ", " : "", set->names[i]);
        if (w < 0) break;
        o += (size_t)w < size - o ? (size_t)w : size - o - 1;
    }
    return buf;
}
