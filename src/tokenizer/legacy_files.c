/*
 * legacy_files.c — model directories without tokenizer.json, and the transformers config files.
 *
 * vocab.json + merges.txt is a GPT-2 style byte-level BPE and vocab.txt a BERT WordPiece; each is
 * turned into the tokenizer.json description transformers' converters (GPT2Converter,
 * BertConverter in convert_slow_tokenizer.py) would build, and loaded through the same parser.
 * tokenizer_config.json / special_tokens_map.json give the bos/eos/pad/unk roles, add_bos_token,
 * add_eos_token, do_lower_case and clean_up_tokenization_spaces.
 */
#include "tokenizer/internal.h"
#include "core/alloc.h"
#include "io/json.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses dir/name if it exists; *out is NULL when it does not. */
static int read_json(const char *dir, const char *name, cJSON **out) {
    char path[4096];
    *out = NULL;
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return cp_error("%s/%s: path too long", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return CP_OK;
    fclose(f);
    char *buf;
    size_t len;
    if (tk_read_file(path, &buf, &len)) return CP_ERR;
    int rc = cp_json_parse(buf, len, path, out); /* names line and column; a repeated key keeps its last value */
    free(buf);
    return rc;
}

/* A role value: "text", {"content": "text", ...} or null. Returns 1 if present (*s may be NULL). */
static int role_value(const cJSON *cfg, const char *key, const char **s) {
    const cJSON *v = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, key) : NULL;
    if (!v) return 0;
    *s = NULL;
    if (cJSON_IsString(v)) *s = v->valuestring;
    else if (cJSON_IsObject(v)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (cJSON_IsString(c)) *s = c->valuestring;
    }
    return 1;
}

static cJSON *special_entry(const char *content) {
    cJSON *t = cJSON_CreateObject();
    if (!t) return NULL;
    cJSON_AddStringToObject(t, "content", content);
    cJSON_AddBoolToObject(t, "single_word", 0);
    cJSON_AddBoolToObject(t, "lstrip", 0);
    cJSON_AddBoolToObject(t, "rstrip", 0);
    cJSON_AddBoolToObject(t, "normalized", 0);
    cJSON_AddBoolToObject(t, "special", 1);
    return t;
}

/* Adds the role tokens named by the config (or the defaults) that the vocabulary has. */
static void add_specials(cJSON *added, const cJSON *vocab, const cJSON *cfg, const char *const *roles,
                         const char *const *defaults, int n) {
    for (int i = 0; i < n; i++) {
        const char *s = defaults[i];
        if (!role_value(cfg, roles[i], &s)) s = defaults[i];
        if (!s || !cJSON_GetObjectItemCaseSensitive(vocab, s)) continue;
        int dup = 0;
        for (const cJSON *e = added->child; e; e = e->next)
            if (strcmp(cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring, s) == 0) dup = 1;
        if (!dup) cJSON_AddItemToArray(added, special_entry(s));
    }
}

static cJSON *obj(const char *type) {
    cJSON *o = cJSON_CreateObject();
    if (o) cJSON_AddStringToObject(o, "type", type);
    return o;
}

static int load_built(cp_tokenizer *tok, cJSON *root, const char *what) {
    int rc = tk_tokenizer_from_json(tok, root);
    cJSON_Delete(root);
    if (rc) return cp_error_context("%s", what);
    return CP_OK;
}

