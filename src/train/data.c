/*
 * data.c — training data: a file read into tokenized examples, validation splits, epoch shuffles and
 * padded batches; see data.h for the formats.
 *
 * Loading is one pass over the file. The format is chosen by the first non-space byte: '[' is a JSON
 * array, '{' is JSONL, anything else is plain text. JSON records are parsed one at a time with
 * cJSON_ParseWithLengthOpts, whose end pointer gives the start of the next record, so every record
 * knows its line in the file (for "file:line:" messages) and memory stays at one record's tree. A line
 * cursor only moves forward, so counting lines costs O(file) in all.
 *
 * A malformed record goes through bad_record(): with `strict` it is the error; otherwise it is counted,
 * the first message is kept, and one warning at the end names the count and the first. A JSON array
 * whose syntax breaks cannot be resynchronised, so that is an error in either mode; a bad JSONL line
 * only loses that line.
 *
 * Before any of that, the bytes are made text (cp_data_decode_text): gzip and zstd data are decompressed
 * (io/compress.c, by magic number), other compressed, archive and binary formats are refused by name,
 * and what remains must be UTF-8 without NUL bytes, or the error gives the offset and line of the
 * first bad byte — so that a binary file never trains as thousands of garbage "text" examples.
 *
 * Not here: chat templates, packing of several records into one sequence, streaming of files larger
 * than memory.
 */
#include "train/data.h"
#include "core/alloc.h"
#include "core/utf8.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/compress.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "train/records.h"
#include "train/sft_records.h"

#define IGNORE_INDEX (-100) /* label value where no loss is taken (PyTorch's CrossEntropyLoss default) */

/* ---- the loader -------------------------------------------------------------------------------- */

typedef struct {
    cp_dataset *ds;
    const cp_tokenizer *tok;
    const char *path;
    const char *text_field;
    int64_t max_len;
    int strict;
    cp_data_format kind;   /* record kind: CP_DATA_AUTO until the first object decides it */
    int32_t eos;
    size_t cap;            /* capacity of ds->examples */
    char first_bad[1024];  /* the first malformed-record message */
    cp_encoding enc, enc2; /* reused across records */
    int32_t *scratch;      /* ids of the record being built */
    size_t scratch_cap;
    char *prompt;          /* the rendered Alpaca prompt */
    size_t prompt_cap;
    cp_sft_builder sft;    /* TRL's prompt-completion and conversational records */
    /* line cursor: `line` is the 1-based line of text[pos] */
    const char *text;
    size_t pos;
    int64_t line;
} loader;

/* The 1-based line of text[p]; p must not be before the last position asked about. */
static int64_t line_at(loader *L, size_t p) {
    assert(p >= L->pos);
    const char *s = L->text + L->pos, *end = L->text + p;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        if (!nl) break;
        L->line++;
        s = nl + 1;
    }
    L->pos = p;
    return L->line;
}

/* Reports a malformed record "PATH:LINE: what". Returns CP_ERR (the error) with `strict`, else
 * counts it and returns CP_OK so the caller moves on. */
__attribute__((format(printf, 3, 4)))
static cp_status bad_record(loader *L, int64_t line, const char *fmt, ...) {
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s:%lld: %s", L->path, (long long)line, what);
    if (L->strict) return cp_error("%s", msg);
    if (L->ds->n_skipped++ == 0) snprintf(L->first_bad, sizeof L->first_bad, "%s", msg);
    return CP_OK;
}

static cp_status grow_scratch(loader *L, int64_t need) {
    return cp_grow(&L->scratch, &L->scratch_cap, (size_t)need, sizeof *L->scratch, 256, "token ids");
}

/* Appends one example: ids[0..n) truncated to max_len (TRL's truncation_mode keep_start), labels
 * the ids where loss[t] (loss NULL: from n_prompt on) and IGNORE_INDEX elsewhere. A record left
 * without any label is malformed. */
