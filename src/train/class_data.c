/*
 * class_data.c — SEQ_CLS data (CSV, TSV, JSONL records with a text, an optional pair text and a label),
 * the truncation and special tokens shared with TOKEN_CLS (token_data.c), and dynamically padded
 * batches; see class_data.h.
 *
 * Loading is two steps. Reading: each record is tokenized at once (its texts are not kept) and its
 * label kept as a raw value (labels.h) with the record's line. Resolving: the training file discovers
 * the label set from all its values (sorted names need them all), an eval file looks each up in the
 * set it is given; then every example gets its class id or float values. Memory is the token ids plus
 * one short string per label until resolution.
 */
#include "train/class_data.h"
#include "core/alloc.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "train/records.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- truncation and special tokens -------------------------------------------------------------- */

cp_status cp_class_special_count(const cp_tokenizer *tok, int pair, int64_t *n) {
    cp_encoding e = {0};
    static const int32_t none[1] = {0};
    cp_status st = cp_tokenizer_post_process(tok, none, 0, pair ? none : NULL, 0, &e);
    *n = (int64_t)e.n;
    cp_encoding_free(&e);
    return st;
}

cp_status cp_class_encode_truncated(const cp_tokenizer *tok, const int32_t *a, size_t na, const int32_t *b,
                                    size_t nb, int64_t max_len, int64_t n_added, cp_encoding *out, int *truncated) {
    size_t budget = (size_t)(max_len - n_added); /* tokenizers: max_length - added tokens */
    size_t n1 = na, n2 = b ? nb : 0;
    *truncated = 0;
    if (n1 + n2 > budget) {
        *truncated = 1;
        if (!b) {
            n1 = budget;
        } else { /* utils/truncation.rs, TruncationStrategy::LongestFirst */
            size_t s1 = n1, s2 = n2;
            int swap = s1 > s2;
            if (swap) { size_t t = s1; s1 = s2; s2 = t; }
            s2 = s1 > budget ? s1 : (s1 > budget - s1 ? s1 : budget - s1);
            if (s1 + s2 > budget) {
                s1 = budget / 2;
                s2 = s1 + budget % 2;
            }
            if (swap) { size_t t = s1; s1 = s2; s2 = t; }
            n1 = s1 < na ? s1 : na;
            n2 = s2 < nb ? s2 : nb;
        }
    }
    return cp_tokenizer_post_process(tok, a, n1, b, n2, out);
}

cp_status cp_class_push(cp_class_dataset *ds, size_t *cap, const cp_encoding *enc, const int64_t *labels,
                        int64_t n_labels, const float *values, int64_t n_values, int64_t line) {
    if (cp_grow(&ds->examples, cap, (size_t)ds->n + 1, sizeof *ds->examples, 64, "the examples")) return CP_ERR;
    cp_class_example ex = {.len = (int64_t)enc->n, .line = line};
    ex.ids = cp_malloc((enc->n ? enc->n : 1) * sizeof *ex.ids, "token ids");
    ex.type_ids = cp_malloc(enc->n ? enc->n : 1, "token type ids");
    if (n_labels) ex.labels = cp_malloc((size_t)n_labels * sizeof *ex.labels, "labels");
    if (n_values) ex.values = cp_malloc((size_t)n_values * sizeof *ex.values, "label values");
    if (!ex.ids || !ex.type_ids || (n_labels && !ex.labels) || (n_values && !ex.values)) {
        cp_free(ex.ids); cp_free(ex.type_ids); cp_free(ex.labels); cp_free(ex.values);
        return CP_ERR;
    }
    if (enc->n) memcpy(ex.ids, enc->ids, enc->n * sizeof *ex.ids);
    if (enc->n) memcpy(ex.type_ids, enc->type_ids, enc->n);
    if (n_labels) memcpy(ex.labels, labels, (size_t)n_labels * sizeof *ex.labels);
    if (n_values) memcpy(ex.values, values, (size_t)n_values * sizeof *ex.values);
    ds->examples[ds->n++] = ex;
    ds->n_tokens += ex.len;
    return CP_OK;
}

