/*
 * kv_cache.c — the per-layer key/value cache of incremental decoding; see kv_cache.h.
 */
#include "models/kv_cache.h"
#include "core/alloc.h"

#include <assert.h>
#include <string.h>

cp_status cp_kv_cache_init(cp_kv_cache *c, int64_t L, int64_t B, int64_t capacity, int64_t kv_dim) {
    memset(c, 0, sizeof *c);
    c->L = L;
    c->B = B;
    c->capacity = capacity;
    c->kv_dim = kv_dim;
    const size_t n = (size_t)L * (size_t)B * (size_t)capacity * (size_t)kv_dim;
    c->k = cp_alloc_aligned(n * sizeof(float), "the key cache");
    c->v = c->k ? cp_alloc_aligned(n * sizeof(float), "the value cache") : NULL;
    c->mask = c->v ? cp_calloc((size_t)(B * capacity), sizeof *c->mask, "the cache mask") : NULL;
    if (!c->mask) {
        cp_kv_cache_free(c);
        return CP_ERR;
    }
    return CP_OK;
}

void cp_kv_cache_free(cp_kv_cache *c) {
    cp_free(c->k);
    cp_free(c->v);
    cp_free(c->mask);
    memset(c, 0, sizeof *c);
}

cp_status cp_kv_cache_begin(cp_kv_cache *c, const int64_t *mask, int64_t T) {
    if (c->len + T > c->capacity)
        return cp_error("KV cache: %lld new columns do not fit after %lld (capacity %lld)", (long long)T,
                        (long long)c->len, (long long)c->capacity);
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t t = 0; t < T; t++) c->mask[b * c->capacity + c->len + t] = mask ? mask[b * T + t] : 1;
    return CP_OK;
}

void cp_kv_cache_attend(cp_kv_cache *c, int64_t l, const float *k, int64_t k_stride, const float *v, int64_t v_stride,
                        cp_attention_args *at) {
    const int64_t B = c->B, T = at->T, D = c->kv_dim, layer = l * B * c->capacity * D;
    assert(at->B == B && c->len + T <= c->capacity);
    float *K = c->k + layer, *V = c->v + layer; // (B, capacity, D)
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            const int64_t dst = (b * c->capacity + c->len + t) * D, src = b * T + t;
            memcpy(K + dst, k + src * k_stride, (size_t)D * sizeof *K);
            memcpy(V + dst, v + src * v_stride, (size_t)D * sizeof *V);
        }
    at->k = K;
    at->v = V;
    at->k_stride = at->v_stride = D;
    at->kv_rows = c->capacity;
    at->past = c->len;
    at->key_mask = c->mask;
    at->probs = NULL;
}

void cp_kv_cache_advance(cp_kv_cache *c, int64_t T) {
    assert(c->len + T <= c->capacity);
    c->len += T;
}

/* Copies the first n columns of row `from` of (K, V) layer slices to row `to` of the same layout. */
static void copy_row(float *K, float *V, const float *Ks, const float *Vs, int64_t to, int64_t from, int64_t cap_to,
                     int64_t cap_from, int64_t n, int64_t D) {
    memcpy(K + to * cap_to * D, Ks + from * cap_from * D, (size_t)(n * D) * sizeof *K);
    memcpy(V + to * cap_to * D, Vs + from * cap_from * D, (size_t)(n * D) * sizeof *V);
}

