/*
 * token_data.c — TOKEN_CLS data: CoNLL files and word-labelled JSONL, words tokenized as
 * tokenizer(words, is_split_into_words=True) does, tags on the first sub-token of each word; see
 * class_data.h for the formats.
 *
 * A sentence is a list of words (pointers into the file's text or the JSON record) and one raw tag per
 * word. Its words are encoded one by one (cp_tokenizer_encode_word), the sub-tokens concatenated with
 * their word index (transformers' word_ids()), truncated, and the special tokens added
 * (cp_class_encode_truncated). Until the label set is known, a token's label holds the index of its
 * word's raw tag (or -100); resolution then maps each to its class id, as class_data.c does for
 * SEQ_CLS.
 */
#include "train/class_data.h"
#include "core/alloc.h"
#include "io/json.h"
#include "tokenizer/tokenizer.h"
#include "train/records.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    cp_class_dataset *ds;
    size_t cap;
    const cp_tokenizer *tok;
    const cp_class_options *opt;
    const char *path;
    int prefix;
    int64_t n_added;
    cp_encoding ew, fin;
    int32_t *ids;        /* the sentence's content tokens */
    int64_t *word_of;    /* their word index */
    int64_t *lab;        /* per final token: raw tag index or -100 */
    size_t ids_cap, word_cap, lab_cap;
    cp_raw_label *v;     /* every word's raw tag, in file order */
    int64_t *vline;
    size_t nv, vcap, vline_cap;
    /* the sentence being collected (CoNLL) */
    const char **words;
    size_t *wlen;
    size_t nw, w_cap, wl_cap;
    size_t first_tag;    /* index in v of the sentence's first tag */
    int64_t sent_line;
} tok_loader;

static void loader_free(tok_loader *L) {
    for (size_t k = 0; k < L->nv; k++) cp_free(L->v[k].s);
    cp_free(L->v); cp_free(L->vline);
    cp_free(L->ids); cp_free(L->word_of); cp_free(L->lab);
    cp_free(L->words); cp_free(L->wlen);
    cp_encoding_free(&L->ew); cp_encoding_free(&L->fin);
}

static cp_status push_tag(tok_loader *L, cp_raw_label *r, int64_t line) {
    if (cp_grow(&L->v, &L->vcap, L->nv + 1, sizeof *L->v, 256, "tags") ||
        cp_grow(&L->vline, &L->vline_cap, L->nv + 1, sizeof *L->vline, 256, "tags")) {
        cp_free(r->s);
        return CP_ERR;
    }
    L->v[L->nv] = *r;
    L->vline[L->nv++] = line;
    return CP_OK;
}

static cp_status push_word(tok_loader *L, const char *w, size_t n) {
    if (cp_grow(&L->words, &L->w_cap, L->nw + 1, sizeof *L->words, 64, "words") ||
        cp_grow(&L->wlen, &L->wl_cap, L->nw + 1, sizeof *L->wlen, 64, "words"))
        return CP_ERR;
    L->words[L->nw] = w;
    L->wlen[L->nw++] = n;
    return CP_OK;
}

/* The collected sentence (words[0..nw), tags v[first_tag..first_tag+nw)) becomes one example. */
static cp_status end_sentence(tok_loader *L) {
    if (L->nw == 0) return CP_OK;
    size_t n = 0;
    for (size_t w = 0; w < L->nw; w++) {
        if (cp_tokenizer_encode_word(L->tok, L->words[w], L->wlen[w], L->prefix, &L->ew) != CP_OK)
            return cp_error("%s:%" PRId64 ": cannot tokenize word %zu of the sentence: %s", L->path, L->sent_line, w + 1,
                            cp_last_error());
        if (cp_grow(&L->ids, &L->ids_cap, n + L->ew.n, sizeof *L->ids, 256, "token ids") ||
            cp_grow(&L->word_of, &L->word_cap, n + L->ew.n, sizeof *L->word_of, 256, "word ids"))
            return CP_ERR;
        for (size_t k = 0; k < L->ew.n; k++) {
            L->ids[n] = L->ew.ids[k];
            L->word_of[n++] = (int64_t)w;
        }
    }
    int64_t budget = L->opt->max_seq_length - L->n_added;
    if ((int64_t)n > budget && L->opt->strict)
        return cp_error("%s:%" PRId64 ": the sentence has %zu tokens (%zu words), more than max_seq_length %" PRId64
                        " allows (%" PRId64 " with the special tokens)", L->path, L->sent_line, n, L->nw,
                        L->opt->max_seq_length, budget);
    int trunc;
    if (cp_class_encode_truncated(L->tok, L->ids, n, NULL, 0, L->opt->max_seq_length, L->n_added, &L->fin, &trunc))
        return CP_ERR;
    L->ds->n_truncated += trunc;
    if (cp_grow(&L->lab, &L->lab_cap, L->fin.n + 1, sizeof *L->lab, 256, "labels")) return CP_ERR;
    size_t k = 0;
    int64_t prev = -1;
    for (size_t t = 0; t < L->fin.n; t++) {
        if (L->fin.special_mask[t]) { L->lab[t] = -100; prev = -1; continue; }
        int64_t w = L->word_of[k++];
        L->lab[t] = w != prev ? (int64_t)(L->first_tag + (size_t)w) : -100;
        prev = w;
    }
    cp_status st = cp_class_push(L->ds, &L->cap, &L->fin, L->lab, (int64_t)L->fin.n, NULL, 0, L->sent_line);
    L->nw = 0;
    return st;
}

