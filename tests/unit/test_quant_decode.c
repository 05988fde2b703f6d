/*
 * test_quant_decode.c — the inference mode of quantized weights (cp_model_set_quant_act8) on a GGUF
 * model whose matrices stay quantized (tests/fixtures/gguf/tiny-llama-bpe.gguf: Q8_0 / Q4_0 / Q4_1 /
 * Q4_K matrices): off (the default) the logits are the exact product's; on, a forward of up to 32
 * tokens rounds activations to 8 bits per block, so the logits move, but only by the rounding (a
 * bound relative to the logits' scale, printed); in training mode the flag changes nothing.
 */
#include "test.h"

#include "cpeft.h"
#include "core/alloc.h"
#include "models/model.h"

#include <math.h>

#define GGUF "tests/fixtures/gguf/tiny-llama-bpe.gguf"

static void logits_of(cp_model *m, const int64_t *ids, int64_t T, float *out) {
    cp_batch b = {.B = 1, .T = T, .input_ids = ids};
    cp_outputs o = {.logits = out};
    CHECK_OK(cp_model_forward(m, &b, &o));
}

TEST(act8_moves_logits_by_the_rounding_only_and_never_in_training) {
    cp_model *m = NULL;
    CHECK_OK(cp_model_load_gguf(&m, GGUF, 0, NULL));
    if (!m) return;
    const int64_t V = cp_model_vocab_size(m), ids[8] = {3, 17, 100, 5, 42, 7, 1, 9}, T = 8;
    float *exact = cp_malloc((size_t)(T * V) * sizeof *exact, "e"), *fast = cp_malloc((size_t)(T * V) * sizeof *fast, "f");
    float *again = cp_malloc((size_t)(T * V) * sizeof *again, "a");
    logits_of(m, ids, T, exact);
    cp_model_set_quant_act8(m, 1);
    logits_of(m, ids, T, fast);
    double d = 0, mx = 0;
    for (int64_t i = 0; i < T * V; i++) {
        d = fmax(d, fabs(fast[i] - exact[i]));
        mx = fmax(mx, fabs(exact[i]));
    }
    printf("  8-bit activations vs exact: max |logit diff| %.3g (max |logit| %.3g, ratio %.3g)\n", d, mx, d / mx);
    CHECK(d > 0, "act8 on: the rounded product must differ from the exact one somewhere");
    CHECK(d <= 0.05 * mx, "act8 on: logits off by %g of max %g", d, mx);
    /* training mode: cp_model_run never passes the flag on, so the forward is the exact one, bit for bit */
    m->training = 1;
    logits_of(m, ids, T, again);
    m->training = 0;
    CHECK(memcmp(again, exact, (size_t)(T * V) * sizeof *exact) == 0, "training mode with the flag set: not the exact logits");
    cp_model_set_quant_act8(m, 0);
    logits_of(m, ids, T, again);
    CHECK(memcmp(again, exact, (size_t)(T * V) * sizeof *exact) == 0, "flag off again: not the exact logits");
    cp_free(exact), cp_free(fast), cp_free(again);
    cp_model_free(m);
}

int main(void) {
    RUN(act8_moves_logits_by_the_rounding_only_and_never_in_training);
    return test_summary();
}
