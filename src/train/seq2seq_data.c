/*
 * seq2seq_data.c — SEQ_2_SEQ_LM records (source, target) from CSV / TSV / JSONL, their truncation and
 * special tokens, dynamically padded encoder-decoder batches and shift_tokens_right; see seq2seq_data.h.
 *
 * Each record is tokenized as it is read (its texts are kept only with keep_text). The truncation and the special
 * tokens are the classification reader's (cp_class_encode_truncated: right truncation to the budget
 * the post-processor leaves, then the post-processor), the JSONL walk and the header check are
 * records.h's, the CSV records csv_reader.h's.
 */
#include "train/seq2seq_data.h"
#include "core/alloc.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "tokenizer/tokenizer.h"
#include "train/class_data.h"
#include "train/data.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    cp_s2s_dataset *ds;
    size_t cap;
    const cp_tokenizer *tok;
    const cp_s2s_options *opt;
    const char *path;
    const char *source_field, *target_field;
    int64_t n_added;  /* special tokens one text gets */
    int32_t eos;      /* >= 0: appended by hand (the post-processor adds nothing) */
    char *buf;        /* source prefix + source text */
    size_t buf_cap;
    cp_encoding raw, fin;
} s2s_loader;

static void loader_free(s2s_loader *L) {
    cp_free(L->buf);
    cp_encoding_free(&L->raw);
    cp_encoding_free(&L->fin);
}

/* Tokenizes text[0..len) (field `field` of the record at `line`), truncates it to max_len with its
 * special tokens and gives back a new id array. */
static cp_status encode_text(s2s_loader *L, const char *text, size_t len, int64_t max_len, const char *field,
                             const char *what, int64_t line, int32_t **ids, int64_t *n, int64_t *n_truncated) {
    if (cp_tokenizer_encode(L->tok, text, len, 0, &L->raw) != CP_OK)
        return cp_error("%s:%" PRId64 ": cannot tokenize field \"%s\" (the %s): %s", L->path, line, field, what,
                        cp_last_error());
    if (L->raw.n == 0)
        return cp_error("%s:%" PRId64 ": field \"%s\" (the %s) has no tokens (only whitespace, or characters the "
                        "tokenizer drops)", L->path, line, field, what);
    int truncated = (int64_t)L->raw.n + L->n_added > max_len;
    if (truncated && L->opt->strict)
        return cp_error("%s:%" PRId64 ": field \"%s\" (the %s) is %zu tokens with its %" PRId64 " special token%s, over "
                        "max_%s_length %" PRId64 " (strict: no truncation)", L->path, line, field, what,
                        L->raw.n + (size_t)L->n_added, L->n_added, L->n_added == 1 ? "" : "s", what, max_len);
    const int32_t *src;
    size_t m;
    if (L->eos < 0) {
        int cut;
        if (cp_class_encode_truncated(L->tok, L->raw.ids, L->raw.n, NULL, 0, max_len, L->n_added, &L->fin, &cut))
            return CP_ERR;
        src = L->fin.ids;
        m = L->fin.n;
    } else { /* no post-processor template: keep max_len - 1 tokens and the eos */
        m = truncated ? (size_t)(max_len - 1) : L->raw.n;
        src = L->raw.ids;
    }
    size_t total = m + (L->eos >= 0);
    *ids = cp_malloc(total * sizeof **ids, "token ids");
    if (!*ids) return CP_ERR;
    memcpy(*ids, src, m * sizeof **ids);
    if (L->eos >= 0) (*ids)[m] = L->eos;
    *n = (int64_t)total;
    *n_truncated += truncated;
    return CP_OK;
}

/* One record: checks, prefixes, tokenizes and appends it. */
static cp_status add_record(s2s_loader *L, const char *source, const char *target, int64_t line) {
    if (!source[0])
        return cp_error("%s:%" PRId64 ": field \"%s\" (the source) is empty", L->path, line, L->source_field);
    if (!target[0])
        return cp_error("%s:%" PRId64 ": field \"%s\" (the target) is empty", L->path, line, L->target_field);
    const char *pre = L->opt->source_prefix ? L->opt->source_prefix : "";
    size_t np = strlen(pre), ns = strlen(source);
    if (cp_grow(&L->buf, &L->buf_cap, np + ns + 1, 1, 256, "a source text")) return CP_ERR;
    memcpy(L->buf, pre, np);
    memcpy(L->buf + np, source, ns + 1);
    cp_s2s_dataset *ds = L->ds;
    if (cp_grow(&ds->examples, &L->cap, (size_t)ds->n + 1, sizeof *ds->examples, 64, "the examples")) return CP_ERR;
    cp_s2s_example ex = {.line = line};
    if (encode_text(L, L->buf, np + ns, L->opt->max_source_length, L->source_field, "source", line, &ex.src, &ex.n_src,
                    &ds->n_truncated_source))
        return CP_ERR;
    if (encode_text(L, target, strlen(target), L->opt->max_target_length, L->target_field, "target", line, &ex.tgt,
                    &ex.n_tgt, &ds->n_truncated_target)) {
        cp_free(ex.src);
        return CP_ERR;
    }
    if (L->opt->keep_text && (!(ex.source_text = cp_strdup(source)) || !(ex.target_text = cp_strdup(target)))) {
        cp_free(ex.src);
        cp_free(ex.tgt);
        cp_free(ex.source_text);
        return CP_ERR;
    }
    ds->examples[ds->n++] = ex;
    ds->n_source_tokens += ex.n_src;
    ds->n_target_tokens += ex.n_tgt;
    return CP_OK;
}