/* ---- CoNLL ---------------------------------------------------------------------------------------- */

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\v' && s[i] != '\f') return 0;
    return 1;
}

static cp_status conll_load(tok_loader *L, const char *text, size_t len) {
    int64_t line = 1, ncol = 0, ncol_line = 0;
    size_t p = 0;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) p = 3;
    for (; p < len; line++) {
        const char *nl = memchr(text + p, '\n', len - p);
        size_t e = nl ? (size_t)(nl - text) : len, next = e + 1;
        if (e > p && text[e - 1] == '\r') e--;
        const char *s = text + p;
        size_t n = e - p;
        p = next;
        if (is_blank(s, n)) {
            if (end_sentence(L)) return CP_ERR;
            continue;
        }
        /* columns: TAB-separated when the line has a TAB, else runs of spaces */
        const char *col[2] = {0}; /* first and last */
        size_t clen[2] = {0};
        int64_t nc = 0;
        if (memchr(s, '\t', n)) {
            size_t a = 0;
            for (size_t i = 0; i <= n; i++) {
                if (i < n && s[i] != '\t') continue;
                if (nc == 0) { col[0] = s + a; clen[0] = i - a; }
                col[1] = s + a;
                clen[1] = i - a;
                nc++;
                a = i + 1;
            }
        } else {
            for (size_t i = 0; i < n;) {
                while (i < n && s[i] == ' ') i++;
                if (i >= n) break;
                size_t a = i;
                while (i < n && s[i] != ' ') i++;
                if (nc == 0) { col[0] = s + a; clen[0] = i - a; }
                col[1] = s + a;
                clen[1] = i - a;
                nc++;
            }
        }
        if (clen[0] == 10 && memcmp(col[0], "-DOCSTART-", 10) == 0) {
            if (end_sentence(L)) return CP_ERR;
            continue;
        }
        if (ncol == 0) {
            if (nc < 2)
                return cp_error("%s:%" PRId64 ": 1 column; a CoNLL line is a token and its tag (\"token<TAB>tag\")",
                                L->path, line);
            ncol = nc;
            ncol_line = line;
        } else if (nc != ncol) {
            return cp_error("%s:%" PRId64 ": %" PRId64 " column%s, but line %" PRId64 " has %" PRId64
                            " (a CoNLL line is a token, [other columns,] and its tag)", L->path, line, nc,
                            nc == 1 ? "" : "s", ncol_line, ncol);
        }
        if (clen[0] == 0) return cp_error("%s:%" PRId64 ": the token is empty", L->path, line);
        if (clen[1] == 0) return cp_error("%s:%" PRId64 ": the tag is empty", L->path, line);
        if (L->nw == 0) { L->sent_line = line; L->first_tag = L->nv; }
        cp_raw_label r;
        if (cp_raw_label_from_text(&r, col[1], clen[1]) || push_tag(L, &r, line) || push_word(L, col[0], clen[0]))
            return CP_ERR;
    }
    return end_sentence(L);
}

/* ---- word-labelled JSONL -------------------------------------------------------------------------- */

