/*
 * post_processors.c — the `post_processor` slot: TemplateProcessing, ByteLevel (offset trimming),
 * BertProcessing, RobertaProcessing, Sequence.
 *
 * Processors work on a list of encodings (first the sequence, or the pair), exactly as HF's
 * process_encodings does, and the list is concatenated at the end. Tokens a processor adds get
 * offsets (0, 0) and special mask 1.
 */
#include "tokenizer/internal.h"
#include "core/alloc.h"
#include "io/json.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { PP_TEMPLATE, PP_BYTELEVEL, PP_BERT, PP_ROBERTA, PP_SEQUENCE } pptype;
static const char *const NAMES[] = {
    [PP_TEMPLATE] = "TemplateProcessing", [PP_BYTELEVEL] = "ByteLevel", [PP_BERT] = "BertProcessing",
    [PP_ROBERTA] = "RobertaProcessing", [PP_SEQUENCE] = "Sequence",
};

typedef struct { int special; int seq_b; int special_index; uint8_t type_id; } piece;
typedef struct { char *name; int32_t *ids; uint32_t *trim; size_t n; } special_tok;

struct tk_postproc {
    tk_component_head head; /* kind: a pptype; children: a Sequence's */
    piece *single, *pair;
    size_t nsingle, npair;
    special_tok *specials;
    size_t nspecials;
    int trim_offsets, add_prefix_space;
    int32_t cls_id, sep_id;
    uint32_t cls_trim, sep_trim;
};

/* Frees what a post_processor owns besides its head (tk_component_free does the rest). */
static void release(void *obj) {
    tk_postproc *p = obj;
    free(p->single);
    free(p->pair);
    for (size_t i = 0; i < p->nspecials; i++) {
        free(p->specials[i].name);
        free(p->specials[i].ids);
        free(p->specials[i].trim);
    }
    free(p->specials);
}

static int parse_specials(tk_postproc *p, const cJSON *j, const char *path) {
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "special_tokens");
    if (!st || cJSON_IsNull(st)) return CP_OK;
    if (!cJSON_IsObject(st)) return cp_error("%s.special_tokens: expected an object", path);
    size_t n = (size_t)cJSON_GetArraySize(st);
    p->specials = cp_calloc(n + 1, sizeof *p->specials, "special tokens");
    if (!p->specials) return CP_ERR;
    for (const cJSON *e = st->child; e; e = e->next) {
        special_tok *s = &p->specials[p->nspecials++];
        if (!(s->name = cp_strdup(e->string))) return CP_ERR;
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(e, "ids");
        const cJSON *toks = cJSON_GetObjectItemCaseSensitive(e, "tokens");
        if (!cJSON_IsArray(ids))
            return cp_error("%s.special_tokens[\"%s\"].ids: expected an array of ids", path, e->string);
        s->n = (size_t)cJSON_GetArraySize(ids);
        s->ids = cp_calloc(s->n + 1, sizeof *s->ids, "special token ids");
        s->trim = cp_calloc(s->n + 1, sizeof *s->trim, "special token ids");
        if (!s->ids || !s->trim) return CP_ERR;
        size_t k = 0;
        for (const cJSON *x = ids->child; x; x = x->next, k++) {
            int64_t id;
            if (!cp_json_int_in(x, 0, INT32_MAX, &id)) {
                char what[48];
                return cp_error("%s.special_tokens[\"%s\"].ids[%zu]: expected a token id (an integer from 0 to %d), got %s",
                                path, e->string, k, INT32_MAX, cp_json_describe(x, what, sizeof what));
            }
            s->ids[k] = (int32_t)id;
            const cJSON *t = cJSON_IsArray(toks) ? cJSON_GetArrayItem(toks, (int)k) : NULL;
            if (cJSON_IsString(t)) s->trim[k] = tk_trim_counts(t->valuestring, strlen(t->valuestring));
        }
    }
    return CP_OK;
}

