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
