/*
 * test_utf8.c — core/utf8: the one UTF-8 module (tokenizer, GGUF and safetensors readers, the data
 * loader and the GGUF converter all validate through it).
 *
 * The validator is compared with a definition written independently here: a byte sequence is one
 * valid character exactly when it is the UTF-8 encoding (shortest form) of a Unicode scalar value.
 * Every 1-, 2- and 3-byte sequence is tried, and every 4-byte one whose last two bytes are at the
 * edges of the continuation range.
 */
#include "test.h"

#include "core/utf8.h"

/* Independent reference: whether b[0..n) is the shortest UTF-8 form of a scalar value. */
static int ref_is_char(const unsigned char *b, size_t n) {
    size_t want = b[0] < 0x80 ? 1 : (b[0] & 0xE0) == 0xC0 ? 2 : (b[0] & 0xF0) == 0xE0 ? 3 : (b[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (want != n) return 0;
    uint32_t c = n == 1 ? b[0] : n == 2 ? b[0] & 0x1Fu : n == 3 ? b[0] & 0x0Fu : b[0] & 0x07u;
    for (size_t i = 1; i < n; i++) {
        if ((b[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (b[i] & 0x3Fu);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    return c >= min[n] && c <= 0x10FFFF && !(c >= 0xD800 && c <= 0xDFFF);
}

TEST(char_len_agrees_with_the_definition) {
    unsigned char b[4];
    long bad = 0, tried = 0;
    for (uint32_t x = 0; x < (1u << 24); x++) { /* every 3-byte sequence, and its 1- and 2-byte prefixes */
        b[0] = (unsigned char)(x >> 16);
        b[1] = (unsigned char)(x >> 8);
        b[2] = (unsigned char)x;
        for (size_t n = 1; n <= 3; n++) {
            if (n < 3 && (x & ((1u << (8 * (3 - n))) - 1))) continue; /* each shorter prefix once */
            size_t want = 0; /* the one length the lead byte allows, when the bytes up to it form a char */
            for (size_t k = 1; k <= n; k++)
                if (ref_is_char(b, k)) want = k;
            bad += cp_utf8_char_len((const char *)b, n) != want;
            tried++;
        }
    }
    static const unsigned char edge[] = {0x00, 0x7F, 0x80, 0xBF, 0xC0, 0xFF};
    for (int l = 0xF0; l <= 0xFF; l++)
        for (int s = 0; s < 256; s++)
            for (size_t i = 0; i < sizeof edge; i++)
                for (size_t j = 0; j < sizeof edge; j++) {
                    b[0] = (unsigned char)l; b[1] = (unsigned char)s; b[2] = edge[i]; b[3] = edge[j];
                    size_t got = cp_utf8_char_len((const char *)b, 4);
                    if (got != (ref_is_char(b, 4) ? 4u : 0u)) bad++;
                    tried++;
                }
    CHECK(bad == 0, "%ld of %ld sequences judged differently from the definition", bad, tried);
}

TEST(encode_decode_round_trip_every_scalar_value) {
    long bad = 0;
    for (uint32_t c = 0; c <= 0x10FFFF; c++) {
        if (c >= 0xD800 && c <= 0xDFFF) continue;
        char s[4];
        size_t n = cp_utf8_encode(c, s), l = 0;
        if (!ref_is_char((const unsigned char *)s, n) || cp_utf8_len((unsigned char)s[0]) != n ||
            cp_utf8_decode(s, &l) != c || l != n || !cp_utf8_valid(s, n))
            bad++;
        for (size_t k = 1; k < n; k++) bad += !cp_utf8_is_continuation((unsigned char)s[k]);
    }
    CHECK(bad == 0, "%ld code points do not round-trip", bad);
}

TEST(valid_prefix_stops_at_the_first_bad_byte) {
    static const struct { const char *s; size_t n, want; } cases[] = {
        {"", 0, 0},
        {"abc", 3, 3},
        {"a\0b", 3, 3},                       /* NUL is valid UTF-8 */
        {"h\xC3\xA9llo", 6, 6},
        {"ab\xC0\x80", 4, 2},                 /* overlong NUL */
        {"\xE0\x9F\xBF", 3, 0},               /* overlong 3-byte */
        {"x\xED\xA0\x80", 4, 1},              /* surrogate U+D800 */
        {"\xF4\x90\x80\x80", 4, 0},           /* above U+10FFFF */
        {"\xF0\x9F\x98\x80!", 5, 5},          /* U+1F600 */
        {"ok\xF0\x9F\x98", 5, 2},             /* truncated at the end */
        {"\xF5\x80\x80\x80", 4, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t got = cp_utf8_valid_prefix(cases[i].s, cases[i].n);
        CHECK(got == cases[i].want, "case %zu: valid prefix %zu, expected %zu", i, got, cases[i].want);
        CHECK(cp_utf8_valid(cases[i].s, cases[i].n) == (cases[i].want == cases[i].n), "case %zu: cp_utf8_valid", i);
    }
}

/* The Unicode standard's example of maximal subparts (Table 3-8, "U+FFFD for each maximal
 * subpart"): 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64 decodes to a FFFD FFFD FFFD b FFFD c FFFD FFFD d. */
TEST(invalid_len_is_the_maximal_subpart) {
    const char *s = "\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64";
    size_t n = 13, i = 0, k = 0;
    static const size_t want[] = {0, 3, 2, 1, 0, 1, 0, 1, 1, 0}; /* 0: a valid char */
    while (i < n && k < sizeof want / sizeof *want) {
        size_t v = cp_utf8_valid_prefix(s + i, n - i);
        size_t got = v ? 0 : cp_utf8_invalid_len(s + i, n - i);
        CHECK(got == want[k], "piece %zu at byte %zu: %zu invalid bytes, expected %zu", k, i, got, want[k]);
        i += got ? got : cp_utf8_len((unsigned char)s[i]);
        k++;
    }
    CHECK(i == n && k == sizeof want / sizeof *want, "%zu pieces ending at byte %zu", k, i);
    CHECK(cp_utf8_invalid_len("\xED\xA0\x80", 3) == 1, "a surrogate's lead byte alone is the subpart");
    CHECK(cp_utf8_invalid_len("\xF0\x9F\x98", 3) == 3, "a truncated sequence is one subpart");
}

int main(void) {
    RUN(char_len_agrees_with_the_definition);
    RUN(encode_decode_round_trip_every_scalar_value);
    RUN(valid_prefix_stops_at_the_first_bad_byte);
    RUN(invalid_len_is_the_maximal_subpart);
    return test_summary();
}
