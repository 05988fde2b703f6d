/*
 * cmd_embed.c — `cpeft embed`: one embedding per input line (FEATURE_EXTRACTION), as
 * sentence-transformers' encode() computes it: tokenize (the post-processor's special tokens added,
 * the text truncated to --max-seq-length with the special tokens kept), run the model, pool the final
 * hidden states over the real tokens (mean, first or last) and, with --normalize, divide by the L2
 * norm (cp_model_embed).
 *
 * The defaults come from a sentence-transformers directory when the model is one: the pooling mode
 * from 1_Pooling/config.json, normalisation from a Normalize module in modules.json, the length from
 * sentence_bert_config.json's max_seq_length. Otherwise: mean pooling, no normalisation, the model's
 * positions (at most 512).
 *
 * Output: JSON lines {"index": i, "embedding": [...]} on stdout, or with --out a matrix (N, C) of
 * f32 in a .npy file (NumPy's format, version 1.0) or a .safetensors file (tensor "embeddings").
 */
#include "cli/adapter_args.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "core/alloc.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "tokenizer/tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: cpeft embed --model DIR (--data FILE | --data-ids FILE) [--adapter DIR[:NAME[:WEIGHT]]]...\n"
            "                   [--text-field NAME] [--pooling mean|cls|last] [--normalize | --no-normalize]\n"
            "                   [--max-seq-length N] [--batch-size N] [--out FILE.npy|FILE.safetensors]\n\n"
            "One embedding per input line (FEATURE_EXTRACTION), as sentence-transformers' encode() makes it.\n\n"
            "  --model DIR          Hugging Face model directory (a sentence-transformers one sets the defaults)\n"
            "  --data FILE          UTF-8 text, one input per line (\"-\": standard input)\n"
            "  --text-field NAME    the lines are JSON objects; embed their field NAME\n"
            "  --data-ids FILE      whitespace-separated token ids, one input per line, used as they are\n"
            "  --adapter SPEC       a PEFT adapter directory, repeatable: DIR[:NAME[:WEIGHT]]\n"
            "  --pooling MODE       mean over the real tokens, cls (the first token) or last (the last real one);\n"
            "                       default: 1_Pooling/config.json, else mean\n"
            "  --normalize          divide each embedding by its L2 norm (default: when modules.json has Normalize)\n"
            "  --no-normalize       do not\n"
            "  --max-seq-length N   tokens per input, special tokens included (default: sentence_bert_config.json,\n"
            "                       else the model's positions, at most 512)\n"
            "  --batch-size N       inputs per forward pass (default 32)\n"
            "  --out FILE           write an (N, hidden) f32 matrix to FILE.npy or FILE.safetensors instead of\n"
            "                       JSON lines {\"index\": i, \"embedding\": [...]} on stdout\n");
}

/* ---- the inputs -------------------------------------------------------------------------------- */

typedef struct {
    int64_t **ids;  /* per input, its tokens */
    int64_t *len;
    int64_t n, cap;
    int64_t truncated;
} inputs;

static void inputs_free(inputs *in) {
    for (int64_t i = 0; i < in->n; i++) cp_free(in->ids[i]);
    cp_free(in->ids);
    cp_free(in->len);
}

static cp_status inputs_add(inputs *in, int64_t *ids, int64_t len) {
    if (in->n == in->cap) {
        int64_t cap = in->cap ? 2 * in->cap : 64;
        int64_t **a = cp_realloc(in->ids, (size_t)cap * sizeof *a, "the inputs");
        if (a) in->ids = a;
        int64_t *l = a ? cp_realloc(in->len, (size_t)cap * sizeof *l, "the inputs") : NULL;
        if (!a || !l) { cp_free(ids); return CP_ERR; }
        in->len = l;
        in->cap = cap;
    }
    in->ids[in->n] = ids;
    in->len[in->n++] = len;
    return CP_OK;
}

/* The tokens of one text: the encoding's leading special tokens, the content cut so that the whole
 * fits in max_len, the trailing special tokens (what tokenizer(truncation=True) keeps). */