static cp_status jsonl_record(tok_loader *L, cJSON *rec, int64_t line, const char *tf, const char *lf) {
    if (cp_json_keep_last(rec) != CP_OK) return CP_ERR;
    if (!cJSON_IsObject(rec))
        return cp_error("%s:%" PRId64 ": record is %s, expected a JSON object", L->path, line, cp_json_type_name(rec));
    const cJSON *toks = cJSON_GetObjectItemCaseSensitive(rec, tf), *tags = cJSON_GetObjectItemCaseSensitive(rec, lf);
    if (!toks || !tags)
        return cp_error("%s:%" PRId64 ": missing field \"%s\" (records are {\"%s\": [words], \"%s\": [tags]})", L->path,
                        line, toks ? lf : tf, tf, lf);
    if (!cJSON_IsArray(toks) || !cJSON_IsArray(tags))
        return cp_error("%s:%" PRId64 ": field \"%s\" is %s, expected a list", L->path, line, cJSON_IsArray(toks) ? lf : tf,
                        cp_json_type_name(cJSON_IsArray(toks) ? tags : toks));
    int nt = cJSON_GetArraySize(toks), ng = cJSON_GetArraySize(tags);
    if (nt != ng)
        return cp_error("%s:%" PRId64 ": %d words but %d tags", L->path, line, nt, ng);
    if (nt == 0) return cp_error("%s:%" PRId64 ": the sentence has no words", L->path, line);
    L->nw = 0;
    L->sent_line = line;
    L->first_tag = L->nv;
    int k = 0;
    for (const cJSON *w = toks->child, *g = tags->child; w && g; w = w->next, g = g->next, k++) {
        if (!cJSON_IsString(w) || !w->valuestring)
            return cp_error("%s:%" PRId64 ": word %d of \"%s\" is %s, expected a string", L->path, line, k + 1, tf,
                            cp_json_type_name(w));
        cp_raw_label r;
        if (cJSON_IsString(g) && g->valuestring) {
            if (!(r = (cp_raw_label){.s = cp_strdup(g->valuestring)}).s) return CP_ERR;
        } else if (cJSON_IsNumber(g)) {
            int64_t v;
            if (!cp_json_int_in(g, INT32_MIN, INT32_MAX, &v))
                return cp_error("%s:%" PRId64 ": tag %d of \"%s\" is %g, expected a name or an integer class id", L->path,
                                line, k + 1, lf, g->valuedouble);
            char b[24];
            snprintf(b, sizeof b, "%" PRId64, v);
            if (!(r = (cp_raw_label){.s = cp_strdup(b), .is_int = 1, .is_num = 1, .i = v, .v = (double)v}).s) return CP_ERR;
        } else {
            return cp_error("%s:%" PRId64 ": tag %d of \"%s\" is %s, expected a name or an integer class id", L->path, line,
                            k + 1, lf, cp_json_type_name(g));
        }
        if (push_tag(L, &r, line) || push_word(L, w->valuestring, strlen(w->valuestring))) return CP_ERR;
    }
    return end_sentence(L);
}

typedef struct { tok_loader *L; const char *tf, *lf; } jsonl_ctx;

static cp_status jsonl_record_cb(cJSON *rec, int64_t line, void *ctx) {
    jsonl_ctx *c = ctx;
    return jsonl_record(c->L, rec, line, c->tf, c->lf);
}

static cp_status jsonl_load(tok_loader *L, const char *text, size_t len) {
    jsonl_ctx c = {.L = L,
                   .tf = L->opt->text_field && L->opt->text_field[0] ? L->opt->text_field : "tokens",
                   .lf = L->opt->label_field && L->opt->label_field[0] ? L->opt->label_field : "ner_tags"};
    return cp_jsonl_each(L->path, text, len, jsonl_record_cb, &c);
}

/* ---- resolving tags ------------------------------------------------------------------------------- */

static cp_status resolve_tags(tok_loader *L, cp_label_set *set, int discover) {
    if (discover && cp_label_set_discover(set, CP_PROBLEM_SINGLE_LABEL, L->v, L->nv, L->vline, L->path)) return CP_ERR;
    int64_t *id = cp_malloc((L->nv ? L->nv : 1) * sizeof *id, "tag ids");
    if (!id) return CP_ERR;
    for (size_t k = 0; k < L->nv; k++) {
        id[k] = cp_label_set_find(set, &L->v[k]);
        if (id[k] < 0) {
            char names[256];
            cp_error("%s:%" PRId64 ": tag \"%s\" is not in the label set (%s%s%s)", L->path, L->vline[k], L->v[k].s,
                     cp_label_set_describe(set, names, sizeof names), set->source[0] ? ", from " : "", set->source);
            cp_free(id);
            return CP_ERR;
        }
    }
    for (int64_t i = 0; i < L->ds->n; i++) {
        cp_class_example *ex = &L->ds->examples[i];
        for (int64_t t = 0; t < ex->len; t++)
            if (ex->labels[t] >= 0) ex->labels[t] = id[ex->labels[t]];
    }
    cp_free(id);
    L->ds->problem = CP_PROBLEM_SINGLE_LABEL;
    L->ds->num_labels = set->n;
    return CP_OK;
}

cp_status cp_token_dataset_parse(cp_class_dataset *ds, cp_label_set *labels, const cp_tokenizer *tok,
                                 const cp_class_options *opt, cp_class_file format, const char *text, size_t len) {
    int discover = labels->n == 0;
    tok_loader L = {.ds = ds, .tok = tok, .opt = opt, .path = opt->path};
    L.prefix = opt->add_prefix_space >= 0 ? opt->add_prefix_space : cp_tokenizer_is_byte_level(tok);
    cp_status st = cp_class_special_count(tok, 0, &L.n_added);
    if (!st && L.n_added >= opt->max_seq_length)
        st = cp_error("%s: max_seq_length %" PRId64 " leaves no room for words: the tokenizer adds %" PRId64
                      " special tokens", opt->path, opt->max_seq_length, L.n_added);
    if (!st) st = format == CP_CLASS_FILE_JSONL ? jsonl_load(&L, text, len) : conll_load(&L, text, len);
    if (!st && ds->n == 0) st = cp_error("%s: no sentences", opt->path);
    if (!st && !discover && labels->kind == CP_LABELS_REGRESSION)
        st = cp_error("%s: token tags need a label set of classes, not regression", opt->path);
    if (!st) st = resolve_tags(&L, labels, discover);
    loader_free(&L);
    return st;
}
