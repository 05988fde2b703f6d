/*
 * cpeft_logits.c — cpeft's logits at every greedy decoding step, the counterpart of
 * bench/llama_logits.cpp for the per-step comparison with llama.cpp (bench/logits_compare.py).
 *
 *   build/bench/cpeft_logits --model FILE.gguf --tokens 1,2,3 --out LOGITS.bin [--new 32]
 *                            [--force 4,5,...] [--exact-quant 1] [--stepwise 1]
 *
 * The prompt runs as one batch through the KV cache (the prefill; --stepwise 1: one token at a time), then one token per step, as
 * cp_model_generate decodes: the greedy one, or the --force list's (teacher forcing). LOGITS.bin
 * holds, per step, the V f32 logits; stdout one JSON line {"tokens": [argmax per step]}.
 */
#include "cpeft.h"

#include "models/kv_cache.h"
#include "models/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t parse_ids(const char *s, int64_t *out, int64_t cap) {
    int64_t n = 0;
    while (*s && n < cap) {
        char *e;
        out[n++] = strtoll(s, &e, 10);
        if (e == s) return -1;
        s = *e == ',' ? e + 1 : e;
    }
    return n;
}

int main(int argc, char **argv) {
    const char *path = NULL, *toks = NULL, *force_s = NULL, *out_path = NULL;
    long n_new = 32, exact = 0, stepwise = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) path = argv[i + 1];
        else if (!strcmp(argv[i], "--tokens")) toks = argv[i + 1];
        else if (!strcmp(argv[i], "--force")) force_s = argv[i + 1];
        else if (!strcmp(argv[i], "--out")) out_path = argv[i + 1];
        else if (!strcmp(argv[i], "--new")) n_new = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--exact-quant")) exact = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--stepwise")) stepwise = atol(argv[i + 1]);
        else { fprintf(stderr, "cpeft_logits: unknown option %s\n", argv[i]); return 2; }
    }
    enum { CAP = 4096 };
    static int64_t prompt[CAP], force[CAP];
    const int64_t T = toks ? parse_ids(toks, prompt, CAP) : -1, nf = force_s ? parse_ids(force_s, force, CAP) : 0;
    if (!path || !out_path || T <= 0 || nf < 0 || n_new <= 0) {
        fprintf(stderr, "usage: cpeft_logits --model FILE.gguf --tokens IDS --out FILE [--new N] [--force IDS] [--exact-quant 1]\n");
        return 2;
    }
    cp_model *m;
    const size_t pl = strlen(path);
    const int gguf = pl > 5 && !strcmp(path + pl - 5, ".gguf");
    if ((gguf ? cp_model_load_gguf(&m, path, CP_LOAD_WEIGHTS, NULL) : cp_model_load(&m, path, CP_LOAD_WEIGHTS)) != CP_OK) {
        fprintf(stderr, "cpeft_logits: %s\n", cp_last_error());
        return 1;
    }
    cp_model_set_quant_act8(m, !exact);
    const int64_t V = cp_model_vocab_size(m);
    const int64_t kv_dim = (m->config.num_kv_heads > 0 ? m->config.num_kv_heads : m->config.num_heads) * m->config.head_dim;
    cp_kv_cache cache;
    float *logits = malloc((size_t)V * sizeof *logits);
    int64_t *pos = malloc((size_t)T * sizeof *pos);
    FILE *out = fopen(out_path, "wb");
    if (!logits || !pos || !out || cp_kv_cache_init(&cache, m->config.num_layers, 1, T + n_new, kv_dim) != CP_OK) {
        fprintf(stderr, "cpeft_logits: out of memory or cannot write %s\n", out_path);
        return 1;
    }
    for (int64_t t = 0; t < T; t++) pos[t] = t;
    int64_t cur = 0, cur_pos = 0;
    for (int64_t t = 0; stepwise && t + 1 < T; t++) { /* the prompt one token at a time */
        cp_batch b = {.B = 1, .T = 1, .input_ids = &prompt[t], .position_ids = &pos[t]};
        if (cp_model_forward_cached(m, &b, &cache, logits, NULL) != CP_OK) { fprintf(stderr, "cpeft_logits: %s\n", cp_last_error()); return 1; }
    }
    const int64_t *first = stepwise ? &prompt[T - 1] : prompt, *first_pos = stepwise ? &pos[T - 1] : pos;
    printf("{\"tokens\": [");
    for (long step = 0; step < n_new; step++) {
        cur_pos = T + step - 1; /* step > 0: the token chosen at the previous step */
        cp_batch b = {.B = 1, .T = step ? 1 : stepwise ? 1 : T, .input_ids = step ? &cur : first, .position_ids = step ? &cur_pos : first_pos};
        if (cp_model_forward_cached(m, &b, &cache, logits, NULL) != CP_OK) {
            fprintf(stderr, "cpeft_logits: %s\n", cp_last_error());
            return 1;
        }
        fwrite(logits, sizeof(float), (size_t)V, out);
        int64_t best = 0;
        for (int64_t j = 1; j < V; j++)
            if (logits[j] > logits[best]) best = j;
        printf("%s%lld", step ? ", " : "", (long long)best);
        cur = step < nf ? force[step] : best;
    }
    printf("]}\n");
    fclose(out);
    cp_kv_cache_free(&cache);
    free(logits);
    free(pos);
    cp_model_free(m);
    return 0;
}
