/*
 * sweep_logits.c — the cpeft side of tests/reference/sweep_peft_matrix.py: loads a model and PEFT
 * adapters through the public API (include/cpeft.h) and writes what it computes, so that the sweep
 * can compare it with what transformers + PEFT compute on the same files.
 *
 *   sweep_logits MODEL_DIR INPUTS.safetensors OUT.safetensors [ADAPTER_DIR[:NAME]]...
 *
 * INPUTS holds input_ids and attention_mask (I64 [B,T]) and optionally labels (I64 [B,T], -100 =
 * ignored). Every adapter is loaded as PeftModel.from_pretrained / load_adapter loads it
 * (is_trainable=False; the first is "default" unless named) and all of them are made active. OUT
 * gets, in F32: logits [B,T,V] (adapters active, eval), logits_merged [B,T,V] (after
 * merge_adapter(), in place), and with labels loss / loss_merged [] (the causal-LM loss the model
 * computes with those labels). An error prints cpeft's message and exits 1: the sweep reads the
 * message when it expects cpeft to refuse an adapter.
 *
 * It is a tool of the reference sweep, not a test: `make sweep` builds it under build/sweep/.
 */
#include "cpeft.h"
#include "io/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what) {
    fprintf(stderr, "sweep_logits: %s: %s\n", what, cp_last_error());
    return 1;
}

/* Runs the model on the batch: logits (B,T,V) into `logits`, the loss into *loss when labels. */
static cp_status run(cp_model *m, const cp_batch *b, float *logits, float *loss) {
    cp_outputs out = {.logits = logits};
    if (cp_model_forward(m, b, &out) != CP_OK) return CP_ERR;
    *loss = (float)out.loss;
    return CP_OK;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: sweep_logits MODEL_DIR INPUTS.safetensors OUT.safetensors [ADAPTER_DIR[:NAME]]...\n");
        return 2;
    }
    cp_set_quiet(1);
    cp_safetensors in;
    if (cp_st_open(&in, argv[2]) != CP_OK) return fail(argv[2]);
    const cp_st_tensor *ids = cp_st_find(&in, "input_ids"), *mask = cp_st_find(&in, "attention_mask"),
                       *labels = cp_st_find(&in, "labels");
    if (!ids || !mask || ids->dtype != CP_I64 || mask->dtype != CP_I64 || ids->ndim != 2 || mask->numel != ids->numel ||
        (labels && (labels->dtype != CP_I64 || labels->numel != ids->numel))) {
        fprintf(stderr, "sweep_logits: %s: expected I64 input_ids, attention_mask [B,T] (and labels)\n", argv[2]);
        return 2;
    }
    cp_model *m;
    if (cp_model_load(&m, argv[1], CP_LOAD_WEIGHTS) != CP_OK) return fail(argv[1]);
    const char *names[16];
    int n = 0;
    for (int i = 4; i < argc && n < 16; i++, n++) {
        char *dir = argv[i], *colon = strrchr(dir, ':');
        if (colon) *colon = '\0';
        names[n] = colon ? colon + 1 : (n ? NULL : "default");
        if (!names[n]) { fprintf(stderr, "sweep_logits: %s: name every adapter after the first (DIR:NAME)\n", dir); return 2; }
        if (cp_model_load_adapter(m, dir, names[n], 0) != CP_OK) return fail(dir);
    }
    if (n && cp_model_set_adapters(m, names, n) != CP_OK) return fail("set_adapter");

    const int64_t B = ids->shape[0], T = ids->shape[1], V = cp_model_vocab_size(m);
    cp_batch b = {.B = B, .T = T, .input_ids = ids->data, .attention_mask = mask->data,
                  .labels = labels ? labels->data : NULL};
    float *logits = malloc((size_t)(B * T * V) * sizeof *logits), *merged = malloc((size_t)(B * T * V) * sizeof *merged);
    float loss = 0, loss_merged = 0;
    if (!logits || !merged) { fprintf(stderr, "sweep_logits: out of memory\n"); return 1; }
    if (run(m, &b, logits, &loss) != CP_OK) return fail("forward");
    if (n && cp_model_merge_adapters(m) != CP_OK) return fail("merge_adapter");
    if (run(m, &b, merged, &loss_merged) != CP_OK) return fail("forward (merged)");

    cp_st_write_tensor t[4] = {
        {.name = "logits", .dtype = CP_F32, .ndim = 3, .shape = {B, T, V}, .data = logits},
        {.name = "logits_merged", .dtype = CP_F32, .ndim = 3, .shape = {B, T, V}, .data = merged},
        {.name = "loss", .dtype = CP_F32, .ndim = 0, .data = &loss},
        {.name = "loss_merged", .dtype = CP_F32, .ndim = 0, .data = &loss_merged},
    };
    if (cp_st_write(argv[3], t, labels ? 4 : 2, NULL, NULL, 0) != CP_OK) return fail(argv[3]);
    free(logits);
    free(merged);
    cp_model_free(m);
    cp_st_close(&in);
    return 0;
}
