/*
 * test_bart.c — BART (BartForConditionalGeneration, SEQ_2_SEQ_LM) against transformers 5.23 + PEFT 0.21.2
 * (fixtures: tests/reference/make_bart_fixtures.py → tests/fixtures/bart/; the checks: parity/seq2seq_check.h):
 *   - BartConfig's defaults (gelu, post-LN), a model with 3 decoder layers against 2, its own FFN widths and
 *     heads per stack (relu), and scale_embedding with gelu_new; every one with a final_logits_bias that is not
 *     zero: logits (decoder inputs shifted from the labels, padding in both masks; and explicit
 *     decoder_input_ids), loss, parameter count, print(model);
 *   - LoRA (default q_proj, v_proj; all-linear; the decoder only; the scaled, tied embed_tokens) and IA3 (defaults
 *     q_proj, v_proj, fc2): PEFT's adapter files load and give PEFT's logits, save again byte for byte, counts /
 *     print_trainable_parameters / PeftModelForSeq2SeqLM repr, every gradient (with and without recompute);
 *   - cpeft's own adapter files (cpeft adapter init) read by PEFT: PEFT's logits from them;
 *   - 10 AdamW steps of LoRA against PyTorch + PEFT;
 *   - bad input: a config without decoder_start_token_id, heads that do not divide d_model, positions past
 *     max_position_embeddings, a final_logits_bias of the wrong shape.
 */
#include "parity/seq2seq_check.h"

#define FIX "tests/fixtures/bart"

TEST(models_match_transformers) {
    const char *names[] = {"bart_default", "bart_asym", "bart_scaled"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) s2s_model_case(FIX, names[i]);
}

TEST(lora_and_ia3_match_peft) {
    s2s_peft_case(FIX, "lora", "lora_default");
    s2s_peft_case(FIX, "lora", "lora_asym_all_linear");
    s2s_peft_case(FIX, "lora", "lora_scaled_decoder");
    s2s_peft_case(FIX, "lora", "lora_scaled_embed");
    s2s_peft_case(FIX, "ia3", "ia3_default");
    s2s_peft_case(FIX, "ia3", "ia3_asym");
}

TEST(cpeft_adapters_load_in_peft) {
    s2s_roundtrip_case(FIX, "rt_lora_default");
    s2s_roundtrip_case(FIX, "rt_ia3_asym");
}

TEST(ten_adamw_steps_match_peft) { s2s_steps_case(FIX "/steps/lora_default", "lora_default"); }

int main(void) {
    RUN(models_match_transformers);
    RUN(lora_and_ia3_match_peft);
    RUN(cpeft_adapters_load_in_peft);
    RUN(ten_adamw_steps_match_peft);
    printf("  worst: logits %.2e, gradients %.2e relative\n", worst_logits, worst_grad);
    return test_summary();
}
