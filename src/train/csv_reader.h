/*
 * csv_reader.h — records of a CSV or TSV file, read as Python's csv module reads them.
 *
 * The dialect is csv's default ("excel") with a chosen delimiter (',' or '\t'): quotechar '"',
 * doublequote, no escapechar, no skipinitialspace. A quoted field may hold delimiters, newlines and
 * doubled quotes; a quote inside an unquoted field is a plain character, and characters after a
 * closing quote are kept (csv's non-strict mode: "ab"cd reads abcd). Lines end at \n, \r\n or \r
 * (a file opened with newline=''). Blank lines give no record (csv.DictReader skips them).
 * Unlike csv in non-strict mode, a quoted field still open at the end of the file is an error
 * naming the line where it opened (csv would silently swallow the rest of the file into it).
 *
 * Not here: headers and field names (class_data.c), other dialects, escapechar.
 */
#ifndef CP_TRAIN_CSV_READER_H
#define CP_TRAIN_CSV_READER_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct {
    const char *text;  /* the file's content (not owned) */
    size_t len, pos;
    char delim;
    int64_t line;      /* 1-based line of text[pos] */
    /* the current record: nf fields, field i is buf + start[i] (NUL-terminated), flen[i] bytes */
    char *buf;
    size_t buf_len, buf_cap;
    size_t *start, *flen;
    size_t nf, f_cap;
    int64_t rec_line;  /* line where the current record starts */
} cp_csv_reader;

/* Reads text[0..len) (a UTF-8 BOM at the start is skipped) with delimiter delim. */
void cp_csv_init(cp_csv_reader *r, const char *text, size_t len, char delim);
/* The next non-blank record: 1 when read, 0 at the end of the file, -1 on error (an unterminated
 * quoted field, "PATH:LINE: ..."; path names the file in messages). */
int cp_csv_next(cp_csv_reader *r, const char *path);
/* Field i of the current record (i < r->nf). */
static inline const char *cp_csv_field(const cp_csv_reader *r, size_t i) { return r->buf + r->start[i]; }
void cp_csv_free(cp_csv_reader *r);

#endif