void cp_class_dataset_free(cp_class_dataset *ds) {
    if (!ds) return;
    for (int64_t i = 0; i < ds->n; i++) {
        cp_free(ds->examples[i].ids);
        cp_free(ds->examples[i].type_ids);
        cp_free(ds->examples[i].labels);
        cp_free(ds->examples[i].values);
    }
    cp_free(ds->examples);
    memset(ds, 0, sizeof *ds);
}

/* ---- reading SEQ_CLS records -------------------------------------------------------------------- */

typedef struct {
    cp_class_dataset *ds;
    size_t cap;
    const cp_tokenizer *tok;
    const cp_class_options *opt;
    const char *path;
    const char *text_field, *pair_field, *label_field;
    int64_t n_added;
    cp_encoding ea, eb, fin;
    /* raw labels: values v[0..nv) with their lines; record i has first[i], count[i], is_list[i] */
    cp_raw_label *v;
    int64_t *vline;
    size_t nv, vcap, vline_cap;
    size_t *first, *count;
    uint8_t *is_list;
    size_t rcap, rcap2, rcap3;
} seq_loader;

static void seq_loader_free(seq_loader *L) {
    for (size_t k = 0; k < L->nv; k++) cp_free(L->v[k].s);
    cp_free(L->v); cp_free(L->vline); cp_free(L->first); cp_free(L->count); cp_free(L->is_list);
    cp_encoding_free(&L->ea); cp_encoding_free(&L->eb); cp_encoding_free(&L->fin);
}

static cp_status push_raw(seq_loader *L, const cp_raw_label *r, int64_t line) {
    if (cp_grow(&L->v, &L->vcap, L->nv + 1, sizeof *L->v, 64, "labels") ||
        cp_grow(&L->vline, &L->vline_cap, L->nv + 1, sizeof *L->vline, 64, "labels")) {
        cp_free(r->s);
        return CP_ERR;
    }
    L->v[L->nv] = *r;
    L->vline[L->nv++] = line;
    return CP_OK;
}

/* A JSON label value (string or number) as a raw label; anything else is an error naming where. */
static cp_status raw_from_json(seq_loader *L, const cJSON *j, int64_t line, cp_raw_label *r) {
    memset(r, 0, sizeof *r);
    if (cJSON_IsString(j) && j->valuestring) {
        r->s = cp_strdup(j->valuestring);
        return r->s ? CP_OK : CP_ERR;
    }
    if (cJSON_IsNumber(j)) {
        char b[40];
        double d = j->valuedouble;
        r->is_num = isfinite(d);
        r->v = d;
        if (d == floor(d) && fabs(d) < 9.2e18) {
            r->is_int = 1;
            r->i = (int64_t)d;
            snprintf(b, sizeof b, "%" PRId64, r->i);
        } else {
            snprintf(b, sizeof b, "%.17g", d);
        }
        r->s = cp_strdup(b);
        return r->s ? CP_OK : CP_ERR;
    }
    return cp_error("%s:%" PRId64 ": field \"%s\" is %s, expected a label (a string or a number%s)", L->path, line,
                    L->label_field, cp_json_type_name(j), L->opt->task == CP_CLASS_SEQ ? ", or a list of them" : "");
}

/* One record: tokenize (text, pair) and keep its raw labels. */
static cp_status seq_record(seq_loader *L, const char *a, const char *b, int64_t line) {
    if (cp_tokenizer_encode(L->tok, a, strlen(a), 0, &L->ea) != CP_OK)
        return cp_error("%s:%" PRId64 ": cannot tokenize field \"%s\": %s", L->path, line, L->text_field, cp_last_error());
    if (b && cp_tokenizer_encode(L->tok, b, strlen(b), 0, &L->eb) != CP_OK)
        return cp_error("%s:%" PRId64 ": cannot tokenize field \"%s\": %s", L->path, line, L->pair_field, cp_last_error());
    int trunc;
    if (cp_class_encode_truncated(L->tok, L->ea.ids, L->ea.n, b ? L->eb.ids : NULL, b ? L->eb.n : 0,
                                  L->opt->max_seq_length, L->n_added, &L->fin, &trunc) != CP_OK)
        return CP_ERR;
    L->ds->n_truncated += trunc;
    return cp_class_push(L->ds, &L->cap, &L->fin, NULL, 0, NULL, 0, line);
}