static cp_status push_masked(loader *L, const int32_t *ids, const uint8_t *loss, int64_t n, int64_t n_prompt,
                             int64_t line) {
    cp_dataset *ds = L->ds;
    int64_t len = n < L->max_len ? n : L->max_len;
    int64_t kept_prompt = n_prompt < len ? n_prompt : len, n_loss = len - kept_prompt;
    if (loss) {
        n_loss = 0;
        for (int64_t t = 0; t < len; t++) n_loss += loss[t] != 0;
    }
    if (n_loss <= 0 && loss)
        return bad_record(L, line, "no tokens with loss%s", n > len ? " left after truncating to --max-seq-length" : "");
    if (n_loss <= 0)
        return bad_record(L, line, "no response tokens left after truncating to %lld tokens (the prompt has %lld)",
                          (long long)L->max_len, (long long)n_prompt);
    if (cp_grow(&ds->examples, &L->cap, (size_t)ds->n + 1, sizeof *ds->examples, 64, "the examples")) return CP_ERR;
    cp_example ex = {.len = len, .line = line};
    ex.ids = cp_malloc((size_t)len * sizeof *ex.ids, "token ids");
    ex.labels = ex.ids ? cp_malloc((size_t)len * sizeof *ex.labels, "labels") : NULL;
    if (!ex.labels) { cp_free(ex.ids); return CP_ERR; }
    for (int64_t t = 0; t < len; t++) {
        ex.ids[t] = ids[t];
        ex.labels[t] = (loss ? !loss[t] : t < kept_prompt) ? IGNORE_INDEX : ids[t];
    }
    ds->examples[ds->n++] = ex;
    ds->n_tokens += len;
    ds->n_target_tokens += n_loss;
    if (n > len) ds->n_truncated++;
    return CP_OK;
}

static cp_status push_example(loader *L, const int32_t *ids, int64_t n, int64_t n_prompt, int64_t line) {
    return push_masked(L, ids, NULL, n, n_prompt, line);
}

/* ---- plain text -------------------------------------------------------------------------------- */

/* The whole file as one token stream, cut into blocks of max_len (the last partial block kept when it
 * has at least two tokens, the least that gives a loss after the shift). */
static cp_status load_stream(loader *L, const char *text, size_t len) {
    if (cp_tokenizer_encode(L->tok, text, len, 1, &L->enc) != CP_OK)
        return cp_error_context("%s: tokenizing the text", L->path);
    const int32_t *ids = L->enc.ids;
    int64_t n = (int64_t)L->enc.n;
    for (int64_t off = 0; n - off >= 2; off += L->max_len) {
        int64_t blk = n - off < L->max_len ? n - off : L->max_len;
        if (push_example(L, ids + off, blk, 0, 0) != CP_OK) return CP_ERR;
    }
    if (L->ds->n == 0)
        return cp_error("%s: no examples (the text gives %zu token%s; a block needs at least 2)", L->path,
                        L->enc.n, L->enc.n == 1 ? "" : "s");
    return CP_OK;
}

/* ---- JSON records ------------------------------------------------------------------------------- */

/* A string field: *out = its value; "" when absent or null and !required. Returns 0 when the record
 * is malformed (message already reported through bad_record, whose status is in *st). */
static int get_string_field(loader *L, const cJSON *rec, const char *key, int required, int64_t line,
                            const char **out, cp_status *st) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, key);
    *out = "";
    if (!v || cJSON_IsNull(v)) {
        if (!required) return 1;
        *st = bad_record(L, line, "missing field \"%s\"", key);
        return 0;
    }
    if (!cJSON_IsString(v) || !v->valuestring) {
        *st = bad_record(L, line, "field \"%s\" is %s, expected a string", key, cp_json_type_name(v));
        return 0;
    }
    *out = v->valuestring;
    return 1;
}

/* Fills L->prompt with `tmpl` where each "%s" is replaced, in order, by args[i] (the user text is
 * copied, never read as a format). */
static cp_status render_prompt(loader *L, const char *tmpl, const char *const *args, int nargs) {
    size_t need = strlen(tmpl) + 1;
    for (int i = 0; i < nargs; i++) need += strlen(args[i]);
    if (need > L->prompt_cap) {
        char *p = cp_realloc(L->prompt, need, "the prompt");
        if (!p) return CP_ERR;
        L->prompt = p;
        L->prompt_cap = need;
    }
    char *w = L->prompt;
    int a = 0;
    for (const char *s = tmpl; *s; s++) {
        if (s[0] == '%' && s[1] == 's' && a < nargs) {
            size_t n = strlen(args[a]);
            memcpy(w, args[a++], n);
            w += n;
            s++;
        } else {
            *w++ = *s;
        }
    }
    *w = '\0';
    return CP_OK;
}

