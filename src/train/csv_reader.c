/*
 * csv_reader.c — Python's csv reader state machine (Modules/_csv.c, parse_process_char) over a buffer,
 * one line at a time; see csv_reader.h for the dialect.
 *
 * The input is cut into lines the way a file opened with newline='' is (\n, \r\n, \r end a line, the
 * terminator stays in the line); each character goes through the state machine and the end of the
 * line is one more event (csv's '\0'). A record ends when a line ends outside a quoted field.
 */
#include "train/csv_reader.h"
#include "core/alloc.h"

#include <string.h>

enum { START_RECORD, START_FIELD, IN_FIELD, IN_QUOTED_FIELD, QUOTE_IN_QUOTED_FIELD, EAT_CRNL };
#define EOL (-1) /* the end-of-line event */

void cp_csv_init(cp_csv_reader *r, const char *text, size_t len, char delim) {
    memset(r, 0, sizeof *r);
    r->text = text;
    r->len = len;
    r->delim = delim;
    r->line = 1;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) r->pos = 3;
}

void cp_csv_free(cp_csv_reader *r) {
    cp_free(r->buf);
    cp_free(r->start);
    cp_free(r->flen);
    memset(r, 0, sizeof *r);
}

static cp_status add_char(cp_csv_reader *r, char c) {
    if (cp_grow(&r->buf, &r->buf_cap, r->buf_len + 2, 1, 256, "a CSV record")) return CP_ERR;
    r->buf[r->buf_len++] = c;
    return CP_OK;
}

/* Ends the current field (it began after the previous field's NUL). */
static cp_status save_field(cp_csv_reader *r, size_t begin) {
    if (cp_grow(&r->start, &r->f_cap, r->nf + 1, sizeof *r->start, 8, "CSV fields")) return CP_ERR;
    if (cp_resize(&r->flen, r->f_cap, sizeof *r->flen, "CSV fields")) return CP_ERR;
    if (add_char(r, '\0')) return CP_ERR;
    r->start[r->nf] = begin;
    r->flen[r->nf] = r->buf_len - 1 - begin;
    r->nf++;
    return CP_OK;
}

int cp_csv_next(cp_csv_reader *r, const char *path) {
    r->nf = 0;
    r->buf_len = 0;
    int state = START_RECORD;
    int64_t quote_line = 0;
    size_t begin = 0; /* where the current field's bytes start in buf */
    while (r->pos < r->len) {
        if (state == START_RECORD) r->rec_line = r->line;
        /* one line: [pos, end) including its terminator */
        size_t end = r->pos;
        while (end < r->len && r->text[end] != '\n' && r->text[end] != '\r') end++;
        if (end < r->len) end += (r->text[end] == '\r' && end + 1 < r->len && r->text[end + 1] == '\n') ? 2 : 1;
        for (size_t i = r->pos; i <= end; i++) {
            int c = i < end ? (unsigned char)r->text[i] : EOL;
            int nl = c == '\n' || c == '\r' || c == EOL;
            switch (state) {
            case START_RECORD:
                if (c == EOL) break;
                if (c == '\n' || c == '\r') { state = EAT_CRNL; break; }
                state = START_FIELD;
                /* fall through */
            case START_FIELD:
                begin = r->buf_len;
                if (nl) {
                    if (save_field(r, begin)) return -1;
                    state = c == EOL ? START_RECORD : EAT_CRNL;
                } else if (c == '"') {
                    state = IN_QUOTED_FIELD;
                    quote_line = r->line;
                } else if (c == r->delim) {
                    if (save_field(r, begin)) return -1;
                } else {
                    if (add_char(r, (char)c)) return -1;
                    state = IN_FIELD;
                }
                break;
            case IN_FIELD:
                if (nl) {
                    if (save_field(r, begin)) return -1;
                    state = c == EOL ? START_RECORD : EAT_CRNL;
                } else if (c == r->delim) {
                    if (save_field(r, begin)) return -1;
                    state = START_FIELD;
                } else if (add_char(r, (char)c)) {
                    return -1;
                }
                break;
            case IN_QUOTED_FIELD:
                if (c == EOL) break;
                if (c == '"') state = QUOTE_IN_QUOTED_FIELD;
                else if (add_char(r, (char)c)) return -1;
                break;
            case QUOTE_IN_QUOTED_FIELD:
                if (c == '"') {
                    if (add_char(r, '"')) return -1;
                    state = IN_QUOTED_FIELD;
                } else if (c == r->delim) {
                    if (save_field(r, begin)) return -1;
                    state = START_FIELD;
                } else if (nl) {
                    if (save_field(r, begin)) return -1;
                    state = c == EOL ? START_RECORD : EAT_CRNL;
                } else {
                    if (add_char(r, (char)c)) return -1;
                    state = IN_FIELD;
                }
                break;
            case EAT_CRNL: /* only line terminators can follow: lines end there */
                if (c == EOL) state = START_RECORD;
                break;
            }
        }
        r->pos = end;
        if (end > 0 && (r->text[end - 1] == '\n' || r->text[end - 1] == '\r')) r->line++;
        if (state == START_RECORD && r->nf > 0) return 1;
    }
    if (state == IN_QUOTED_FIELD) { /* every line's end event closes the other states */
        cp_error("%s:%lld: a quoted field opened here is never closed (the file ends inside it)", path,
                 (long long)quote_line);
        return -1;
    }
    return r->nf > 0 ? 1 : 0;
}