static cp_status begin_labels(seq_loader *L, int is_list) {
    size_t i = (size_t)L->ds->n - 1;
    if (cp_grow(&L->first, &L->rcap, i + 1, sizeof *L->first, 64, "labels") ||
        cp_grow(&L->count, &L->rcap2, i + 1, sizeof *L->count, 64, "labels") ||
        cp_grow(&L->is_list, &L->rcap3, i + 1, 1, 64, "labels"))
        return CP_ERR;
    L->first[i] = L->nv;
    L->count[i] = 0;
    L->is_list[i] = (uint8_t)is_list;
    return CP_OK;
}

static cp_status csv_load(seq_loader *L, const char *text, size_t len, char delim) {
    cp_csv_table tab;
    cp_status st = CP_ERR;
    int got;
    if (cp_csv_table_open(&tab, L->path, text, len, delim)) goto out;
    char **header = tab.header;
    size_t nh = tab.nh;
    long ia = -1, ib = -1, il = -1;
    const char *want_text = L->text_field;
    for (size_t i = 0; i < nh; i++) {
        if (!want_text && (!strcmp(header[i], "sentence") || !strcmp(header[i], "text")) && ia < 0) ia = (long)i;
        if (want_text && !strcmp(header[i], want_text)) ia = (long)i;
        if (L->pair_field && !strcmp(header[i], L->pair_field)) ib = (long)i;
        if (!strcmp(header[i], L->label_field)) il = (long)i;
    }
    if (ia >= 0) L->text_field = header[ia];
    const char *missing = NULL;
    if (ia < 0) missing = want_text ? want_text : "sentence\" or \"text";
    else if (L->pair_field && ib < 0) missing = L->pair_field;
    else if (il < 0) missing = L->label_field;
    if (missing) {
        cp_records_no_column(L->path, tab.r.rec_line, header, nh, missing);
        goto out;
    }
    while ((got = cp_csv_table_next(&tab)) > 0) {
        if (seq_record(L, cp_csv_field(&tab.r, (size_t)ia), ib >= 0 ? cp_csv_field(&tab.r, (size_t)ib) : NULL, tab.r.rec_line) ||
            begin_labels(L, 0))
            goto out;
        cp_raw_label raw;
        if (cp_raw_label_from_text(&raw, cp_csv_field(&tab.r, (size_t)il), tab.r.flen[il]) || push_raw(L, &raw, tab.r.rec_line))
            goto out;
        L->count[L->ds->n - 1] = 1;
    }
    if (got < 0) goto out;
    st = CP_OK;
out:
    cp_csv_table_close(&tab);
    return st;
}

/* A string field of a JSON record (required). */
static cp_status json_text(seq_loader *L, const cJSON *rec, const char *key, int64_t line, const char *what,
                           const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, key);
    if (!v || cJSON_IsNull(v)) return cp_error("%s:%" PRId64 ": missing field \"%s\"%s", L->path, line, key, what);
    if (!cJSON_IsString(v) || !v->valuestring)
        return cp_error("%s:%" PRId64 ": field \"%s\" is %s, expected a string", L->path, line, key, cp_json_type_name(v));
    *out = v->valuestring;
    return CP_OK;
}

static cp_status jsonl_record(seq_loader *L, cJSON *rec, int64_t line) {
    if (cp_json_keep_last(rec) != CP_OK) return CP_ERR;
    if (!cJSON_IsObject(rec))
        return cp_error("%s:%" PRId64 ": record is %s, expected a JSON object", L->path, line, cp_json_type_name(rec));
    if (!L->text_field) {
        L->text_field = cJSON_GetObjectItemCaseSensitive(rec, "sentence") ? "sentence" : "text";
    }
    const char *a, *b = NULL;
    if (json_text(L, rec, L->text_field, line, "", &a)) return CP_ERR;
    if (L->pair_field && json_text(L, rec, L->pair_field, line, " (the pair field)", &b)) return CP_ERR;
    const cJSON *lab = cJSON_GetObjectItemCaseSensitive(rec, L->label_field);
    if (!lab || cJSON_IsNull(lab)) return cp_error("%s:%" PRId64 ": missing field \"%s\" (the label)", L->path, line, L->label_field);
    if (seq_record(L, a, b, line) || begin_labels(L, cJSON_IsArray(lab))) return CP_ERR;
    const cJSON *it = cJSON_IsArray(lab) ? lab->child : lab;
    size_t k = 0;
    for (; it; it = cJSON_IsArray(lab) ? it->next : NULL, k++) {
        cp_raw_label raw;
        if (raw_from_json(L, it, line, &raw) || push_raw(L, &raw, line)) return CP_ERR;
    }
    L->count[L->ds->n - 1] = k;
    return CP_OK;
}