/* JSON text record: tok(text) with special tokens, eos appended unless it is already last. */
static cp_status text_record(loader *L, const cJSON *rec, int64_t line) {
    const char *text;
    cp_status st = CP_OK;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, L->text_field);
    if (!v || cJSON_IsNull(v))
        return bad_record(L, line, "missing field \"%s\" (records need \"%s\", or \"instruction\" and \"output\")",
                          L->text_field, L->text_field);
    if (!get_string_field(L, rec, L->text_field, 1, line, &text, &st)) return st;
    size_t n = strlen(text);
    if (n == 0) return bad_record(L, line, "field \"%s\" is empty", L->text_field);
    if (cp_tokenizer_encode(L->tok, text, n, 1, &L->enc) != CP_OK)
        return bad_record(L, line, "cannot tokenize field \"%s\": %s", L->text_field, cp_last_error());
    int64_t m = (int64_t)L->enc.n;
    if (m == 0) return bad_record(L, line, "field \"%s\" gives no tokens", L->text_field);
    if (grow_scratch(L, m + 1) != CP_OK) return CP_ERR;
    memcpy(L->scratch, L->enc.ids, (size_t)m * sizeof *L->scratch);
    if (L->scratch[m - 1] != L->eos) L->scratch[m++] = L->eos;
    return push_example(L, L->scratch, m, 0, line);
}

/* Instruction record: tok(prompt) ++ tok(output) ++ [eos], loss on the output and eos only. */
static cp_status instruction_record(loader *L, const cJSON *rec, int64_t line) {
    const char *instruction, *input, *output;
    cp_status st = CP_OK;
    if (!get_string_field(L, rec, "instruction", 1, line, &instruction, &st) ||
        !get_string_field(L, rec, "input", 0, line, &input, &st) ||
        !get_string_field(L, rec, "output", 1, line, &output, &st))
        return st;
    const char *args[2] = {instruction, input};
    cp_status r = input[0] ? render_prompt(L, CP_ALPACA_PROMPT_INPUT, args, 2)
                           : render_prompt(L, CP_ALPACA_PROMPT_NO_INPUT, args, 1);
    if (r != CP_OK) return CP_ERR;
    if (cp_tokenizer_encode(L->tok, L->prompt, strlen(L->prompt), 1, &L->enc) != CP_OK)
        return bad_record(L, line, "cannot tokenize the prompt: %s", cp_last_error());
    if (cp_tokenizer_encode(L->tok, output, strlen(output), 0, &L->enc2) != CP_OK)
        return bad_record(L, line, "cannot tokenize field \"output\": %s", cp_last_error());
    int64_t np = (int64_t)L->enc.n, no = (int64_t)L->enc2.n;
    /* a tokenizer that appends eos itself (add_eos_token) would put one between prompt and response */
    if (np > 0 && L->enc.ids[np - 1] == L->eos && L->enc.special_mask && L->enc.special_mask[np - 1]) np--;
    if (grow_scratch(L, np + no + 1) != CP_OK) return CP_ERR;
    memcpy(L->scratch, L->enc.ids, (size_t)np * sizeof *L->scratch);
    memcpy(L->scratch + np, L->enc2.ids, (size_t)no * sizeof *L->scratch);
    L->scratch[np + no] = L->eos;
    return push_example(L, L->scratch, np + no + 1, np, line);
}

/* A TRL prompt-completion or conversational record (sft_records.c). */
static cp_status sft_record(loader *L, const cJSON *rec, int64_t line) {
    char msg[768];
    int r = cp_sft_build(&L->sft, L->kind, rec, msg, sizeof msg);
    if (r < 0) return cp_error_context("%s:%lld", L->path, (long long)line);
    if (r == 0) return bad_record(L, line, "%s", msg);
    return push_masked(L, L->sft.ids, L->sft.loss, (int64_t)L->sft.n, 0, line);
}