static int parse_template(tk_postproc *p, const cJSON *arr, const char *path, const char *key, piece **out, size_t *n) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(arr, key);
    if (!cJSON_IsArray(t)) return cp_error("%s.%s: expected an array of template pieces", path, key);
    size_t cnt = (size_t)cJSON_GetArraySize(t);
    *out = cp_calloc(cnt + 1, sizeof **out, "a template");
    if (!*out) return CP_ERR;
    size_t i = 0;
    for (const cJSON *e = t->child; e; e = e->next, i++) {
        const cJSON *sq = cJSON_GetObjectItemCaseSensitive(e, "Sequence");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
        const cJSON *body = sq ? sq : sp;
        if (!cJSON_IsObject(body))
            return cp_error("%s.%s[%zu]: expected {\"Sequence\": {...}} or {\"SpecialToken\": {...}}", path, key, i);
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(body, "id");
        if (!cJSON_IsString(id)) return cp_error("%s.%s[%zu].id: expected a string", path, key, i);
        char sub[300];
        snprintf(sub, sizeof sub, "%s.%s[%zu]", path, key, i);
        long type_id; /* cp_encoding keeps type ids in a byte */
        if (tk_json_int(body, "type_id", 0, 0, 255, &type_id, sub)) return CP_ERR;
        piece *pc = &(*out)[i];
        pc->type_id = (uint8_t)type_id;
        if (sq) {
            if (strcmp(id->valuestring, "A") && strcmp(id->valuestring, "B"))
                return cp_error("%s.%s[%zu].id: expected \"A\" or \"B\", got \"%s\"", path, key, i, id->valuestring);
            pc->seq_b = id->valuestring[0] == 'B';
        } else {
            pc->special = 1;
            pc->special_index = -1;
            for (size_t k = 0; k < p->nspecials; k++)
                if (strcmp(p->specials[k].name, id->valuestring) == 0) pc->special_index = (int)k;
            if (pc->special_index < 0)
                return cp_error("%s.%s[%zu]: special token \"%s\" is missing from special_tokens", path, key, i, id->valuestring);
        }
    }
    *n = cnt;
    return CP_OK;
}

static int parse_pair_token(const cJSON *j, const char *key, const char *path, int32_t *id, uint32_t *trim) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsArray(t) || cJSON_GetArraySize(t) != 2 || !cJSON_IsString(cJSON_GetArrayItem(t, 0)) ||
        !cJSON_IsNumber(cJSON_GetArrayItem(t, 1)))
        return cp_error("%s.%s: expected [token, id]", path, key);
    int64_t v;
    if (!cp_json_int_in(cJSON_GetArrayItem(t, 1), 0, INT32_MAX, &v)) {
        char what[48];
        return cp_error("%s.%s[1]: expected a token id (an integer from 0 to %d), got %s", path, key, INT32_MAX,
                        cp_json_describe(cJSON_GetArrayItem(t, 1), what, sizeof what));
    }
    *id = (int32_t)v;
    const char *s = cJSON_GetArrayItem(t, 0)->valuestring;
    *trim = tk_trim_counts(s, strlen(s));
    return CP_OK;
}

/* ByteLevel's and RobertaProcessing's trim_offsets and add_prefix_space. */
static int parse_offset_trimming(tk_postproc *p, const cJSON *j, const char *path) {
    int rc = tk_json_bool(j, "trim_offsets", 1, &p->trim_offsets, path);
    return rc ? rc : tk_json_bool(j, "add_prefix_space", 1, &p->add_prefix_space, path);
}

/* Reads the fields of a post_processor of the kind in its head (a Sequence's children: the caller). */
static int parse(void *obj, const cJSON *j, const char *path) {
    tk_postproc *p = obj;
    int rc = CP_OK;
    switch ((pptype)p->head.kind) {
    case PP_TEMPLATE:
        rc = parse_specials(p, j, path);
        if (!rc) rc = parse_template(p, j, path, "single", &p->single, &p->nsingle);
        if (!rc) rc = parse_template(p, j, path, "pair", &p->pair, &p->npair);
        break;
    case PP_BYTELEVEL:
        rc = parse_offset_trimming(p, j, path);
        break;
    case PP_BERT:
    case PP_ROBERTA:
        rc = parse_pair_token(j, "cls", path, &p->cls_id, &p->cls_trim);
        if (!rc) rc = parse_pair_token(j, "sep", path, &p->sep_id, &p->sep_trim);
        if (!rc && p->head.kind == PP_ROBERTA) rc = parse_offset_trimming(p, j, path);
        break;
    case PP_SEQUENCE: /* the children: tk_component_from_json */
        break;
    }
    return rc;
}

const tk_component_class tk_postproc_class = {
    "post_processor", NAMES, PP_SEQUENCE, "processors", sizeof(tk_postproc), parse, release,
};

/* ---- processing ------------------------------------------------------------------------------------ */

typedef struct { tk_enc *v; size_t n, cap; } enc_list;