static cp_status jsonl_record_cb(cJSON *rec, int64_t line, void *ctx) { return jsonl_record(ctx, rec, line); }

/* ---- resolving labels ----------------------------------------------------------------------------- */

/* The problem type the training file's labels give (AUTO), or a check of the configured one. */
static cp_status resolve_problem(seq_loader *L, cp_problem_type want, cp_problem_type *out) {
    cp_class_dataset *ds = L->ds;
    int any_list = 0, all_num = 1, all_int = 1;
    for (int64_t i = 0; i < ds->n; i++) any_list |= L->is_list[i];
    for (size_t k = 0; k < L->nv; k++) { all_num &= L->v[k].is_num; all_int &= L->v[k].is_int; }
    cp_problem_type p = want;
    if (p == CP_PROBLEM_AUTO)
        p = any_list ? CP_PROBLEM_MULTI_LABEL : (all_num && !all_int) ? CP_PROBLEM_REGRESSION : CP_PROBLEM_SINGLE_LABEL;
    for (int64_t i = 0; i < ds->n; i++) {
        if (p == CP_PROBLEM_SINGLE_LABEL && L->is_list[i])
            return cp_error("%s:%" PRId64 ": the label is a list, but the problem is single-label classification", L->path,
                            ds->examples[i].line);
        if (p == CP_PROBLEM_REGRESSION && L->is_list[i])
            return cp_error("%s:%" PRId64 ": the label is a list, but the problem is regression", L->path,
                            ds->examples[i].line);
        if (p == CP_PROBLEM_MULTI_LABEL && want == CP_PROBLEM_AUTO && !L->is_list[i])
            return cp_error("%s:%" PRId64 ": the label is not a list, but other records' are (multi-label data needs a "
                            "list of labels in every record)", L->path, ds->examples[i].line);
    }
    if (p == CP_PROBLEM_REGRESSION)
        for (size_t k = 0; k < L->nv; k++)
            if (!L->v[k].is_num)
                return cp_error("%s:%" PRId64 ": label \"%s\" is not a number (regression)", L->path, L->vline[k], L->v[k].s);
    *out = p;
    return CP_OK;
}

static cp_status resolve_labels(seq_loader *L, cp_label_set *set, int discover) {
    cp_class_dataset *ds = L->ds;
    cp_problem_type p;
    if (resolve_problem(L, discover ? L->opt->problem : set->problem, &p)) return CP_ERR;
    if (discover && cp_label_set_discover(set, p, L->v, L->nv, L->vline, L->path)) return CP_ERR;
    ds->problem = p;
    ds->num_labels = set->n;
    for (int64_t i = 0; i < ds->n; i++) {
        cp_class_example *ex = &ds->examples[i];
        int multi = p == CP_PROBLEM_MULTI_LABEL;
        if (p == CP_PROBLEM_SINGLE_LABEL) ex->labels = cp_malloc(sizeof *ex->labels, "labels");
        else ex->values = cp_calloc(multi ? (size_t)set->n : 1, sizeof *ex->values, "label values");
        if (!ex->labels && !ex->values) return CP_ERR;
        for (size_t k = L->first[i]; k < L->first[i] + L->count[i]; k++) {
            if (p == CP_PROBLEM_REGRESSION) { ex->values[0] = (float)L->v[k].v; continue; }
            int64_t id = cp_label_set_find(set, &L->v[k]);
            if (id < 0) {
                char names[256];
                return cp_error("%s:%" PRId64 ": label \"%s\" is not in the label set (%s%s%s)", L->path, L->vline[k],
                                L->v[k].s, cp_label_set_describe(set, names, sizeof names),
                                set->source[0] ? ", from " : "", set->source);
            }
            if (multi) ex->values[id] = 1.0f;
            else ex->labels[0] = id;
        }
    }
    return CP_OK;
}