static cp_status json_record(loader *L, cJSON *rec, int64_t line) {
    if (cp_json_keep_last(rec) != CP_OK) return CP_ERR; /* a repeated key keeps its last value, as in Python */
    if (!cJSON_IsObject(rec))
        return bad_record(L, line, "record is %s, expected a JSON object", cp_json_type_name(rec));
    if (L->kind == CP_DATA_AUTO) {
        cp_data_format k = cp_sft_detect(rec);
        if (k != CP_DATA_AUTO) L->kind = k;
    }
    if (L->kind >= CP_DATA_PROMPT_COMPLETION) return sft_record(L, rec, line);
    if (L->kind == CP_DATA_AUTO) {
        /* the first valid record decides; an invalid one is reported by the reader it resembles */
        const cJSON *ins = cJSON_GetObjectItemCaseSensitive(rec, "instruction");
        const cJSON *out = cJSON_GetObjectItemCaseSensitive(rec, "output");
        const cJSON *txt = cJSON_GetObjectItemCaseSensitive(rec, L->text_field);
        if (cJSON_IsString(ins) && cJSON_IsString(out)) L->kind = CP_DATA_INSTRUCTION;
        else if (cJSON_IsString(txt)) L->kind = CP_DATA_JSON_TEXT;
        else return ins && !txt ? instruction_record(L, rec, line) : text_record(L, rec, line);
    }
    return L->kind == CP_DATA_INSTRUCTION ? instruction_record(L, rec, line) : text_record(L, rec, line);
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

static size_t skip_space(const char *text, size_t len, size_t p) {
    while (p < len && is_space(text[p])) p++;
    return p;
}

/* A JSON array of records, each parsed on its own so that its line is known. */
static cp_status load_json_array(loader *L, const char *text, size_t len, size_t open) {
    size_t p = skip_space(text, len, open + 1);
    if (p < len && text[p] == ']') {
        p = skip_space(text, len, p + 1);
        if (p < len) return cp_error("%s:%lld: extra data after the JSON array", L->path, (long long)line_at(L, p));
        return cp_error("%s: no examples (the JSON array is empty)", L->path);
    }
    for (;;) {
        int64_t line = line_at(L, p);
        const char *end = NULL;
        cJSON *rec = p < len ? cJSON_ParseWithLengthOpts(text + p, len - p, &end, 0) : NULL;
        if (!rec) {
            size_t at = end && end >= text + p && end <= text + len ? (size_t)(end - text) : p;
            int64_t eline = line_at(L, at);
            size_t bol = at;
            while (bol > 0 && text[bol - 1] != '\n') bol--;
            if (at >= len) return cp_error("%s:%lld: the JSON array ends early (missing ']')", L->path, (long long)eline);
            return cp_error("%s:%lld: invalid JSON at column %zu (a JSON array cannot be read past a syntax error)",
                            L->path, (long long)eline, at - bol + 1);
        }
        cp_status st = json_record(L, rec, line);
        cJSON_Delete(rec);
        if (st != CP_OK) return CP_ERR;
        p = skip_space(text, len, (size_t)(end - text));
        if (p < len && text[p] == ',') { p = skip_space(text, len, p + 1); continue; }
        if (p < len && text[p] == ']') break;
        if (p >= len) return cp_error("%s:%lld: the JSON array ends early (missing ']')", L->path, (long long)line_at(L, p));
        return cp_error("%s:%lld: expected ',' or ']' between records of the JSON array", L->path,
                        (long long)line_at(L, p));
    }
    p = skip_space(text, len, p + 1);
    if (p < len) return cp_error("%s:%lld: extra data after the JSON array", L->path, (long long)line_at(L, p));
    return CP_OK;
}

/* JSONL: one record per non-blank line; a line that does not parse is one malformed record. */
static cp_status load_jsonl(loader *L, const char *text, size_t len) {
    int64_t line = 1;
    for (size_t p = 0; p < len; line++) {
        const char *nl = memchr(text + p, '\n', len - p);
        size_t eol = nl ? (size_t)(nl - text) : len;
        size_t q = skip_space(text, eol, p);
        if (q < eol) {
            const char *end = NULL;
            cJSON *rec = cJSON_ParseWithLengthOpts(text + p, eol - p, &end, 0);
            size_t at = end && end >= text + p && end <= text + eol ? (size_t)(end - text) : p;
            cp_status st;
            if (!rec) {
                st = bad_record(L, line, "invalid JSON at column %zu", at - p + 1);
            } else if (skip_space(text, eol, at) < eol) {
                st = bad_record(L, line, "extra data after the JSON value at column %zu",
                                skip_space(text, eol, at) - p + 1);
            } else {
                st = json_record(L, rec, line);
            }
            cJSON_Delete(rec);
            if (st != CP_OK) return CP_ERR;
        }
        p = eol + 1;
    }
    return CP_OK;
}

/* ---- CSV / TSV ------------------------------------------------------------------------------------ */

/* A table with a header row: each row becomes a JSON object of string fields and goes through
 * json_record; the header decides the kind. */
static cp_status load_table(loader *L, const char *text, size_t len, char delim) {
    cp_csv_table t;
    cp_status st = cp_csv_table_open(&t, L->path, text, len, delim);
    const char *need = NULL;
    if (st == CP_OK) {
        int has_p = cp_records_column(t.header, t.nh, "prompt") >= 0, has_c = cp_records_column(t.header, t.nh, "completion") >= 0;
        if (L->kind == CP_DATA_AUTO) {
            if (has_p || has_c) { L->kind = CP_DATA_PROMPT_COMPLETION; need = has_p ? "completion" : "prompt"; }
            else if (cp_records_column(t.header, t.nh, "instruction") >= 0) { L->kind = CP_DATA_INSTRUCTION; need = "output"; }
            else if (cp_records_column(t.header, t.nh, "messages") >= 0)
                st = cp_error("%s:1: a \"messages\" column: conversations need JSON (a JSONL file or a JSON array); a CSV "
                              "cell holds a string", L->path);
            else { L->kind = CP_DATA_JSON_TEXT; need = L->text_field; }
        } else {
            need = L->kind == CP_DATA_INSTRUCTION ? "instruction" : L->kind == CP_DATA_PROMPT_COMPLETION ? "prompt" : L->text_field;
        }
    }
    if (st == CP_OK && need && cp_records_column(t.header, t.nh, need) < 0)
        st = cp_records_no_column(L->path, 1, t.header, t.nh, need);
    if (st == CP_OK && L->kind >= CP_DATA_MESSAGES)
        st = cp_error("%s: conversational records need JSON (a JSONL file or a JSON array)", L->path);
    int got;
    while (st == CP_OK && (got = cp_csv_table_next(&t)) != 0) {
        if (got < 0) { st = CP_ERR; break; }
        cJSON *rec = cJSON_CreateObject();
        for (size_t i = 0; rec && i < t.nh; i++)
            if (!cJSON_AddStringToObject(rec, t.header[i], cp_csv_field(&t.r, i))) { cJSON_Delete(rec); rec = NULL; }
        st = rec ? json_record(L, rec, t.r.rec_line) : cp_error("out of memory");
        cJSON_Delete(rec);
    }
    cp_csv_table_close(&t);
    return st;
}

/* ---- the public entry points -------------------------------------------------------------------- */

static cp_status load_text(loader *L, const cp_data_options *opt, const char *text, size_t len) {
    size_t p = 0;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) p = 3; /* UTF-8 byte-order mark */
    p = skip_space(text, len, p);
    cp_records_format table = opt->format != CP_DATA_TEXT ? cp_records_format_of(L->path) : CP_RECORDS_UNKNOWN;
    int json = (opt->format != CP_DATA_AUTO && opt->format != CP_DATA_TEXT) ||
               (opt->format == CP_DATA_AUTO && p < len && (text[p] == '[' || text[p] == '{'));
    if (table == CP_RECORDS_CSV || table == CP_RECORDS_TSV) json = 1;
    if (!json) {
        L->ds->format = CP_DATA_TEXT;
        return load_stream(L, text, len);
    }
    if (opt->format != CP_DATA_AUTO) L->kind = opt->format;
    L->eos = cp_tokenizer_special_id(L->tok, CP_SPECIAL_EOS);
    if (L->eos == CP_TOKEN_NONE)
        return cp_error("%s: JSON records end with the eos token, but the tokenizer has none "
                        "(set \"eos_token\" in tokenizer_config.json)", L->path);
    cp_status st = table == CP_RECORDS_CSV || table == CP_RECORDS_TSV ? load_table(L, text, len, table == CP_RECORDS_CSV ? ',' : '\t')
                   : p < len && text[p] == '[' ? load_json_array(L, text, len, p) : load_jsonl(L, text, len);
    if (st != CP_OK) return CP_ERR;
    L->ds->format = L->kind == CP_DATA_AUTO ? CP_DATA_JSON_TEXT : L->kind;
    if (opt->assistant_only_loss && L->ds->format != CP_DATA_MESSAGES && L->ds->format != CP_DATA_CONV_PROMPT_COMPLETION)
        return cp_error("%s: --assistant-only-loss is for conversational records (\"messages\", or \"prompt\" and "
                        "\"completion\" lists of messages); this file's are not (TRL refuses it too)", L->path);
    if (L->ds->n == 0) {
        if (L->ds->n_skipped)
            return cp_error("%s: no examples (%lld malformed record%s skipped; first: %s)", L->path,
                            (long long)L->ds->n_skipped, L->ds->n_skipped == 1 ? "" : "s", L->first_bad);
        return cp_error("%s: no examples (the file has no records)", L->path);
    }
    if (L->ds->n_skipped)
        cp_warn("skipped %lld malformed record%s; first: %s", (long long)L->ds->n_skipped,
                L->ds->n_skipped == 1 ? "" : "s", L->first_bad);
    return CP_OK;
}

