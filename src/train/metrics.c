/*
 * metrics.c — accuracy, sklearn's macro-F1 and seqeval's entity-level scores; see metrics.h.
 *
 * seqeval.metrics.sequence_labeling.get_entities, default (prefix) mode, runs here as a state machine
 * fed one tag at a time, so sentences can be added as evaluation produces them: the state is the
 * previous tag, its type and where the open chunk began, for the true and the predicted tags each.
 * Adding a sentence feeds its tags and then one "O" (seqeval lays the sentences end to end with an
 * "O" after each); the final "O" seqeval appends after the last one can close nothing more (the state
 * after an "O" always has prev_tag 'O'), so no finishing step is needed.
 */
#include "train/metrics.h"
#include "core/alloc.h"
#include "core/utf8.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

double cp_metric_accuracy(const int64_t *y_true, const int64_t *y_pred, int64_t n) {
    int64_t ok = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        if (y_true[i] == -100) continue;
        m++;
        ok += y_true[i] == y_pred[i];
    }
    return m ? (double)ok / (double)m : 0.0;
}

cp_status cp_metric_macro_f1(const int64_t *y_true, const int64_t *y_pred, int64_t n, double *f1) {
    *f1 = 0;
    int64_t max = -1;
    for (int64_t i = 0; i < n; i++) {
        if (y_true[i] == -100) continue;
        if (y_true[i] < 0 || y_pred[i] < 0)
            return cp_error("macro-F1: class id %" PRId64 " at position %" PRId64 " is negative",
                            y_true[i] < 0 ? y_true[i] : y_pred[i], i);
        if (y_true[i] > max) max = y_true[i];
        if (y_pred[i] > max) max = y_pred[i];
    }
    if (max < 0) return CP_OK;
    if (max >= (int64_t)1 << 24) return cp_error("macro-F1: class id %" PRId64 " is too large", max);
    int64_t *c = cp_calloc((size_t)(max + 1) * 3, sizeof *c, "per-class counts");
    if (!c) return CP_ERR;
    int64_t *tp = c, *fp = c + max + 1, *fn = c + 2 * (max + 1);
    for (int64_t i = 0; i < n; i++) {
        if (y_true[i] == -100) continue;
        if (y_true[i] == y_pred[i]) tp[y_true[i]]++;
        else { fp[y_pred[i]]++; fn[y_true[i]]++; }
    }
    double sum = 0;
    int64_t classes = 0;
    for (int64_t k = 0; k <= max; k++) {
        if (tp[k] + fp[k] + fn[k] == 0) continue; /* not in y_true nor y_pred */
        classes++;
        /* sklearn >= 1.3: F1 = 2 tp / (true + predicted), 0 when tp is 0 */
        sum += tp[k] ? 2.0 * (double)tp[k] / (double)(2 * tp[k] + fp[k] + fn[k]) : 0.0;
    }
    cp_free(c);
    *f1 = sum / (double)classes;
    return CP_OK;
}

/* ---- seqeval -------------------------------------------------------------------------------------- */

void cp_seqeval_init(cp_seqeval *s) {
    memset(s, 0, sizeof *s);
    for (int k = 0; k < 2; k++) { s->prev_tag[k] = 'O'; s->prev_type[k] = -1; } /* prev_type '' */
}

void cp_seqeval_free(cp_seqeval *s) {
    for (size_t i = 0; i < s->n_types; i++) cp_free(s->types[i]);
    cp_free(s->types);
    cp_free(s->ent[0]);
    cp_free(s->ent[1]);
    memset(s, 0, sizeof *s);
}

/* The index of type name t[0..n) ("_" for an empty one), added when new; -2 on error. */
static int32_t intern_type(cp_seqeval *s, const char *t, size_t n) {
    if (n == 0) { t = "_"; n = 1; }
    for (size_t i = 0; i < s->n_types; i++)
        if (strlen(s->types[i]) == n && memcmp(s->types[i], t, n) == 0) return (int32_t)i;
    if (cp_grow(&s->types, &s->cap_types, s->n_types + 1, sizeof *s->types, 8, "entity types")) return -2;
    char *c = cp_malloc(n + 1, "an entity type");
    if (!c) return -2;
    memcpy(c, t, n);
    c[n] = '\0';
    s->types[s->n_types] = c;
    return (int32_t)s->n_types++;
}

static int end_of_chunk(char prev_tag, char tag, int32_t prev_type, int32_t type) {
    if (prev_tag == 'E' || prev_tag == 'S') return 1;
    if ((prev_tag == 'B' || prev_tag == 'I') && (tag == 'B' || tag == 'S' || tag == 'O')) return 1;
    return prev_tag != 'O' && prev_tag != '.' && prev_type != type;
}

static int start_of_chunk(char prev_tag, char tag, int32_t prev_type, int32_t type) {
    if (tag == 'B' || tag == 'S') return 1;
    if ((prev_tag == 'E' || prev_tag == 'S' || prev_tag == 'O') && (tag == 'E' || tag == 'I')) return 1;
    return tag != 'O' && tag != '.' && prev_type != type;
}

