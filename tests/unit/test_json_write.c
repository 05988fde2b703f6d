/*
 * test_json_write.c — core/json_write: the one JSON string escaper. The expected literals are what
 * Python's json.dumps prints for the same text (ensure_ascii=False, which serde_json agrees with,
 * and ensure_ascii=True, PEFT's adapter_config.json).
 */
#include "test.h"

#include <stdlib.h>

#include "core/alloc.h"
#include "core/json_write.h"

static char *literal(const char *s, size_t n, int flags) {
    cp_strbuf sb;
    cp_sb_init(&sb);
    cp_json_write_string(&sb, s, n, flags);
    return cp_sb_finish(&sb);
}

static void check_literal(const char *s, size_t n, int flags, const char *want) {
    char *got = literal(s, n, flags);
    CHECK(got && !strcmp(got, want), "flags %d: got %s, expected %s", flags, got ? got : "(null)", want);
    cp_free(got);
}

TEST(controls_quotes_and_backslashes_as_python_writes_them) {
    /* json.dumps("a\x00\x01\b\t\n\x0b\f\r\x1f\"\\\x7f", ensure_ascii=False) */
    const char s[] = "a\0\x01\b\t\n\x0b\f\r\x1f\"\\\x7f";
    check_literal(s, sizeof s - 1, 0, "\"a\\u0000\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f\\\"\\\\\x7f\"");
    /* ensure_ascii=True escapes DEL too */
    check_literal(s, sizeof s - 1, CP_JSON_ASCII, "\"a\\u0000\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f\\\"\\\\\\u007f\"");
    check_literal("", 0, 0, "\"\"");
}

TEST(non_ascii_verbatim_or_escaped) {
    const char *s = "caf\xC3\xA9 \xE2\x96\x81 \xF0\x9F\x98\x80!"; /* "café ▁ 😀!" */
    check_literal(s, strlen(s), 0, "\"caf\xC3\xA9 \xE2\x96\x81 \xF0\x9F\x98\x80!\"");
    check_literal(s, strlen(s), CP_JSON_ASCII, "\"caf\\u00e9 \\u2581 \\ud83d\\ude00!\"");
    /* bytes that are not UTF-8 stand for the code point of their value */
    check_literal("x\xFFy\xC3", 4, CP_JSON_ASCII, "\"x\\u00ffy\\u00c3\"");
}

TEST(print_string_writes_the_same_literal) {
    FILE *f = tmpfile();
    CHECK(f != NULL, "tmpfile");
    if (!f) return;
    CHECK_OK(cp_json_print_string(f, "a\0\"\n", 4, 0));
    char buf[64] = {0};
    rewind(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    CHECK(n == 13 && !strcmp(buf, "\"a\\u0000\\\"\\n\""), "got %zu bytes: %s", n, buf);
}

int main(void) {
    RUN(controls_quotes_and_backslashes_as_python_writes_them);
    RUN(non_ascii_verbatim_or_escaped);
    RUN(print_string_writes_the_same_literal);
    return test_summary();
}