/* ---- files ---------------------------------------------------------------------------------------- */

/* The format from the name (compression suffixes ignored). */
static cp_class_file file_format(const char *path, cp_class_task task) {
    switch (cp_records_format_of(path)) {
    case CP_RECORDS_CSV: return CP_CLASS_FILE_CSV;
    case CP_RECORDS_TSV: return CP_CLASS_FILE_TSV;
    case CP_RECORDS_JSONL: return CP_CLASS_FILE_JSONL;
    default: return task == CP_CLASS_TOKEN ? CP_CLASS_FILE_CONLL : CP_CLASS_FILE_AUTO;
    }
}

static cp_status check_options(const cp_tokenizer *tok, const cp_class_options *o) {
    if (!o || !o->path) return cp_error("no data file given");
    if (!tok) return cp_error("%s: no tokenizer given to read the data with", o->path);
    if (o->task != CP_CLASS_SEQ && o->task != CP_CLASS_TOKEN) return cp_error("%s: unknown task %d", o->path, (int)o->task);
    if (o->max_seq_length < 2)
        return cp_error("%s: max_seq_length must be at least 2, got %" PRId64, o->path, o->max_seq_length);
    return CP_OK;
}

cp_status cp_class_dataset_load_mem(cp_class_dataset *ds, cp_label_set *labels, const cp_tokenizer *tok,
                                    const cp_class_options *opt, const char *data, size_t len) {
    memset(ds, 0, sizeof *ds);
    if (check_options(tok, opt)) return CP_ERR;
    int discover = labels->n == 0;
    cp_class_file fmt = opt->format != CP_CLASS_FILE_AUTO ? opt->format : file_format(opt->path, opt->task);
    if (fmt == CP_CLASS_FILE_AUTO)
        return cp_error("%s: cannot tell the format from the name (SEQ_CLS reads .csv, .tsv and .jsonl files)", opt->path);
    if (opt->task == CP_CLASS_SEQ && fmt == CP_CLASS_FILE_CONLL)
        return cp_error("%s: CoNLL files hold token labels (TOKEN_CLS), not sequence labels", opt->path);
    if (opt->task == CP_CLASS_TOKEN && (fmt == CP_CLASS_FILE_CSV || fmt == CP_CLASS_FILE_TSV))
        return cp_error("%s: TOKEN_CLS reads CoNLL files and word-labelled JSONL, not CSV / TSV", opt->path);
    cp_data_options dopt = {.path = opt->path, .max_decompressed = opt->max_decompressed};
    char *owned = NULL;
    const char *text;
    if (cp_data_decode_text(&dopt, data ? data : "", data ? len : 0, &owned, &text, &len)) {
        cp_free(owned);
        return CP_ERR;
    }
    ds->task = opt->task;
    cp_status st;
    if (opt->task == CP_CLASS_TOKEN) {
        st = cp_token_dataset_parse(ds, labels, tok, opt, fmt, text, len);
    } else {
        seq_loader L = {.ds = ds, .tok = tok, .opt = opt, .path = opt->path, .text_field = opt->text_field,
                        .pair_field = opt->text_pair_field, .label_field = opt->label_field ? opt->label_field : "label"};
        if (L.text_field && !L.text_field[0]) L.text_field = NULL;
        st = cp_class_special_count(tok, opt->text_pair_field != NULL, &L.n_added);
        if (!st && L.n_added >= opt->max_seq_length)
            st = cp_error("%s: max_seq_length %" PRId64 " leaves no room for text: the tokenizer adds %" PRId64
                          " special tokens", opt->path, opt->max_seq_length, L.n_added);
        if (!st) st = fmt == CP_CLASS_FILE_JSONL ? cp_jsonl_each(L.path, text, len, jsonl_record_cb, &L)
                                                 : csv_load(&L, text, len, fmt == CP_CLASS_FILE_TSV ? '\t' : ',');
        if (!st && ds->n == 0) st = cp_error("%s: no records", opt->path);
        if (!st) st = resolve_labels(&L, labels, discover);
        seq_loader_free(&L);
    }
    cp_free(owned);
    if (st) {
        cp_class_dataset_free(ds);
        if (discover) cp_label_set_free(labels);
    }
    return st;
}