/* ---- bytes to text ---------------------------------------------------------------------------- */

static int64_t line_of(const char *text, size_t off) {
    int64_t line = 1;
    for (const char *s = text, *end = text + off; (s = memchr(s, '\n', (size_t)(end - s))); s++) line++;
    return line;
}

/* Refuses bytes that are not UTF-8 text: a UTF-16/32 byte-order mark, a NUL byte, an invalid UTF-8
 * sequence; `where` says whose offsets they are ("" or " of the decompressed data"). */
static cp_status check_text(const char *path, const char *text, size_t len, const char *where) {
    const unsigned char *u = (const unsigned char *)text;
    if (len >= 2 && ((u[0] == 0xff && u[1] == 0xfe) || (u[0] == 0xfe && u[1] == 0xff)))
        return cp_error("%s: UTF-%s text (it starts with the byte-order mark %02X %02X); cpeft reads UTF-8: convert it "
                        "(iconv -f UTF-16 -t UTF-8)", path, len >= 4 && !u[2] && !u[3] ? "32" : "16", u[0], u[1]);
    const char *nul = memchr(text, '\0', len);
    size_t upto = nul ? (size_t)(nul - text) : len, valid = cp_utf8_valid_prefix(text, upto);
    if (valid < upto)
        return cp_error("%s: not UTF-8 text: byte 0x%02X at offset %zu%s (line %lld) is not valid UTF-8; "
                        "is this a binary file, or text in another encoding (convert it with iconv)?", path, u[valid], valid,
                        where, (long long)line_of(text, valid));
    if (nul)
        return cp_error("%s: binary data, not text: a NUL byte at offset %zu%s (line %lld)", path, upto, where,
                        (long long)line_of(text, upto));
    return CP_OK;
}