cp_status cp_kv_cache_gather(cp_kv_cache *dst, const cp_kv_cache *src, const int64_t *rows) {
    if (dst->L != src->L || dst->kv_dim != src->kv_dim || dst->capacity < src->len)
        return cp_error("KV cache gather: %lld layers × %lld, %lld columns into %lld layers × %lld, capacity %lld",
                        (long long)src->L, (long long)src->kv_dim, (long long)src->len, (long long)dst->L,
                        (long long)dst->kv_dim, (long long)dst->capacity);
    for (int64_t r = 0; r < dst->B; r++)
        if (rows[r] < 0 || rows[r] >= src->B)
            return cp_error("KV cache gather: row %lld reads row %lld of %lld", (long long)r, (long long)rows[r],
                            (long long)src->B);
    const int64_t D = src->kv_dim, n = src->len;
    for (int64_t l = 0; l < src->L; l++) {
        float *K = dst->k + l * dst->B * dst->capacity * D, *V = dst->v + l * dst->B * dst->capacity * D;
        const float *Ks = src->k + l * src->B * src->capacity * D, *Vs = src->v + l * src->B * src->capacity * D;
        for (int64_t r = 0; r < dst->B; r++) copy_row(K, V, Ks, Vs, r, rows[r], dst->capacity, src->capacity, n, D);
    }
    for (int64_t r = 0; r < dst->B; r++)
        memcpy(dst->mask + r * dst->capacity, src->mask + rows[r] * src->capacity, (size_t)n * sizeof *dst->mask);
    dst->len = n;
    return CP_OK;
}

cp_status cp_kv_cache_reorder(cp_kv_cache *c, const int64_t *rows) {
    const int64_t B = c->B, D = c->kv_dim, n = c->len, cap = c->capacity;
    for (int64_t r = 0; r < B; r++)
        if (rows[r] < 0 || rows[r] >= B)
            return cp_error("KV cache reorder: row %lld reads row %lld of %lld", (long long)r, (long long)rows[r],
                            (long long)B);
    /* slot[s] ≥ 0: row s is overwritten and read by another row, so it is staged in scratch slot slot[s] */
    if (n == 0) return CP_OK;
    int64_t *slot = cp_malloc((size_t)B * sizeof *slot, "KV cache reorder");
    if (!slot) return CP_ERR;
    int64_t n_staged = 0;
    for (int64_t s = 0; s < B; s++) slot[s] = -1;
    for (int64_t r = 0; r < B; r++) {
        const int64_t s = rows[r];
        if (s != r && rows[s] != s && slot[s] < 0) slot[s] = n_staged++;
    }
    float *tk = NULL, *tv = NULL;
    int64_t *tm = NULL;
    if (n_staged) {
        tk = cp_malloc((size_t)(n_staged * n * D) * sizeof *tk, "KV cache reorder");
        tv = tk ? cp_malloc((size_t)(n_staged * n * D) * sizeof *tv, "KV cache reorder") : NULL;
        tm = tv ? cp_malloc((size_t)(n_staged * n) * sizeof *tm, "KV cache reorder") : NULL;
        if (!tm) {
            cp_free(tk); cp_free(tv); cp_free(slot);
            return CP_ERR;
        }
    }
    for (int64_t l = 0; l < c->L; l++) {
        float *K = c->k + l * B * cap * D, *V = c->v + l * B * cap * D; // (B, cap, D)
        for (int64_t s = 0; s < B; s++)
            if (slot[s] >= 0) copy_row(tk, tv, K, V, slot[s], s, n, cap, n, D);
        for (int64_t r = 0; r < B; r++) {
            const int64_t s = rows[r];
            if (s == r) continue;
            if (slot[s] >= 0) copy_row(K, V, tk, tv, r, slot[s], cap, n, n, D);
            else copy_row(K, V, K, V, r, s, cap, cap, n, D);
        }
    }
    for (int64_t s = 0; s < B; s++)
        if (slot[s] >= 0) memcpy(tm + slot[s] * n, c->mask + s * cap, (size_t)n * sizeof *tm);
    for (int64_t r = 0; r < B; r++) {
        const int64_t s = rows[r];
        if (s != r) memcpy(c->mask + r * cap, slot[s] >= 0 ? tm + slot[s] * n : c->mask + s * cap, (size_t)n * sizeof *tm);
    }
    cp_free(tk); cp_free(tv); cp_free(tm); cp_free(slot);
    return CP_OK;
}