int tk_load_vocab_merges(cp_tokenizer *tok, const char *vocab_json, const char *merges_txt) {
    char *vbuf, *mbuf;
    size_t vlen, mlen;
    if (tk_read_file(vocab_json, &vbuf, &vlen)) return CP_ERR;
    if (cp_utf8_valid_prefix(vbuf, vlen) != vlen) {
        size_t at = cp_utf8_valid_prefix(vbuf, vlen);
        free(vbuf);
        return cp_error("%s: not valid UTF-8 at byte %zu", vocab_json, at);
    }
    cJSON *vocab;
    int rc = cp_json_parse(vbuf, vlen, vocab_json, &vocab);
    free(vbuf);
    if (rc) return CP_ERR;
    if (!cJSON_IsObject(vocab)) { cJSON_Delete(vocab); return cp_error("%s: expected an object mapping tokens to ids", vocab_json); }
    if (tk_read_file(merges_txt, &mbuf, &mlen)) { cJSON_Delete(vocab); return CP_ERR; }
    if (cp_utf8_valid_prefix(mbuf, mlen) != mlen) {
        size_t at = cp_utf8_valid_prefix(mbuf, mlen);
        free(mbuf);
        cJSON_Delete(vocab);
        return cp_error("%s: not valid UTF-8 at byte %zu", merges_txt, at);
    }
    cJSON *merges = cJSON_CreateArray();
    /* One merge per line; a first line starting with "#version" is skipped; empty lines too. */
    char *line = mbuf;
    size_t lineno = 0;
    while (line && *line) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        size_t l = strlen(line);
        if (l && line[l - 1] == '\r') line[--l] = '\0';
        if (!(lineno == 0 && strncmp(line, "#version", 8) == 0) && l > 0)
            cJSON_AddItemToArray(merges, cJSON_CreateString(line));
        lineno++;
        line = nl ? nl + 1 : NULL;
    }
    free(mbuf);
    cJSON *cfg = NULL;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", vocab_json);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0'; else snprintf(dir, sizeof dir, ".");
    if (read_json(dir, "tokenizer_config.json", &cfg)) { cJSON_Delete(vocab); cJSON_Delete(merges); return CP_ERR; }
    cJSON *root = cJSON_CreateObject();
    cJSON *model = obj("BPE");
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON_AddItemToObject(model, "merges", merges);
    cJSON_AddStringToObject(model, "continuing_subword_prefix", "");
    cJSON_AddStringToObject(model, "end_of_word_suffix", "");
    cJSON_AddItemToObject(root, "model", model);
    cJSON *pre = obj("ByteLevel");
    const cJSON *aps = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "add_prefix_space") : NULL;
    cJSON_AddBoolToObject(pre, "add_prefix_space", cJSON_IsTrue(aps));
    cJSON_AddItemToObject(root, "pre_tokenizer", pre);
    cJSON_AddItemToObject(root, "decoder", obj("ByteLevel"));
    cJSON *post = obj("ByteLevel");
    cJSON_AddBoolToObject(post, "trim_offsets", 0);
    cJSON_AddItemToObject(root, "post_processor", post);
    cJSON *added = cJSON_CreateArray();
    static const char *const roles[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    static const char *const defs[] = {"<|endoftext|>", "<|endoftext|>", "<|endoftext|>", NULL};
    add_specials(added, vocab, cfg, roles, defs, 4);
    cJSON_AddItemToObject(root, "added_tokens", added);
    cJSON_Delete(cfg);
    return load_built(tok, root, vocab_json);
}

int tk_load_vocab_txt(cp_tokenizer *tok, const char *vocab_txt, const char *dir) {
    char *buf;
    size_t len;
    if (tk_read_file(vocab_txt, &buf, &len)) return CP_ERR;
    cJSON *vocab = cJSON_CreateObject();
    int has_upper = 0;
    /* id = line index; only "\n" is stripped (BertTokenizer load_vocab); later duplicates win. */
    size_t id = 0;
    char *line = buf, *end = buf + len;
    while (line < end) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t l = nl ? (size_t)(nl - line) : (size_t)(end - line);
        char *tokstr = cp_malloc(l + 1, "a vocabulary line");
        if (!tokstr) { free(buf); cJSON_Delete(vocab); return CP_ERR; }
        memcpy(tokstr, line, l);
        tokstr[l] = '\0';
        if (cp_utf8_valid_prefix(tokstr, l) != l) {
            free(tokstr); free(buf); cJSON_Delete(vocab);
            return cp_error("%s:%zu: not valid UTF-8", vocab_txt, id + 1);
        }
        if (!(l > 2 && tokstr[0] == '[' && tokstr[l - 1] == ']'))
            for (size_t k = 0; k < l; k++) has_upper |= tokstr[k] >= 'A' && tokstr[k] <= 'Z';
        cJSON_AddNumberToObject(vocab, tokstr, (double)id);
        free(tokstr);
        id++;
        line = nl ? nl + 1 : end;
    }
    free(buf);
    cJSON *cfg = NULL;
    if (read_json(dir, "tokenizer_config.json", &cfg)) { cJSON_Delete(vocab); return CP_ERR; }
    /* do_lower_case: the config's, else guessed from the vocabulary (a cased one has capitals). */
    const cJSON *dlc = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "do_lower_case") : NULL;
    int lower = cJSON_IsBool(dlc) ? cJSON_IsTrue(dlc) : !has_upper;
    const cJSON *tcc = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "tokenize_chinese_chars") : NULL;
    const cJSON *sa = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "strip_accents") : NULL;
    const char *unk = "[UNK]", *cls = "[CLS]", *sep = "[SEP]";
    const char *s;
    if (role_value(cfg, "unk_token", &s) && s) unk = s;
    if (role_value(cfg, "cls_token", &s) && s) cls = s;
    if (role_value(cfg, "sep_token", &s) && s) sep = s;
    const cJSON *cls_id = cJSON_GetObjectItemCaseSensitive(vocab, cls);
    const cJSON *sep_id = cJSON_GetObjectItemCaseSensitive(vocab, sep);

    cJSON *root = cJSON_CreateObject();
    cJSON *model = obj("WordPiece");
    cJSON_AddStringToObject(model, "unk_token", unk);
    cJSON_AddStringToObject(model, "continuing_subword_prefix", "##");
    cJSON_AddNumberToObject(model, "max_input_chars_per_word", 100);
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON_AddItemToObject(root, "model", model);
    cJSON *norm = obj("BertNormalizer");
    cJSON_AddBoolToObject(norm, "clean_text", 1);
    cJSON_AddBoolToObject(norm, "handle_chinese_chars", tcc ? cJSON_IsTrue(tcc) : 1);
    if (cJSON_IsBool(sa)) cJSON_AddBoolToObject(norm, "strip_accents", cJSON_IsTrue(sa));
    else cJSON_AddNullToObject(norm, "strip_accents");
    cJSON_AddBoolToObject(norm, "lowercase", lower);
    cJSON_AddItemToObject(root, "normalizer", norm);
    cJSON_AddItemToObject(root, "pre_tokenizer", obj("BertPreTokenizer"));
    cJSON *dec = obj("WordPiece");
    cJSON_AddStringToObject(dec, "prefix", "##");
    cJSON_AddBoolToObject(dec, "cleanup", 1);
    cJSON_AddItemToObject(root, "decoder", dec);
    if (cJSON_IsNumber(cls_id) && cJSON_IsNumber(sep_id)) {
        /* [CLS]:0 $A:0 [SEP]:0 and [CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1 */
        char json[2048];
        snprintf(json, sizeof json,
                 "{\"type\":\"TemplateProcessing\","
                 "\"single\":[{\"SpecialToken\":{\"id\":\"C\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"S\",\"type_id\":0}}],"
                 "\"pair\":[{\"SpecialToken\":{\"id\":\"C\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"S\",\"type_id\":0}},"
                 "{\"Sequence\":{\"id\":\"B\",\"type_id\":1}},{\"SpecialToken\":{\"id\":\"S\",\"type_id\":1}}],"
                 "\"special_tokens\":{\"C\":{\"id\":\"C\",\"ids\":[%d],\"tokens\":[]},\"S\":{\"id\":\"S\",\"ids\":[%d],\"tokens\":[]}}}",
                 (int)cls_id->valuedouble, (int)sep_id->valuedouble);
        cJSON_AddItemToObject(root, "post_processor", cJSON_Parse(json));
    }
    cJSON *added = cJSON_CreateArray();
    static const char *const roles[] = {"pad_token", "unk_token", "cls_token", "sep_token", "mask_token"};
    static const char *const defs[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    add_specials(added, vocab, cfg, roles, defs, 5);
    cJSON_AddItemToObject(root, "added_tokens", added);
    cJSON_Delete(cfg);
    return load_built(tok, root, vocab_txt);
}

