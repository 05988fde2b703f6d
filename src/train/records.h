/*
 * records.h — what the record-based data readers share (classification data, seq2seq data): the file
 * format told by the name, JSONL walked one object a line, and CSV / TSV tables with a header row (every
 * record as wide as the header; the error for a header that lacks a column).
 *
 * JSONL: one JSON object per non-blank line (lines of only spaces, tabs and CRs are blank; a UTF-8 BOM
 * at the start is skipped); each line is parsed with cp_json_parse (duplicate keys: the last wins, as
 * Python's json does). A line that is not JSON is an error naming the file and line.
 *
 * Not here: CSV / TSV records themselves (csv_reader.h), what the fields mean (class_data.c,
 * token_data.c, seq2seq_data.c), decompression and UTF-8 checks (cp_data_decode_text in data.h).
 */
#ifndef CP_TRAIN_RECORDS_H
#define CP_TRAIN_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/error.h"
#include "train/csv_reader.h"

typedef enum { CP_RECORDS_UNKNOWN, CP_RECORDS_CSV, CP_RECORDS_TSV, CP_RECORDS_JSONL } cp_records_format;

/* The format by extension (.csv, .tsv, .jsonl / .json; case-insensitive; a .gz / .zst / .zstd suffix
 * ignored), or CP_RECORDS_UNKNOWN. */
cp_records_format cp_records_format_of(const char *path);

/* Calls fn(record, line, ctx) for each non-blank line of text[0..len) parsed as JSON (any JSON value:
 * the callback checks it is an object); the tree is freed after the call. Stops at the first error. */
typedef cp_status (*cp_jsonl_fn)(cJSON *record, int64_t line, void *ctx);
cp_status cp_jsonl_each(const char *path, const char *text, size_t len, cp_jsonl_fn fn, void *ctx);

/* A CSV / TSV file with a header row. */
typedef struct {
    cp_csv_reader r;   /* the current record: r.nf == nh fields, cp_csv_field(&r, i), from r.rec_line */
    char **header;     /* [nh] the column names */
    size_t nh;
    const char *path;
} cp_csv_table;

/* Reads the header row of text[0..len); an empty file is an error. Close the table also on error. */
cp_status cp_csv_table_open(cp_csv_table *t, const char *path, const char *text, size_t len, char delim);
/* The next record: 1 when read, 0 at the end, -1 on error (an unterminated quote, or a record whose
 * number of fields is not the header's: "PATH:LINE: the record has 3 fields, the header 2"). */
int cp_csv_table_next(cp_csv_table *t);
void cp_csv_table_close(cp_csv_table *t);

/* The index of column name in header[0..nh), or -1. */
long cp_records_column(char *const *header, size_t nh, const char *name);
/* Sets and returns the error "PATH:LINE: no column "name" in the header (its columns: "a", "b")". */
cp_status cp_records_no_column(const char *path, int64_t line, char *const *header, size_t nh, const char *name);

#endif