/* The file's bytes as text: decompressed into *owned when gzip or zstd, refused when another format
 * the first bytes (or the name) give away, or when not UTF-8. *text points into data or *owned. */
cp_status cp_data_decode_text(const cp_data_options *opt, const char *data, size_t len, char **owned, const char **text,
                              size_t *text_len) {
    *owned = NULL;
    *text = data;
    *text_len = len;
    const cp_file_kind *kind = cp_sniff_format(data, len), *named = cp_format_of_name(opt->path);
    if (named && kind != named) {
        char start[64] = "";
        for (size_t i = 0, w = 0; i < len && i < 4; i++)
            w += (size_t)snprintf(start + w, sizeof start - w, i ? " %02X" : "%02X", (unsigned char)data[i]);
        return cp_error("%s: the name says %s, but the data is %s%s (%s%s)", opt->path, named->name, kind ? "" : "not ",
                        kind ? kind->name : named->name, len ? "it starts with " : "the file is empty", start);
    }
    if (!kind) return check_text(opt->path, data, len, "");
    if (!kind->readable)
        return cp_error("%s: %s, not text; cpeft reads text, JSON and JSONL files, plain or compressed with gzip or zstd%s%s",
                        opt->path, kind->name, kind->hint[0] ? ": " : "", kind->hint);
    if (cp_decompress(opt->path, kind, data, len, opt->max_decompressed, owned, text_len) != CP_OK) return CP_ERR;
    *text = *owned;
    const cp_file_kind *inner = cp_sniff_format(*text, *text_len);
    if (inner)
        return cp_error("%s: %s inside %s, not text; cpeft reads one layer of gzip or zstd around text, JSON or JSONL%s%s",
                        opt->path, inner->name, kind->name, inner->hint[0] ? ": " : "", inner->hint);
    char where[48];
    snprintf(where, sizeof where, " of the decompressed %s data", kind->name);
    return check_text(opt->path, *text, *text_len, where);
}