cp_status cp_class_dataset_load(cp_class_dataset *ds, cp_label_set *labels, const cp_tokenizer *tok,
                                const cp_class_options *opt) {
    memset(ds, 0, sizeof *ds);
    if (check_options(tok, opt)) return CP_ERR;
    char *text = NULL;
    size_t len = 0;
    if (cp_read_file(opt->path, &text, &len) != CP_OK) return cp_error_context("data file");
    cp_status st = cp_class_dataset_load_mem(ds, labels, tok, opt, text, len);
    cp_free(text);
    return st;
}

/* ---- batches -------------------------------------------------------------------------------------- */

void cp_class_batch_free(cp_class_batch *b) {
    cp_free(b->input_ids); cp_free(b->attention_mask); cp_free(b->token_type_ids);
    cp_free(b->labels); cp_free(b->label_values);
    memset(b, 0, sizeof *b);
}

cp_status cp_class_batch_make(const cp_class_dataset *ds, const int64_t *order, int64_t start, int64_t B,
                              int64_t pad_id, cp_class_batch *out) {
    if (start < 0 || start >= ds->n || B < 1) return cp_error("batch start %" PRId64 " is outside the %" PRId64
                                                              " examples (or batch size %" PRId64 " < 1)", start, ds->n, B);
    if (pad_id < 0) return cp_error("no pad token id to pad the batch with");
    if (B > ds->n - start) B = ds->n - start;
    int64_t T = 1;
    for (int64_t b = 0; b < B; b++) {
        int64_t i = order ? order[start + b] : start + b;
        if (i < 0 || i >= ds->n) return cp_error("example index %" PRId64 " is outside the %" PRId64 " examples", i, ds->n);
        if (ds->examples[i].len > T) T = ds->examples[i].len;
    }
    int token = ds->task == CP_CLASS_TOKEN;
    int single = !token && ds->problem == CP_PROBLEM_SINGLE_LABEL;
    int64_t K = ds->problem == CP_PROBLEM_MULTI_LABEL ? ds->num_labels : 1;
    size_t bt = (size_t)(B * T), nl = token ? bt : single ? (size_t)B : 0, nv = (!token && !single) ? (size_t)(B * K) : 0;
    size_t cap = out->cap_bt;
    if (bt > cap) {
        if (cp_resize(&out->input_ids, bt, sizeof(int64_t), "a batch") ||
            cp_resize(&out->attention_mask, bt, sizeof(int64_t), "a batch") ||
            cp_resize(&out->token_type_ids, bt, sizeof(int64_t), "a batch"))
            return CP_ERR;
        out->cap_bt = bt;
    }
    if (nl > out->cap_labels) {
        if (cp_resize(&out->labels, nl, sizeof(int64_t), "a batch")) return CP_ERR;
        out->cap_labels = nl;
    }
    if (nv > out->cap_values) {
        if (cp_resize(&out->label_values, nv, sizeof(float), "a batch")) return CP_ERR;
        out->cap_values = nv;
    }
    out->B = B;
    out->T = T;
    out->K = ds->num_labels;
    for (int64_t b = 0; b < B; b++) {
        const cp_class_example *ex = &ds->examples[order ? order[start + b] : start + b];
        for (int64_t t = 0; t < T; t++) {
            int real = t < ex->len;
            out->input_ids[b * T + t] = real ? ex->ids[t] : pad_id;
            out->attention_mask[b * T + t] = real;
            out->token_type_ids[b * T + t] = real ? ex->type_ids[t] : 0;
            if (token) out->labels[b * T + t] = real ? ex->labels[t] : -100;
        }
        if (single) out->labels[b] = ex->labels[0];
        if (nv) memcpy(out->label_values + b * K, ex->values, (size_t)K * sizeof(float));
    }
    return CP_OK;
}
