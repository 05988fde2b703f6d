/*
 * json_write.h — JSON string literals, written one way for the whole tree: the CLI's --json output,
 * safetensors headers, the tokenizer.json the GGUF converter builds, and Python-style files
 * (cp_json_dump_python in io/json.c) all escape through here.
 *
 * The escaping is serde_json's and Python's json.dumps's: '"' and '\' backslashed, the control
 * characters \b \f \n \r \t in their short forms, the other bytes below 0x20 as \u00xx (lowercase
 * hex), everything else verbatim — or, with CP_JSON_ASCII (json.dumps's ensure_ascii, PEFT's
 * adapter_config.json), DEL and every non-ASCII character as \uxxxx, a surrogate pair above
 * U+FFFF.
 *
 * Not here: parsing (cJSON, with the checked getters of io/json.h) and whole documents.
 */
#ifndef CP_CORE_JSON_WRITE_H
#define CP_CORE_JSON_WRITE_H

#include <stddef.h>
#include <stdio.h>

#include "core/error.h"
#include "core/strbuf.h"

enum {
    /* Non-ASCII as \uxxxx escapes (Python's ensure_ascii=True); a byte that is not part of valid
     * UTF-8 is written as the code point of the same value. */
    CP_JSON_ASCII = 1,
};

/* Appends the JSON string literal (quotes included) of the n bytes at s, which may hold NUL
 * (written \u0000). flags: 0 or CP_JSON_ASCII. */
void cp_json_write_string(cp_strbuf *sb, const char *s, size_t n, int flags);
/* The same for a NUL-terminated string. */
void cp_json_write_cstring(cp_strbuf *sb, const char *s, int flags);
/* Writes the literal to f. CP_ERR (error set) when memory runs out. */
cp_status cp_json_print_string(FILE *f, const char *s, size_t n, int flags);

#endif