static cp_status encode_line(const cp_tokenizer *tok, const char *text, size_t n, int64_t max_len, int64_t vocab,
                             const char *where, inputs *in) {
    cp_encoding enc;
    memset(&enc, 0, sizeof enc);
    if (cp_tokenizer_encode(tok, text, n, 1, &enc) != CP_OK) { cp_encoding_free(&enc); return cp_error_context("%s", where); }
    size_t head = 0, tail = 0;
    while (head < enc.n && enc.special_mask[head]) head++;
    while (tail < enc.n - head && enc.special_mask[enc.n - 1 - tail]) tail++;
    size_t keep = enc.n;
    if ((int64_t)enc.n > max_len) {
        if ((int64_t)(head + tail) >= max_len) {
            cp_encoding_free(&enc);
            return cp_error("%s: --max-seq-length %lld leaves no room beside the %zu special tokens", where,
                            (long long)max_len, head + tail);
        }
        keep = (size_t)max_len;
        in->truncated++;
    }
    if (enc.n == 0) { cp_encoding_free(&enc); return cp_error("%s: the text gives no tokens", where); }
    int64_t *ids = cp_malloc(keep * sizeof *ids, "token ids");
    if (!ids) { cp_encoding_free(&enc); return CP_ERR; }
    const size_t content = keep - head - tail;
    size_t k = 0;
    for (size_t i = 0; i < head + content; i++) ids[k++] = enc.ids[i];
    for (size_t i = enc.n - tail; i < enc.n; i++) ids[k++] = enc.ids[i];
    cp_encoding_free(&enc);
    for (size_t i = 0; i < keep; i++)
        if (ids[i] < 0 || ids[i] >= vocab) {
            cp_free(ids);
            return cp_error("%s: the tokenizer gave id %lld, outside the model's vocabulary of %lld", where,
                            (long long)ids[i], (long long)vocab);
        }
    return inputs_add(in, ids, (int64_t)keep);
}

/* One line of --data-ids: whitespace-separated ids. */
static cp_status parse_ids_line(const char *s, size_t n, int64_t max_len, int64_t vocab, const char *where, inputs *in) {
    int64_t cap = 16, len = 0;
    int64_t *ids = cp_malloc((size_t)cap * sizeof *ids, "token ids");
    if (!ids) return CP_ERR;
    size_t i = 0;
    while (i < n) {
        while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
        if (i == n) break;
        char tok[32];
        size_t k = 0;
        while (i < n && s[i] != ' ' && s[i] != '\t') { if (k + 1 < sizeof tok) tok[k] = s[i]; k++; i++; }
        tok[k < sizeof tok ? k : sizeof tok - 1] = '\0';
        char *end;
        errno = 0;
        long long v = strtoll(tok, &end, 10);
        if (k >= sizeof tok || errno || *end || v < 0 || v >= vocab) {
            cp_free(ids);
            return cp_error("%s: \"%s\" is not a token id in [0, %lld)", where, tok, (long long)vocab);
        }
        if (len == cap) {
            int64_t *g = cp_realloc(ids, (size_t)(cap *= 2) * sizeof *ids, "token ids");
            if (!g) { cp_free(ids); return CP_ERR; }
            ids = g;
        }
        ids[len++] = v;
    }
    if (len == 0) { cp_free(ids); return cp_error("%s: no token ids", where); }
    if (len > max_len) { len = max_len; in->truncated++; }
    return inputs_add(in, ids, len);
}