int tk_load_config(cp_tokenizer *tok, const char *dir) {
    cJSON *cfg;
    if (read_json(dir, "tokenizer_config.json", &cfg)) return CP_ERR;
    if (!cfg) return CP_OK;
    const cJSON *v;
    if (cJSON_IsBool(v = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token"))) tok->add_bos = cJSON_IsTrue(v);
    if (cJSON_IsBool(v = cJSON_GetObjectItemCaseSensitive(cfg, "add_eos_token"))) tok->add_eos = cJSON_IsTrue(v);
    if (cJSON_IsBool(v = cJSON_GetObjectItemCaseSensitive(cfg, "clean_up_tokenization_spaces")))
        tok->clean_up_spaces = cJSON_IsTrue(v);
    cJSON_Delete(cfg);
    return CP_OK;
}

int tk_apply_config_specials(cp_tokenizer *tok, const char *dir) {
    static const char *const roles[4] = {"bos_token", "eos_token", "pad_token", "unk_token"};
    const char *files[2] = {"tokenizer_config.json", "special_tokens_map.json"};
    for (int f = 0; f < 2; f++) {
        cJSON *cfg;
        if (read_json(dir, files[f], &cfg)) return CP_ERR;
        if (!cfg) continue;
        tok->config_loaded = 1;
        for (int r = 0; r < 4; r++) {
            const char *s;
            if (!role_value(cfg, roles[r], &s)) continue;
            if (!s) { tok->special[r] = CP_TOKEN_NONE; continue; }
            int32_t id = cp_tokenizer_token_to_id(tok, s);
            if (id < 0) cp_warn("%s/%s: %s \"%s\" is not in the vocabulary; leaving it unset", dir, files[f], roles[r], s);
            tok->special[r] = id < 0 ? CP_TOKEN_NONE : id;
        }
        cJSON_Delete(cfg);
    }
    return CP_OK;
}

int tk_clean_up_spaces(tk_buf *b) {
    static const char *rules[][2] = {
        {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
        {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
    };
    for (size_t r = 0; r < sizeof rules / sizeof rules[0]; r++) {
        const char *from = rules[r][0], *to = rules[r][1];
        size_t fl = strlen(from), tl = strlen(to);
        size_t w = 0;
        for (size_t i = 0; i < b->len;) {
            if (i + fl <= b->len && memcmp(b->s + i, from, fl) == 0) {
                memmove(b->s + w, to, tl); /* tl < fl, so writing never overtakes reading */
                w += tl;
                i += fl;
            } else {
                b->s[w++] = b->s[i++];
            }
        }
        b->len = w;
        if (b->s) b->s[w] = '\0';
    }
    return CP_OK;
}