static void list_free(enc_list *l) {
    for (size_t i = 0; i < l->n; i++) tk_enc_free(&l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static tk_enc *list_add(enc_list *l) {
    if (cp_grow(&l->v, &l->cap, l->n + 1, sizeof *l->v, 8, "encodings")) return NULL;
    memset(&l->v[l->n], 0, sizeof l->v[l->n]);
    return &l->v[l->n++];
}

static int enc_copy(tk_enc *dst, const tk_enc *src, int set_type, int type_id) {
    for (size_t i = 0; i < src->n; i++) {
        if (tk_enc_push(dst, src->ids[i], src->offsets[2 * i], src->offsets[2 * i + 1], src->special[i],
                        set_type ? type_id : src->type_ids[i], src->trim[i]))
            return CP_ERR;
        dst->seq[dst->n - 1] = src->seq[i];
    }
    return CP_OK;
}

/* processors/byte_level.rs process_offsets */
static void trim_offsets(tk_enc *e, int add_prefix_space) {
    for (size_t i = 0; i < e->n; i++) {
        size_t leading = e->trim[i] >> 16, trailing = e->trim[i] & 0xFFFF;
        size_t *o = &e->offsets[2 * i];
        if (leading == 0 && trailing == 0) continue;
        if (leading > 0) {
            int is_first = i == 0 || o[0] == 0;
            if (is_first && add_prefix_space && leading == 1) leading = 0;
            o[0] = o[0] + leading < o[1] ? o[0] + leading : o[1];
        }
        if (trailing > 0 && o[1] >= trailing) o[1] = o[1] - trailing > o[0] ? o[1] - trailing : o[0];
    }
}

static int add_special(enc_list *out, const int32_t *ids, const uint32_t *trim, size_t n, int type_id) {
    tk_enc *e = list_add(out);
    if (!e) return CP_ERR;
    for (size_t i = 0; i < n; i++)
        if (tk_enc_push(e, ids[i], 0, 0, 1, type_id, trim ? trim[i] : 0)) return CP_ERR;
    return CP_OK;
}

static int move_in(enc_list *out, tk_enc *src, int set_type, int type_id) {
    tk_enc *e = list_add(out);
    if (!e) return CP_ERR;
    return enc_copy(e, src, set_type, type_id);
}

static int process(const tk_postproc *p, enc_list *l, int nseq, int add) {
    enc_list out = {0};
    int rc = CP_OK;
    switch ((pptype)p->head.kind) {
    case PP_BYTELEVEL:
        if (p->trim_offsets)
            for (size_t i = 0; i < l->n; i++) trim_offsets(&l->v[i], p->add_prefix_space);
        return CP_OK;
    case PP_TEMPLATE: {
        const piece *t = nseq == 2 ? p->pair : p->single;
        size_t nt = nseq == 2 ? p->npair : p->nsingle;
        for (size_t i = 0; i < nt && !rc; i++) {
            if (t[i].special) {
                if (!add) continue;
                const special_tok *s = &p->specials[t[i].special_index];
                rc = add_special(&out, s->ids, s->trim, s->n, t[i].type_id);
            } else {
                size_t k = t[i].seq_b ? 1 : 0;
                if (k >= l->n) { rc = cp_error("post_processor: the template uses $B but the input has one sequence"); break; }
                rc = move_in(&out, &l->v[k], 1, t[i].type_id);
            }
        }
        break;
    }
    case PP_BERT:
    case PP_ROBERTA: {
        int roberta = p->head.kind == PP_ROBERTA;
        if (roberta) {
            if (p->trim_offsets)
                for (size_t i = 0; i < l->n; i++) trim_offsets(&l->v[i], p->add_prefix_space);
            for (size_t i = 0; i < l->n; i++) if (l->v[i].n) memset(l->v[i].type_ids, 0, l->v[i].n);
        }
        if (!add) return CP_OK;
        for (size_t i = 0; i < l->n && !rc; i++) {
            int ty = roberta ? 0 : (int)(i > 0);
            if (i == 0 || roberta) rc = add_special(&out, i == 0 ? &p->cls_id : &p->sep_id,
                                                    i == 0 ? &p->cls_trim : &p->sep_trim, 1, ty);
            if (!rc) rc = move_in(&out, &l->v[i], 0, 0);
            if (!rc) rc = add_special(&out, &p->sep_id, &p->sep_trim, 1, ty);
        }
        break;
    }
    case PP_SEQUENCE:
        for (size_t i = 0; i < p->head.children.n && !rc; i++) rc = process(p->head.children.v[i], l, nseq, add);
        return rc;
    }
    if (rc) { list_free(&out); return rc; }
    list_free(l);
    *l = out;
    return CP_OK;
}

int tk_postproc_apply(const tk_postproc *p, const struct cp_tokenizer *tok, tk_enc *a, tk_enc *b,
                      int add_special_tokens, tk_enc *out) {
    (void)tok;
    enc_list l = {0};
    int rc = CP_OK;
    tk_enc *x = list_add(&l);
    if (!x) return CP_ERR;
    *x = *a;
    memset(a, 0, sizeof *a);
    if (x->n) memset(x->type_ids, 0, x->n);
    int nseq = 1;
    if (b) {
        tk_enc *y = list_add(&l);
        if (!y) { list_free(&l); return CP_ERR; }
        *y = *b;
        memset(b, 0, sizeof *b);
        if (y->n) memset(y->type_ids, 1, y->n);
        nseq = 2;
    }
    if (p) rc = process(p, &l, nseq, add_special_tokens);
    out->n = 0;
    for (size_t i = 0; i < l.n && !rc; i++) rc = enc_copy(out, &l.v[i], 0, 0);
    list_free(&l);
    return rc;
}

void tk_postproc_added(const tk_postproc *p, const struct cp_tokenizer *tok, int *adds_bos,
                       int *adds_eos, int32_t *first_id, int32_t *last_id) {
    (void)tok;
    *adds_bos = *adds_eos = 0;
    *first_id = *last_id = CP_TOKEN_NONE;
    if (!p) return;
    if (p->head.kind == PP_SEQUENCE) {
        for (size_t i = 0; i < p->head.children.n; i++) {
            int b, e;
            int32_t f, l;
            tk_postproc_added(p->head.children.v[i], tok, &b, &e, &f, &l);
            if (b) { *adds_bos = 1; *first_id = f; }
            if (e) { *adds_eos = 1; *last_id = l; }
        }
        return;
    }
    if (p->head.kind == PP_BERT || p->head.kind == PP_ROBERTA) {
        *adds_bos = *adds_eos = 1;
        *first_id = p->cls_id;
        *last_id = p->sep_id;
        return;
    }
    if (p->head.kind == PP_TEMPLATE && p->nsingle) {
        if (p->single[0].special) {
            const special_tok *s = &p->specials[p->single[0].special_index];
            if (s->n) { *adds_bos = 1; *first_id = s->ids[0]; }
        }
        if (p->single[p->nsingle - 1].special) {
            const special_tok *s = &p->specials[p->single[p->nsingle - 1].special_index];
            if (s->n) { *adds_eos = 1; *last_id = s->ids[s->n - 1]; }
        }
    }
}

int tk_postproc_trims(const tk_postproc *p) {
    if (!p) return 0;
    if ((p->head.kind == PP_BYTELEVEL || p->head.kind == PP_ROBERTA) && p->trim_offsets) return 1;
    for (size_t i = 0; i < p->head.children.n; i++)
        if (tk_postproc_trims(p->head.children.v[i])) return 1;
    return 0;
}

/* Rust `tokenizers` loads any u32 here and emits it; an id with no token behind it can only fail
 * later (decode, the embedding lookup), so it is refused at load. */
static int check_id(const struct cp_tokenizer *tok, int32_t id, const char *where) {
    size_t len;
    if (!tk_id_to_token(tok, id, &len))
        return cp_error("%s: id %d is not in the vocabulary (size %zu)", where, id, cp_tokenizer_vocab_size(tok));
    return CP_OK;
}

int tk_postproc_check_ids(const tk_postproc *p, const struct cp_tokenizer *tok, const char *path) {
    if (!p) return CP_OK;
    char where[400];
    switch ((pptype)p->head.kind) {
    case PP_TEMPLATE:
        for (size_t i = 0; i < p->nspecials; i++)
            for (size_t k = 0; k < p->specials[i].n; k++) {
                snprintf(where, sizeof where, "%s.special_tokens[\"%s\"].ids[%zu]", path, p->specials[i].name, k);
                if (check_id(tok, p->specials[i].ids[k], where)) return CP_ERR;
            }
        return CP_OK;
    case PP_BERT:
    case PP_ROBERTA:
        snprintf(where, sizeof where, "%s.cls[1]", path);
        if (check_id(tok, p->cls_id, where)) return CP_ERR;
        snprintf(where, sizeof where, "%s.sep[1]", path);
        return check_id(tok, p->sep_id, where);
    case PP_SEQUENCE:
        for (size_t i = 0; i < p->head.children.n; i++) {
            snprintf(where, sizeof where, "%s.processors[%d]", path, p->head.children.index[i]);
            if (tk_postproc_check_ids(p->head.children.v[i], tok, where)) return CP_ERR;
        }
        return CP_OK;
    case PP_BYTELEVEL:
        return CP_OK;
    }
    return CP_OK;
}