/* ---- JSONL ---------------------------------------------------------------------------------------- */

static cp_status json_field(s2s_loader *L, const cJSON *rec, const char *key, const char *what, int64_t line,
                            const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, key);
    if (!v || cJSON_IsNull(v))
        return cp_error("%s:%" PRId64 ": missing field \"%s\" (the %s)", L->path, line, key, what);
    if (!cJSON_IsString(v) || !v->valuestring)
        return cp_error("%s:%" PRId64 ": field \"%s\" (the %s) is %s, expected a string", L->path, line, key, what,
                        cp_json_type_name(v));
    *out = v->valuestring;
    return CP_OK;
}

static cp_status jsonl_record(cJSON *rec, int64_t line, void *ctx) {
    s2s_loader *L = ctx;
    if (!cJSON_IsObject(rec))
        return cp_error("%s:%" PRId64 ": record is %s, expected a JSON object", L->path, line, cp_json_type_name(rec));
    const char *source, *target;
    if (json_field(L, rec, L->source_field, "source", line, &source) ||
        json_field(L, rec, L->target_field, "target", line, &target))
        return CP_ERR;
    return add_record(L, source, target, line);
}

/* ---- CSV / TSV ------------------------------------------------------------------------------------- */

static cp_status csv_load(s2s_loader *L, const char *text, size_t len, char delim) {
    cp_csv_table t;
    cp_status st = cp_csv_table_open(&t, L->path, text, len, delim);
    long is = -1, it = -1;
    if (!st) {
        is = cp_records_column(t.header, t.nh, L->source_field);
        it = cp_records_column(t.header, t.nh, L->target_field);
        if (is < 0 || it < 0)
            st = cp_records_no_column(L->path, t.r.rec_line, t.header, t.nh, is < 0 ? L->source_field : L->target_field);
    }
    int got = 0;
    while (!st && (got = cp_csv_table_next(&t)) > 0)
        st = add_record(L, cp_csv_field(&t.r, (size_t)is), cp_csv_field(&t.r, (size_t)it), t.r.rec_line);
    if (got < 0) st = CP_ERR;
    cp_csv_table_close(&t);
    return st;
}

/* ---- loading ---------------------------------------------------------------------------------------- */

void cp_s2s_dataset_free(cp_s2s_dataset *ds) {
    if (!ds) return;
    for (int64_t i = 0; i < ds->n; i++) {
        cp_free(ds->examples[i].src);
        cp_free(ds->examples[i].tgt);
        cp_free(ds->examples[i].source_text);
        cp_free(ds->examples[i].target_text);
    }
    cp_free(ds->examples);
    memset(ds, 0, sizeof *ds);
}

static cp_status check_options(const cp_tokenizer *tok, const cp_s2s_options *o) {
    if (!o || !o->path) return cp_error("no data file given");
    if (!tok) return cp_error("%s: no tokenizer given to read the data with", o->path);
    return CP_OK;
}

/* The special tokens a text gets: the post-processor's, or the eos appended by hand. */
static cp_status special_tokens(s2s_loader *L) {
    if (cp_class_special_count(L->tok, 0, &L->n_added)) return CP_ERR;
    L->eos = -1;
    if (L->n_added == 0) {
        L->eos = cp_tokenizer_special_id(L->tok, CP_SPECIAL_EOS);
        if (L->eos < 0)
            return cp_error("%s: the tokenizer's post-processor adds no end-of-sequence token and it has no eos token "
                            "to end the sources and targets with", L->path);
        L->n_added = 1;
    }
    const char *which[2] = {"source", "target"};
    int64_t max[2] = {L->opt->max_source_length, L->opt->max_target_length};
    for (int k = 0; k < 2; k++)
        if (max[k] <= L->n_added)
            return cp_error("%s: max_%s_length %" PRId64 " leaves no room for text: the tokenizer adds %" PRId64
                            " special token%s", L->path, which[k], max[k], L->n_added, L->n_added == 1 ? "" : "s");
    return CP_OK;
}