/* Reads every line of path (or stdin for "-") into inputs. */
static cp_status read_inputs(const char *path, int as_ids, const char *text_field, const cp_tokenizer *tok,
                             int64_t max_len, int64_t vocab, inputs *in) {
    char *data = NULL;
    size_t size = 0;
    if (!strcmp(path, "-")) {
        size_t cap = 1 << 16;
        data = cp_malloc(cap, "standard input");
        size_t got;
        while (data && (got = fread(data + size, 1, cap - size, stdin)) > 0) {
            size += got;
            if (size == cap) { char *g = cp_realloc(data, cap *= 2, "standard input"); if (!g) { cp_free(data); data = NULL; } else data = g; }
        }
        if (!data) return CP_ERR;
    } else if (cp_read_file(path, &data, &size) != CP_OK) {
        return CP_ERR;
    }
    cp_status st = CP_OK;
    size_t pos = 0;
    int64_t line = 0;
    while (st == CP_OK && pos < size) {
        const char *s = data + pos, *nl = memchr(s, '\n', size - pos);
        size_t n = nl ? (size_t)(nl - s) : size - pos;
        pos += n + (nl ? 1 : 0);
        line++;
        if (n && s[n - 1] == '\r') n--;
        char where[600];
        snprintf(where, sizeof where, "%s:%lld", path, (long long)line);
        if (as_ids) { st = parse_ids_line(s, n, max_len, vocab, where, in); continue; }
        if (!text_field) { st = encode_line(tok, s, n, max_len, vocab, where, in); continue; }
        cJSON *obj = cJSON_ParseWithLength(s, n);
        const cJSON *f = obj ? cJSON_GetObjectItemCaseSensitive(obj, text_field) : NULL;
        if (!obj || !cJSON_IsObject(obj)) st = cp_error("%s: not a JSON object", where);
        else if (!cJSON_IsString(f)) st = cp_error("%s: no string field \"%s\"", where, text_field);
        else st = encode_line(tok, f->valuestring, strlen(f->valuestring), max_len, vocab, where, in);
        cJSON_Delete(obj);
    }
    cp_free(data);
    if (st == CP_OK && in->n == 0) st = cp_error("%s: no input lines", path);
    return st;
}

/* ---- sentence-transformers defaults ---------------------------------------------------------------- */

typedef struct { int has_pooling, normalize; cp_embed_pooling pooling; int64_t max_seq_length; } st_defaults;

static cJSON *read_json_in(const char *dir, const char *name) {
    char *path = cp_path_join(dir, name);
    cJSON *root = NULL;
    if (path && cp_path_exists(path) && cp_json_read_file(path, &root) != CP_OK) root = NULL;
    cp_free(path);
    return root;
}

static st_defaults sentence_transformers_defaults(const char *dir) {
    st_defaults d = {0, 0, CP_EMBED_MEAN, 0};
    cJSON *pool = read_json_in(dir, "1_Pooling/config.json");
    if (pool) {
        d.has_pooling = 1;
        if (cJSON_IsTrue(cJSON_GetObjectItem(pool, "pooling_mode_cls_token"))) d.pooling = CP_EMBED_CLS;
        else if (cJSON_IsTrue(cJSON_GetObjectItem(pool, "pooling_mode_lasttoken"))) d.pooling = CP_EMBED_LAST;
        cJSON_Delete(pool);
    }
    cJSON *mods = read_json_in(dir, "modules.json");
    const cJSON *m;
    cJSON_ArrayForEach(m, mods) {
        const cJSON *type = cJSON_GetObjectItem(m, "type");
        if (cJSON_IsString(type) && strstr(type->valuestring, "Normalize")) d.normalize = 1;
    }
    cJSON_Delete(mods);
    cJSON *sb = read_json_in(dir, "sentence_bert_config.json");
    const cJSON *len = sb ? cJSON_GetObjectItem(sb, "max_seq_length") : NULL;
    if (cJSON_IsNumber(len) && len->valuedouble >= 1 && len->valuedouble <= 1 << 20) d.max_seq_length = (int64_t)len->valuedouble;
    cJSON_Delete(sb);
    return d;
}

/* ---- output ------------------------------------------------------------------------------------ */

