/*
 * test_t5.c — T5 and mT5 (encoder-decoder, SEQ_2_SEQ_LM) against transformers 5.23 + PEFT 0.21.2
 * (fixtures: tests/reference/make_t5_fixtures.py → tests/fixtures/t5/):
 *   - t5 v1.0 (relu, tied, rescaled), v1.1 (gated-gelu, untied lm_head, no rescale), mt5, a model with 3
 *     decoder blocks and num_heads·d_kv ≠ d_model, and v1.0's weights in bf16: logits (decoder inputs shifted
 *     from the labels, padding in both masks; and explicit decoder_input_ids), loss, parameter count, print(model);
 *   - LoRA (default q, v; decoder only; all-linear on mt5; the asymmetric model) and IA3 (t5 v1.1, mt5): PEFT's
 *     adapter files load and give PEFT's logits, save again byte for byte, counts / print_trainable_parameters /
 *     PeftModelForSeq2SeqLM repr, and every gradient after one backward (with and without recompute);
 *   - cpeft's own adapter files (cpeft adapter init) read by PEFT: PEFT's logits from them;
 *   - 10 AdamW steps of LoRA on t5 v1.0 against PyTorch + PEFT;
 *   - bad input: no decoder_start_token_id, an adapter of an encoder-only model, a batch without decoder inputs.
 * Every comparison prints the largest difference it saw.
 */
#include "parity/seq2seq_check.h"

#define FIX "tests/fixtures/t5"

TEST(models_match_transformers) {
    const char *names[] = {"t5_v10", "t5_v11", "mt5", "t5_asym", "t5_v10_bf16"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) s2s_model_case(FIX, names[i]);
}

TEST(lora_and_ia3_match_peft) {
    s2s_peft_case(FIX, "lora", "lora_v10_default");
    s2s_peft_case(FIX, "lora", "lora_v11_decoder");
    s2s_peft_case(FIX, "lora", "lora_mt5_all_linear");
    s2s_peft_case(FIX, "lora", "lora_asym_default");
    s2s_peft_case(FIX, "lora", "lora_asym_relbias");
    s2s_peft_case(FIX, "lora", "lora_v11_embed");
    s2s_peft_case(FIX, "ia3", "ia3_v11_default");
    s2s_peft_case(FIX, "ia3", "ia3_mt5_default");
}

TEST(cpeft_adapters_load_in_peft) {
    s2s_roundtrip_case(FIX, "rt_lora_v11");
    s2s_roundtrip_case(FIX, "rt_ia3_mt5");
}

TEST(ten_adamw_steps_match_peft) { s2s_steps_case(FIX "/steps/lora_v10", "lora_v10"); }

/* ---- bad input -------------------------------------------------------------------------------------- */

TEST(bad_input_is_named) {
    char dir[] = "/tmp/cpeft-t5-bad-XXXXXX", model[600];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(model, sizeof model, "%s/model", dir);
    copy_without(FIX "/models/t5_v10", model, "decoder_start_token_id");
    cp_model *m = load_model(model);
    cp_safetensors st;
    CHECK_OK(cp_st_open(&st, FIX "/t5_v10/expected.safetensors"));
    if (m) {
        cp_batch b = batch_of(&st);
        cp_outputs out = {0};
        CHECK_ERR(cp_model_forward(m, &b, &out), "config.json: field \"decoder_start_token_id\" is not set");
        b.labels = NULL;
        CHECK_ERR(cp_model_forward(m, &b, &out), "needs decoder_input_ids or labels");
        b.decoder_input_ids = cp_st_find(&st, "decoder_input_ids")->data; /* explicit decoder inputs need no start token */
        b.decoder_attention_mask = NULL;
        CHECK_OK(cp_model_forward(m, &b, &out));
    }
    cp_model_free(m);
    /* an adapter made for an encoder-only model (BERT's query / value) */
    m = load_model(FIX "/models/t5_v10");
    if (m) CHECK_ERR(cp_adapter_load(m, "tests/fixtures/ia3/bert_seqcls", "default", 1, 0), "bert");
    cp_model_free(m);
    cp_st_close(&st);
    rm_rf(dir);
}

int main(void) {
    RUN(models_match_transformers);
    RUN(lora_and_ia3_match_peft);
    RUN(cpeft_adapters_load_in_peft);
    RUN(ten_adamw_steps_match_peft);
    RUN(bad_input_is_named);
    printf("  worst: logits %.2e, gradients %.2e relative\n", worst_logits, worst_grad);
    return test_summary();
}