cp_status cp_s2s_dataset_load_mem(cp_s2s_dataset *ds, const cp_tokenizer *tok, const cp_s2s_options *opt,
                                  const char *data, size_t len) {
    memset(ds, 0, sizeof *ds);
    if (check_options(tok, opt)) return CP_ERR;
    cp_records_format fmt = opt->format != CP_RECORDS_UNKNOWN ? opt->format : cp_records_format_of(opt->path);
    if (fmt == CP_RECORDS_UNKNOWN)
        return cp_error("%s: cannot tell the format from the name (seq2seq data is read from .csv, .tsv and .jsonl "
                        "files)", opt->path);
    s2s_loader L = {.ds = ds, .tok = tok, .opt = opt, .path = opt->path,
                    .source_field = opt->source_field && opt->source_field[0] ? opt->source_field : "source",
                    .target_field = opt->target_field && opt->target_field[0] ? opt->target_field : "target"};
    if (special_tokens(&L)) return CP_ERR;
    cp_data_options dopt = {.path = opt->path, .max_decompressed = opt->max_decompressed};
    char *owned = NULL;
    const char *text;
    cp_status st = cp_data_decode_text(&dopt, data ? data : "", data ? len : 0, &owned, &text, &len);
    if (!st) st = fmt == CP_RECORDS_JSONL ? cp_jsonl_each(L.path, text, len, jsonl_record, &L)
                                          : csv_load(&L, text, len, fmt == CP_RECORDS_TSV ? '\t' : ',');
    if (!st && ds->n == 0) st = cp_error("%s: no records", opt->path);
    loader_free(&L);
    cp_free(owned);
    if (st) cp_s2s_dataset_free(ds);
    return st;
}

cp_status cp_s2s_dataset_load(cp_s2s_dataset *ds, const cp_tokenizer *tok, const cp_s2s_options *opt) {
    memset(ds, 0, sizeof *ds);
    if (check_options(tok, opt)) return CP_ERR;
    char *text = NULL;
    size_t len = 0;
    if (cp_read_file(opt->path, &text, &len) != CP_OK) return cp_error_context("data file");
    cp_status st = cp_s2s_dataset_load_mem(ds, tok, opt, text, len);
    cp_free(text);
    return st;
}

/* ---- batches ------------------------------------------------------------------------------------ */

void cp_s2s_batch_free(cp_s2s_batch *b) {
    cp_free(b->input_ids);
    cp_free(b->attention_mask);
    cp_free(b->labels);
    memset(b, 0, sizeof *b);
}

cp_status cp_s2s_batch_make(const cp_s2s_dataset *ds, const int64_t *order, int64_t start, int64_t B,
                            int64_t pad_id, cp_s2s_batch *out) {
    if (start < 0 || start >= ds->n || B < 1)
        return cp_error("batch start %" PRId64 " is outside the %" PRId64 " examples (or batch size %" PRId64 " < 1)",
                        start, ds->n, B);
    if (pad_id < 0) return cp_error("no pad token id to pad the batch with");
    if (B > ds->n - start) B = ds->n - start;
    int64_t T = 1, Td = 1;
    for (int64_t b = 0; b < B; b++) {
        int64_t i = order ? order[start + b] : start + b;
        if (i < 0 || i >= ds->n) return cp_error("example index %" PRId64 " is outside the %" PRId64 " examples", i, ds->n);
        if (ds->examples[i].n_src > T) T = ds->examples[i].n_src;
        if (ds->examples[i].n_tgt > Td) Td = ds->examples[i].n_tgt;
    }
    size_t bt = (size_t)(B * T), btd = (size_t)(B * Td);
    if (bt > out->cap_bt) {
        if (cp_resize(&out->input_ids, bt, sizeof(int64_t), "a batch") ||
            cp_resize(&out->attention_mask, bt, sizeof(int64_t), "a batch"))
            return CP_ERR;
        out->cap_bt = bt;
    }
    if (btd > out->cap_btd) {
        if (cp_resize(&out->labels, btd, sizeof(int64_t), "a batch")) return CP_ERR;
        out->cap_btd = btd;
    }
    out->B = B;
    out->T = T;
    out->Td = Td;
    for (int64_t b = 0; b < B; b++) {
        const cp_s2s_example *ex = &ds->examples[order ? order[start + b] : start + b];
        for (int64_t t = 0; t < T; t++) {
            int real = t < ex->n_src;
            out->input_ids[b * T + t] = real ? ex->src[t] : pad_id;
            out->attention_mask[b * T + t] = real;
        }
        for (int64_t t = 0; t < Td; t++) out->labels[b * Td + t] = t < ex->n_tgt ? ex->tgt[t] : -100;
    }
    return CP_OK;
}

cp_status cp_shift_tokens_right(const int64_t *labels, int64_t B, int64_t Td, int64_t pad_id,
                                int64_t decoder_start_token_id, int64_t *out) {
    if (decoder_start_token_id < 0)
        return cp_error("self.model.config.decoder_start_token_id has to be defined (no decoder_start_token_id to "
                        "start the decoder inputs with)");
    if (pad_id < 0) return cp_error("self.model.config.pad_token_id has to be defined (no pad_token_id)");
    for (int64_t b = 0; b < B; b++) {
        /* labels is (B,Td); out[b, 0] = start, out[b, t] = labels[b, t-1] with -100 -> pad */
        if (Td > 0) out[b * Td] = decoder_start_token_id;
        for (int64_t t = 1; t < Td; t++) {
            int64_t v = labels[b * Td + t - 1];
            out[b * Td + t] = v == -100 ? pad_id : v;
        }
    }
    return CP_OK;
}