/* Checks the options and runs the loader over data[0..len) (which need not be NUL-terminated). */
static cp_status load_buffer(cp_dataset *ds, const cp_tokenizer *tok, const cp_data_options *opt, const char *data,
                             size_t len) {
    char *owned;
    const char *text;
    if (cp_data_decode_text(opt, data, len, &owned, &text, &len) != CP_OK) {
        cp_free(owned);
        return CP_ERR;
    }
    loader L = {
        .ds = ds, .tok = tok, .path = opt->path,
        .text_field = opt->text_field && opt->text_field[0] ? opt->text_field : "text",
        .max_len = opt->max_seq_length, .strict = opt->strict, .kind = CP_DATA_AUTO,
        .eos = CP_TOKEN_NONE, .text = text, .pos = 0, .line = 1,
        .sft = {.tok = tok, .tmpl = opt->chat_template, .tmpl_error = opt->chat_template_error,
                .assistant_only_loss = opt->assistant_only_loss, .completion_only_loss = !opt->full_loss},
    };
    cp_status st = load_text(&L, opt, text, len);
    cp_encoding_free(&L.enc);
    cp_encoding_free(&L.enc2);
    cp_free(L.scratch);
    cp_free(L.prompt);
    cp_sft_builder_free(&L.sft);
    cp_free(owned);
    if (st != CP_OK) cp_dataset_free(ds);
    return st;
}

static cp_status check_options(const cp_tokenizer *tok, const cp_data_options *opt) {
    if (!opt || !opt->path) return cp_error("no data file given");
    if (!tok) return cp_error("%s: no tokenizer given to read the data with", opt->path);
    if (opt->max_seq_length < 2)
        return cp_error("%s: max_seq_length must be at least 2, got %lld", opt->path, (long long)opt->max_seq_length);
    if (opt->format < CP_DATA_AUTO || opt->format > CP_DATA_CONV_PROMPT_COMPLETION)
        return cp_error("%s: unknown data format %d", opt->path, (int)opt->format);
    return CP_OK;
}

cp_status cp_dataset_load(cp_dataset *ds, const cp_tokenizer *tok, const cp_data_options *opt) {
    memset(ds, 0, sizeof *ds);
    if (check_options(tok, opt) != CP_OK) return CP_ERR;
    char *text = NULL;
    size_t len = 0;
    if (cp_read_file(opt->path, &text, &len) != CP_OK) return cp_error_context("data file");
    cp_status st = load_buffer(ds, tok, opt, text, len);
    cp_free(text);
    return st;
}

cp_status cp_dataset_load_mem(cp_dataset *ds, const cp_tokenizer *tok, const cp_data_options *opt, const char *data,
                              size_t len) {
    memset(ds, 0, sizeof *ds);
    if (check_options(tok, opt) != CP_OK) return CP_ERR;
    return load_buffer(ds, tok, opt, data ? data : "", data ? len : 0);
}

void cp_dataset_free(cp_dataset *ds) {
    if (!ds) return;
    for (int64_t i = 0; i < ds->n; i++) {
        cp_free(ds->examples[i].ids);
        cp_free(ds->examples[i].labels);
    }
    cp_free(ds->examples);
    memset(ds, 0, sizeof *ds);
}