/* One tag of sequence k (0 true, 1 predicted) at position s->pos. A tag is its first character; its
 * type is what follows the first '-' in the rest, or the whole rest when it has none. A first
 * character outside ASCII is none of seqeval's letters (0 stands for it). */
static cp_status feed(cp_seqeval *s, int k, const char *chunk) {
    size_t n = strlen(chunk);
    size_t l = n ? cp_utf8_len((unsigned char)chunk[0]) : 0;
    if (l > n) l = n;
    char tag = n && (unsigned char)chunk[0] < 0x80 ? chunk[0] : 0;
    const char *rest = chunk + l;
    const char *dash = memchr(rest, '-', n - l);
    const char *t = dash ? dash + 1 : rest;
    int32_t type = intern_type(s, t, (size_t)(chunk + n - t));
    if (type < -1) return CP_ERR;
    if (end_of_chunk(s->prev_tag[k], tag, s->prev_type[k], type)) {
        if (cp_grow(&s->ent[k], &s->cap_ent[k], s->n_ent[k] + 1, sizeof *s->ent[k], 64, "entities")) return CP_ERR;
        s->ent[k][s->n_ent[k]++] = (cp_entity){.start = s->begin[k], .end = s->pos - 1, .type = s->prev_type[k]};
    }
    if (start_of_chunk(s->prev_tag[k], tag, s->prev_type[k], type)) s->begin[k] = s->pos;
    s->prev_tag[k] = tag;
    s->prev_type[k] = type;
    return CP_OK;
}

cp_status cp_seqeval_add_tags(cp_seqeval *s, const char *const *y_true, const char *const *y_pred, int64_t n) {
    for (int64_t i = 0; i <= n; i++, s->pos++)
        for (int k = 0; k < 2; k++)
            if (feed(s, k, i < n ? (k ? y_pred[i] : y_true[i]) : "O")) return CP_ERR;
    return CP_OK;
}

cp_status cp_seqeval_add_ids(cp_seqeval *s, const char *const *names, int64_t n_names, const int64_t *y_true,
                             const int64_t *y_pred, int64_t n) {
    for (int64_t i = 0; i <= n; i++) {
        if (i < n && y_true[i] == -100) continue;
        for (int k = 0; k < 2; k++) {
            const char *tag = "O";
            if (i < n) {
                int64_t id = k ? y_pred[i] : y_true[i];
                if (id < 0 || id >= n_names)
                    return cp_error("seqeval: %s label %" PRId64 " at position %" PRId64 " is not a class id (0..%" PRId64 ")",
                                    k ? "predicted" : "true", id, i, n_names - 1);
                tag = names[id];
            }
            if (feed(s, k, tag)) return CP_ERR;
        }
        s->pos++;
    }
    return CP_OK;
}

static int cmp_entity(const void *pa, const void *pb) {
    const cp_entity *a = pa, *b = pb;
    if (a->type != b->type) return a->type < b->type ? -1 : 1;
    if (a->start != b->start) return a->start < b->start ? -1 : 1;
    if (a->end != b->end) return a->end < b->end ? -1 : 1;
    return 0;
}

/* Counts over entities of `type` (-2: all types). Entities are matched as sets of (type, start, end). */
static cp_prf counts(const cp_seqeval *s, int32_t type) {
    cp_prf r = {0};
    const cp_entity *a = s->ent[0], *b = s->ent[1];
    size_t na = s->n_ent[0], nb = s->n_ent[1];
    for (size_t i = 0; i < na; i++) r.n_true += type == -2 || a[i].type == type;
    for (size_t j = 0; j < nb; j++) r.n_pred += type == -2 || b[j].type == type;
    /* entities come out in position order per sequence; a sorted copy of each gives the intersection */
    cp_entity *sa = cp_malloc((na + nb + 1) * sizeof *sa, "entities");
    if (sa) {
        cp_entity *sb = sa + na;
        if (na) memcpy(sa, a, na * sizeof *sa);
        if (nb) memcpy(sb, b, nb * sizeof *sb);
        qsort(sa, na, sizeof *sa, cmp_entity);
        qsort(sb, nb, sizeof *sb, cmp_entity);
        for (size_t i = 0, j = 0; i < na && j < nb;) {
            int c = cmp_entity(&sa[i], &sb[j]);
            if (c == 0) {
                r.tp += type == -2 || sa[i].type == type;
                i++, j++;
            } else if (c < 0) {
                i++;
            } else {
                j++;
            }
        }
        cp_free(sa);
    }
    r.precision = r.n_pred ? (double)r.tp / (double)r.n_pred : 0.0;
    r.recall = r.n_true ? (double)r.tp / (double)r.n_true : 0.0;
    double d = r.precision + r.recall;
    r.f1 = d > 0 ? 2 * r.precision * r.recall / d : 0.0;
    return r;
}

cp_prf cp_seqeval_micro(const cp_seqeval *s) { return counts(s, -2); }
cp_prf cp_seqeval_type(const cp_seqeval *s, size_t type) { return counts(s, (int32_t)type); }
