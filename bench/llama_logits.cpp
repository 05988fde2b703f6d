// llama_logits.cpp — llama.cpp's logits at every greedy decoding step, for the per-step comparison with
// cpeft (bench/logits_compare.py). Our own program on llama.h's public API; bench/llama_logits.sh
// builds it against the static libraries bench/build_llama_cpp.sh built (never committed).
//
//   llama_logits -m FILE.gguf --tokens 1,2,3 [-n 32] [--force 4,5,...] [--kv f16|f32] [--fa -1|0|1]
//                [-t THREADS] [--stepwise 1] --out LOGITS.bin
//
// The prompt ids run as one batch (the prefill; --stepwise 1: one token per call, every product one row), then one token per step: the greedy one, or the
// --force list's (teacher forcing, so both programs see the same sequence). LOGITS.bin holds, per
// step, the V f32 logits of the last position; stdout one JSON line {"tokens": [greedy argmax per step]}.
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

static std::vector<llama_token> parse_ids(const char *s) {
    std::vector<llama_token> v;
    while (*s) {
        char *e;
        v.push_back((llama_token)strtol(s, &e, 10));
        s = *e == ',' ? e + 1 : e;
        if (e == s && *s) break;
    }
    return v;
}

int main(int argc, char **argv) {
    const char *model_path = nullptr, *out_path = nullptr;
    std::vector<llama_token> prompt, force;
    int n_new = 32, threads = 1, fa = -1, stepwise = 0;
    ggml_type kv = GGML_TYPE_F16;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "-m")) model_path = v;
        else if (!strcmp(k, "--tokens")) prompt = parse_ids(v);
        else if (!strcmp(k, "--force")) force = parse_ids(v);
        else if (!strcmp(k, "-n")) n_new = atoi(v);
        else if (!strcmp(k, "-t")) threads = atoi(v);
        else if (!strcmp(k, "--fa")) fa = atoi(v);
        else if (!strcmp(k, "--kv")) kv = !strcmp(v, "f32") ? GGML_TYPE_F32 : GGML_TYPE_F16;
        else if (!strcmp(k, "--out")) out_path = v;
        else if (!strcmp(k, "--stepwise")) stepwise = atoi(v);
        else { fprintf(stderr, "llama_logits: unknown option %s\n", k); return 2; }
    }
    if (!model_path || !out_path || prompt.empty()) {
        fprintf(stderr, "usage: llama_logits -m FILE.gguf --tokens IDS --out FILE [-n N] [--force IDS] [--kv f16|f32] [--fa -1|0|1]\n");
        return 2;
    }
    llama_backend_init();
    llama_model *model = llama_model_load_from_file(model_path, llama_model_default_params());
    if (!model) { fprintf(stderr, "llama_logits: cannot load %s\n", model_path); return 1; }
    const int V = llama_vocab_n_tokens(llama_model_get_vocab(model));
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(prompt.size() + n_new + 8);
    cp.n_batch = cp.n_ubatch = (uint32_t)prompt.size();
    cp.n_threads = cp.n_threads_batch = threads;
    cp.type_k = cp.type_v = kv;
    cp.flash_attn_type = (llama_flash_attn_type)fa; /* -1 auto (llama.cpp's default), 0 off, 1 on */
    cp.no_perf = true;
    llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "llama_logits: cannot create a context\n"); return 1; }
    FILE *out = fopen(out_path, "wb");
    if (!out) { perror(out_path); return 1; }
    std::vector<llama_token> cur = prompt;
    std::string js = "{\"tokens\": [";
    for (size_t i = 0; stepwise && i + 1 < prompt.size(); i++) /* the prompt one token at a time */
        if (llama_decode(ctx, llama_batch_get_one(&prompt[i], 1))) { fprintf(stderr, "llama_logits: decode failed\n"); return 1; }
    if (stepwise) cur.assign(1, prompt.back());
    for (int step = 0; step < n_new; step++) {
        if (llama_decode(ctx, llama_batch_get_one(cur.data(), (int32_t)cur.size()))) {
            fprintf(stderr, "llama_logits: decode failed at step %d\n", step);
            return 1;
        }
        const float *lg = llama_get_logits_ith(ctx, -1);
        fwrite(lg, sizeof(float), (size_t)V, out);
        int best = 0;
        for (int j = 1; j < V; j++)
            if (lg[j] > lg[best]) best = j;
        js += (step ? ", " : "") + std::to_string(best);
        const llama_token next = step < (int)force.size() ? force[step] : best;
        cur.assign(1, next);
    }
    fclose(out);
    printf("%s]}\n", js.c_str());
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
