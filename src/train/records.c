/*
 * records.c — the pieces the record-based data readers share; see records.h.
 */
#include "train/records.h"
#include "core/alloc.h"
#include "io/json.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int ends_with(const char *s, size_t n, const char *suf) {
    size_t m = strlen(suf);
    return n >= m && strncasecmp(s + n - m, suf, m) == 0;
}

cp_records_format cp_records_format_of(const char *path) {
    size_t n = strlen(path);
    if (ends_with(path, n, ".gz")) n -= 3;
    else if (ends_with(path, n, ".zst")) n -= 4;
    else if (ends_with(path, n, ".zstd")) n -= 5;
    if (ends_with(path, n, ".csv")) return CP_RECORDS_CSV;
    if (ends_with(path, n, ".tsv")) return CP_RECORDS_TSV;
    if (ends_with(path, n, ".jsonl") || ends_with(path, n, ".json")) return CP_RECORDS_JSONL;
    return CP_RECORDS_UNKNOWN;
}

cp_status cp_jsonl_each(const char *path, const char *text, size_t len, cp_jsonl_fn fn, void *ctx) {
    int64_t line = 1;
    size_t p = 0;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) p = 3;
    for (; p < len; line++) {
        const char *nl = memchr(text + p, '\n', len - p);
        size_t e = nl ? (size_t)(nl - text) : len, s = p;
        p = e + 1;
        while (s < e && (text[s] == ' ' || text[s] == '\t' || text[s] == '\r')) s++;
        if (s == e) continue;
        cJSON *rec = NULL;
        if (cp_json_parse(text + s, e - s, "", &rec) != CP_OK) {
            cJSON_Delete(rec);
            return cp_error("%s:%" PRId64 ": not a JSON object on one line (JSONL): %s", path, line, cp_last_error());
        }
        cp_status st = fn(rec, line, ctx);
        cJSON_Delete(rec);
        if (st) return CP_ERR;
    }
    return CP_OK;
}

long cp_records_column(char *const *header, size_t nh, const char *name) {
    for (size_t i = 0; i < nh; i++)
        if (!strcmp(header[i], name)) return (long)i;
    return -1;
}

cp_status cp_records_no_column(const char *path, int64_t line, char *const *header, size_t nh, const char *name) {
    char cols[512] = "";
    size_t o = 0;
    for (size_t i = 0; i < nh && o + 1 < sizeof cols; i++) {
        int w = snprintf(cols + o, sizeof cols - o, "%s\"%s\"", i ? ", " : "", header[i]);
        if (w < 0) break;
        o += (size_t)w < sizeof cols - o ? (size_t)w : sizeof cols - o - 1;
    }
    return cp_error("%s:%" PRId64 ": no column \"%s\" in the header (its columns: %s)", path, line, name, cols);
}

cp_status cp_csv_table_open(cp_csv_table *t, const char *path, const char *text, size_t len, char delim) {
    memset(t, 0, sizeof *t);
    t->path = path;
    cp_csv_init(&t->r, text, len, delim);
    int got = cp_csv_next(&t->r, path);
    if (got < 0) return CP_ERR;
    if (got == 0) return cp_error("%s: the file is empty (a header row and records are expected)", path);
    t->header = cp_calloc(t->r.nf, sizeof *t->header, "the header");
    if (!t->header) return CP_ERR;
    t->nh = t->r.nf;
    for (size_t i = 0; i < t->nh; i++)
        if (!(t->header[i] = cp_strdup(cp_csv_field(&t->r, i)))) return CP_ERR;
    return CP_OK;
}

int cp_csv_table_next(cp_csv_table *t) {
    int got = cp_csv_next(&t->r, t->path);
    if (got > 0 && t->r.nf != t->nh) {
        cp_error("%s:%" PRId64 ": the record has %zu field%s, the header %zu%s", t->path, t->r.rec_line, t->r.nf,
                 t->r.nf == 1 ? "" : "s", t->nh, t->r.nf < t->nh ? "" : " (an unquoted delimiter inside a field?)");
        return -1;
    }
    return got;
}

void cp_csv_table_close(cp_csv_table *t) {
    for (size_t i = 0; t->header && i < t->nh; i++) cp_free(t->header[i]);
    cp_free(t->header);
    cp_csv_free(&t->r);
    memset(t, 0, sizeof *t);
}