void cp_dataset_shuffle(int64_t *order, int64_t n, cp_rng *rng) {
    for (int64_t i = 0; i < n; i++) order[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)cp_rng_below(rng, (uint64_t)i + 1);
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

static void recount(cp_dataset *ds) {
    ds->n_tokens = ds->n_target_tokens = 0;
    for (int64_t i = 0; i < ds->n; i++) {
        const cp_example *ex = &ds->examples[i];
        ds->n_tokens += ex->len;
        for (int64_t t = 0; t < ex->len; t++) ds->n_target_tokens += ex->labels[t] != IGNORE_INDEX;
    }
}

cp_status cp_split_examples(void *examples, size_t size, int64_t *n_inout, double fraction, uint64_t seed, void **val,
                            int64_t *n_val) {
    *val = NULL;
    *n_val = 0;
    if (!(fraction > 0.0 && fraction < 1.0))
        return cp_error("validation split must be a fraction between 0 and 1 (exclusive), got %g", fraction);
    const int64_t n = *n_inout;
    int64_t k = (int64_t)llround(fraction * (double)n);
    if (k < 1) k = 1;
    if (k >= n)
        return cp_error("a validation split of %g of %lld example%s leaves no training examples", fraction,
                        (long long)n, n == 1 ? "" : "s");
    int64_t *order = cp_malloc((size_t)n * sizeof *order, "the validation split");
    unsigned char *in_val = order ? cp_calloc((size_t)n, 1, "the validation split") : NULL;
    char *vex = in_val ? cp_malloc((size_t)k * size, "the validation examples") : NULL;
    if (!vex) { cp_free(order); cp_free(in_val); return CP_ERR; }
    cp_rng rng;
    cp_rng_seed(&rng, seed);
    cp_dataset_shuffle(order, n, &rng);
    for (int64_t i = 0; i < k; i++) in_val[order[i]] = 1;
    char *ex = examples;
    int64_t w = 0, v = 0;
    for (int64_t i = 0; i < n; i++) {
        if (in_val[i]) memcpy(vex + (size_t)v++ * size, ex + (size_t)i * size, size);
        else if (w++ < i) memcpy(ex + (size_t)(w - 1) * size, ex + (size_t)i * size, size); /* w <= i */
    }
    assert(v == k && w == n - k);
    cp_free(order);
    cp_free(in_val);
    *n_inout = w;
    *val = vex;
    *n_val = v;
    return CP_OK;
}

cp_status cp_dataset_split(cp_dataset *ds, double fraction, uint64_t seed, cp_dataset *val) {
    memset(val, 0, sizeof *val);
    void *vex;
    if (cp_split_examples(ds->examples, sizeof *ds->examples, &ds->n, fraction, seed, &vex, &val->n) != CP_OK)
        return CP_ERR;
    val->examples = vex;
    val->format = ds->format;
    recount(ds);
    recount(val);
    return CP_OK;
}

cp_status cp_batch_make(const cp_dataset *ds, const int64_t *order, int64_t start, int64_t B, int64_t pad_id,
                        cp_batch_data *out) {
    if (B < 1) return cp_error("batch size must be at least 1, got %lld", (long long)B);
    if (start < 0 || start >= ds->n)
        return cp_error("batch start %lld is outside the dataset (%lld examples)", (long long)start, (long long)ds->n);
    if (pad_id < 0) return cp_error("pad token id %lld is not a token id (is a pad or eos token set?)", (long long)pad_id);
    if (B > ds->n - start) B = ds->n - start;
    int64_t T = 0;
    for (int64_t b = 0; b < B; b++) {
        int64_t i = order ? order[start + b] : start + b;
        if (i < 0 || i >= ds->n)
            return cp_error("batch order entry %lld is %lld, outside the dataset (%lld examples)",
                            (long long)(start + b), (long long)i, (long long)ds->n);
        if (ds->examples[i].len > T) T = ds->examples[i].len;
    }
    if (B * T > out->cap) {
        const size_t cap = (size_t)(B * T);
        if (cp_resize(&out->input_ids, cap, sizeof *out->input_ids, "the batch input_ids") ||
            cp_resize(&out->attention_mask, cap, sizeof *out->attention_mask, "the batch attention_mask") ||
            cp_resize(&out->labels, cap, sizeof *out->labels, "the batch labels"))
            return CP_ERR;
        out->cap = B * T;
    }
    /* input_ids, attention_mask, labels are (B,T) */
    for (int64_t b = 0; b < B; b++) {
        const cp_example *ex = &ds->examples[order ? order[start + b] : start + b];
        int64_t *ids = out->input_ids + b * T, *mask = out->attention_mask + b * T, *lab = out->labels + b * T;
        for (int64_t t = 0; t < T; t++) {
            int real = t < ex->len;
            ids[t] = real ? ex->ids[t] : pad_id;
            mask[t] = real;
            lab[t] = real ? ex->labels[t] : IGNORE_INDEX;
        }
    }
    out->B = B;
    out->T = T;
    return CP_OK;
}

void cp_batch_data_free(cp_batch_data *b) {
    if (!b) return;
    cp_free(b->input_ids);
    cp_free(b->attention_mask);
    cp_free(b->labels);
    memset(b, 0, sizeof *b);
}