static int has_suffix(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* NumPy's .npy, version 1.0: magic, header length, a Python dict literal padded to 64 bytes. */
static cp_status write_npy(const char *path, const float *x, int64_t n, int64_t C) {
    char header[128];
    int len = snprintf(header, sizeof header, "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld), }",
                       (long long)n, (long long)C);
    const int total = 10 + len + 1, pad = (64 - total % 64) % 64;
    char *tmp = cp_malloc(strlen(path) + 16, "a path");
    if (!tmp) return CP_ERR;
    sprintf(tmp, "%s.partial", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) { cp_status st = cp_error("%s: cannot create: %s", tmp, strerror(errno)); cp_free(tmp); return st; }
    const unsigned short hlen = (unsigned short)(len + pad + 1);
    int ok = fwrite("\x93NUMPY\x01\x00", 1, 8, f) == 8;
    ok = ok && fputc(hlen & 0xff, f) != EOF && fputc(hlen >> 8, f) != EOF;
    ok = ok && fwrite(header, 1, (size_t)len, f) == (size_t)len;
    for (int i = 0; ok && i < pad; i++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    ok = ok && fwrite(x, sizeof *x, (size_t)(n * C), f) == (size_t)(n * C); /* little-endian hosts only */
    ok = (fclose(f) == 0) && ok;
    cp_status st = ok ? CP_OK : cp_error("%s: write failed: %s", tmp, strerror(errno));
    if (st == CP_OK && rename(tmp, path) != 0) st = cp_error("%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    if (st != CP_OK) remove(tmp);
    cp_free(tmp);
    return st;
}

static cp_status write_output(const char *out, const float *x, int64_t n, int64_t C) {
    if (!out) {
        for (int64_t i = 0; i < n; i++) {
            printf("{\"index\": %lld, \"embedding\": [", (long long)i);
            for (int64_t c = 0; c < C; c++) printf("%s%.9g", c ? ", " : "", (double)x[i * C + c]);
            printf("]}\n");
        }
        return fflush(stdout) == 0 ? CP_OK : cp_error("standard output: write failed");
    }
    if (has_suffix(out, ".npy")) return write_npy(out, x, n, C);
    if (has_suffix(out, ".safetensors")) {
        cp_st_write_tensor t = {.name = "embeddings", .dtype = CP_F32, .ndim = 2, .data = x};
        t.shape[0] = n;
        t.shape[1] = C;
        const char *k[1] = {"format"}, *v[1] = {"np"};
        return cp_st_write(out, &t, 1, k, v, 1);
    }
    return cp_error("--out %s: the name must end in .npy or .safetensors", out);
}

/* ---- the command --------------------------------------------------------------------------------- */

/* Embeds every input, batch by batch (right-padded to the longest of each batch), into x (n, C). */
static cp_status embed_all(cp_model *m, const inputs *in, int64_t batch_size, int64_t pad_id, cp_embed_pooling pooling,
                           int normalize, float *x) {
    const int64_t C = cp_model_hidden_size(m);
    cp_status st = CP_OK;
    for (int64_t i0 = 0; st == CP_OK && i0 < in->n; i0 += batch_size) {
        const int64_t B = in->n - i0 < batch_size ? in->n - i0 : batch_size;
        int64_t T = 1;
        for (int64_t b = 0; b < B; b++) T = in->len[i0 + b] > T ? in->len[i0 + b] : T;
        int64_t *ids = cp_malloc((size_t)(B * T) * sizeof *ids, "a batch"), *mask = cp_malloc((size_t)(B * T) * sizeof *mask, "a batch");
        if (!ids || !mask) st = CP_ERR;
        for (int64_t b = 0; st == CP_OK && b < B; b++)
            for (int64_t t = 0; t < T; t++) {
                const int real = t < in->len[i0 + b];
                ids[b * T + t] = real ? in->ids[i0 + b][t] : pad_id;
                mask[b * T + t] = real;
            }
        cp_batch batch = {.B = B, .T = T, .input_ids = ids, .attention_mask = mask};
        if (st == CP_OK) st = cp_model_embed(m, &batch, pooling, normalize, x + i0 * C);
        cp_free(ids);
        cp_free(mask);
    }
    return st;
}

int cmd_embed(int argc, char **argv) {
    const char *model_dir = NULL, *data = NULL, *data_ids = NULL, *text_field = NULL, *pooling_name = NULL, *out = NULL;
    int normalize_flag = 0, no_normalize = 0, n_adapters = 0;
    int64_t max_len = 0, batch_size = 32;
    char *adapters[64];
    static const char *const poolings[] = {"mean", "cls", "last", NULL};
    const cp_opt options[] = {
        {CP_STRING("--model", &model_dir)},
        {CP_STRING("--data", &data)},
        {CP_STRING("--data-ids", &data_ids)},
        {CP_STRING("--text-field", &text_field)},
        {CLI_ADAPTER_OPTION(adapters, &n_adapters)},
        {CP_STRING("--pooling", &pooling_name), .choices = poolings},
        {CP_FLAG("--normalize", &normalize_flag)},
        {CP_FLAG("--no-normalize", &no_normalize)},
        {CP_INT("--max-seq-length", &max_len, 1, 1 << 20)},
        {CP_INT("--batch-size", &batch_size, 1, 1 << 16)},
        {CP_STRING("--out", &out)},
        {0},
    };
    const cp_args_spec spec = {.cmd = "embed", .opts = options, .help = help, .unknown = "unknown argument %s",
                               .help_after_unknown = 1};
    int r = cp_args_parse(&spec, argc, argv, 1);
    if (r >= 0) return r;
    if (!model_dir || (!data == !data_ids) || (normalize_flag && no_normalize) || (text_field && data_ids)) {
        fprintf(stderr, "cpeft embed: needs --model and exactly one of --data / --data-ids (--text-field only with "
                        "--data; not both --normalize and --no-normalize)\n");
        help(stderr);
        return 2;
    }
    if (out && !has_suffix(out, ".npy") && !has_suffix(out, ".safetensors")) {
        fprintf(stderr, "cpeft embed: --out %s: the name must end in .npy or .safetensors\n", out);
        return 2;
    }
    const st_defaults d = sentence_transformers_defaults(model_dir);
    cp_embed_pooling pooling = d.pooling;
    if (pooling_name) pooling = !strcmp(pooling_name, "cls") ? CP_EMBED_CLS : !strcmp(pooling_name, "last") ? CP_EMBED_LAST : CP_EMBED_MEAN;
    const int normalize = normalize_flag ? 1 : no_normalize ? 0 : d.normalize;

    cp_model *m = cli_load_model("embed", model_dir, CP_LOAD_WEIGHTS, adapters, n_adapters);
    if (!m) return 1;
    const int64_t max_pos = cp_model_max_positions(m);
    if (!max_len) max_len = d.max_seq_length ? d.max_seq_length : max_pos < 512 ? max_pos : 512;
    if (max_len > max_pos) max_len = max_pos;
    cp_tokenizer *tok = NULL;
    inputs in = {0};
    cp_status st = data ? cli_tokenizer_load(&tok, model_dir) : CP_OK;
    int64_t pad_id = 0;
    if (tok) {
        const int32_t pad = cp_tokenizer_special_id(tok, CP_SPECIAL_PAD);
        pad_id = pad >= 0 ? pad : 0; /* padded positions are masked: any id in the vocabulary will do */
    }
    if (st == CP_OK) st = read_inputs(data ? data : data_ids, data_ids != NULL, text_field, tok, max_len, cp_model_vocab_size(m), &in);
    const int64_t C = cp_model_hidden_size(m);
    float *x = st == CP_OK ? cp_malloc((size_t)(in.n * C) * sizeof *x, "the embeddings") : NULL;
    if (st == CP_OK && !x) st = CP_ERR;
    if (st == CP_OK) st = embed_all(m, &in, batch_size, pad_id, pooling, normalize, x);
    if (st == CP_OK && in.truncated)
        fprintf(stderr, "cpeft embed: %lld of %lld inputs truncated to %lld tokens\n", (long long)in.truncated,
                (long long)in.n, (long long)max_len);
    if (st == CP_OK) st = write_output(out, x, in.n, C);
    int rc = 0;
    if (st != CP_OK) {
        fprintf(stderr, "cpeft embed: %s\n", cp_last_error());
        rc = 1;
    } else if (out) {
        fprintf(stderr, "cpeft embed: %lld embeddings of %lld values (%s pooling%s) written to %s\n", (long long)in.n,
                (long long)C, pooling == CP_EMBED_CLS ? "cls" : pooling == CP_EMBED_LAST ? "last" : "mean",
                normalize ? ", L2-normalised" : "", out);
    }
    cp_free(x);
    inputs_free(&in);
    cp_tokenizer_free(tok);
    cp_model_free(m);
    return rc;
}
