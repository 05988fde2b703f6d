/*
 * test_core_containers.c — the core containers the tokenizer, the file readers and the data
 * loader share: growable arrays (cp_grow, cp_resize), the string map (core/strmap) and the name
 * index (core/name_index).
 */
#include "test.h"

#include <stdint.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/name_index.h"
#include "core/strmap.h"

TEST(grow_doubles_from_first_and_keeps_contents) {
    int32_t *v = NULL;
    size_t cap = 0;
    int bad = 0;
    for (int32_t i = 0; i < 1000; i++) {
        CHECK_OK(cp_grow(&v, &cap, (size_t)i + 1, sizeof *v, 16, "test values"));
        v[i] = i * 7;
    }
    for (int32_t i = 0; i < 1000; i++) bad += v[i] != i * 7;
    CHECK(bad == 0 && cap == 1024, "%d values changed, capacity %zu (expected 16 doubled to 1024)", bad, cap);
    CHECK(cp_grow_cap(0, 1, 16) == 16 && cp_grow_cap(16, 17, 16) == 32 && cp_grow_cap(64, 10, 16) == 64, "cp_grow_cap");
    CHECK_OK(cp_grow(&v, &cap, 10, sizeof *v, 16, "test values")); /* enough room: nothing moves */
    CHECK(cap == 1024, "capacity %zu", cap);
    cp_free(v);
}

TEST(resize_refuses_an_overflowing_size) {
    double *v = NULL;
    CHECK_ERR(cp_resize(&v, SIZE_MAX / 4, sizeof *v, "huge array"), "huge array");
    CHECK(v == NULL, "the array is left as it was");
    CHECK_OK(cp_resize(&v, 3, sizeof *v, "small array"));
    v[2] = 1.5;
    CHECK_OK(cp_resize(&v, 100, sizeof *v, "small array"));
    CHECK(v[2] == 1.5, "contents kept");
    cp_free(v);
}

TEST(strmap_last_value_wins_and_clear_empties) {
    cp_strmap m;
    cp_strmap_init(&m);
    char key[32];
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(key, sizeof key, "k%d", i % 3000);
        CHECK_OK(cp_strmap_put(&m, key, (size_t)n, i));
    }
    CHECK(m.n == 3000, "%zu entries", m.n);
    CHECK(cp_strmap_get(&m, "k5", 2) == 3005 && cp_strmap_get(&m, "k2999", 5) == 2999, "last value wins");
    CHECK(cp_strmap_get(&m, "k", 1) == -1 && cp_strmap_get(&m, "k3000", 5) == -1, "absent keys");
    CHECK_OK(cp_strmap_put(&m, "a\0b", 3, 42)); /* keys with NUL */
    CHECK(cp_strmap_get(&m, "a\0b", 3) == 42 && cp_strmap_get(&m, "a", 1) == -1, "NUL inside a key");
    size_t len;
    const char *k0 = cp_strmap_key(&m, 0, &len);
    CHECK(len == 2 && !memcmp(k0, "k0", 2), "insertion order");
    uint64_t h = cp_hash_bytes("k7", 2);
    CHECK(cp_strmap_get_hashed(&m, "k7", 2, h) == 3007, "lookup with the hash given");
    cp_strmap_clear(&m);
    CHECK(m.n == 0 && cp_strmap_get(&m, "k7", 2) == -1, "cleared");
    CHECK_OK(cp_strmap_put_hashed(&m, "k7", 2, h, 1));
    CHECK(cp_strmap_get(&m, "k7", 2) == 1, "usable after clear");
    cp_strmap_free(&m);
}

typedef struct {
    int64_t value;
    char *name;
} named;

TEST(name_index_finds_and_reports_duplicates) {
    named e[] = {{1, "token_embd.weight"}, {2, "blk.0.attn_q.weight"}, {3, "output.weight"}, {4, "blk.0.attn_k.weight"}};
    cp_name_index ix;
    const char *twice;
    CHECK_OK(cp_name_index_build(&ix, e, 4, sizeof *e, offsetof(named, name), &twice, "a test index"));
    CHECK(twice == NULL, "no duplicate");
    const named *hit = cp_name_index_find(&ix, "output.weight");
    CHECK(hit == &e[2], "found the entry itself");
    CHECK(cp_name_index_find(&ix, "blk.0.attn_v.weight") == NULL && cp_name_index_find(&ix, "") == NULL, "absent names");
    cp_name_index_free(&ix);
    e[3].name = "output.weight";
    CHECK_OK(cp_name_index_build(&ix, e, 4, sizeof *e, offsetof(named, name), &twice, "a test index"));
    CHECK(twice && !strcmp(twice, "output.weight"), "duplicate: %s", twice ? twice : "(none)");
    cp_name_index_free(&ix);
    CHECK_OK(cp_name_index_build(&ix, e, 0, sizeof *e, offsetof(named, name), &twice, "a test index"));
    CHECK(cp_name_index_find(&ix, "output.weight") == NULL, "empty index");
    cp_name_index_free(&ix);
}

int main(void) {
    RUN(grow_doubles_from_first_and_keeps_contents);
    RUN(resize_refuses_an_overflowing_size);
    RUN(strmap_last_value_wins_and_clear_empties);
    RUN(name_index_finds_and_reports_duplicates);
    return test_summary();
}
