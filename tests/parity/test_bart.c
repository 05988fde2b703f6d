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
 *   - training with the model's dropout (dropout, attention_dropout, activation_dropout) draws the same masks
 *     again for the same seed and moves the loss;
 *   - bad input: decoder_start_token_id null, heads that do not divide d_model, positions past
 *     max_position_embeddings, an adapter of an encoder-only model.
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

/* The functional dropouts in training: a seeded step is repeatable, and its loss is not the eval loss. */
TEST(dropout_in_training) {
    cp_model *m = load_model(FIX "/models/bart_default");
    cp_safetensors st;
    CHECK_OK(cp_st_open(&st, FIX "/bart_default/expected.safetensors"));
    if (m) {
        CHECK_OK(cp_adapter_load(m, FIX "/lora/lora_default", "default", 1, 1));
        cp_batch b = batch_of(&st);
        const double eval = *(const float *)cp_st_find(&st, "loss")->data;
        double loss[2];
        int64_t n;
        m->training = 1;
        for (int i = 0; i < 2; i++) {
            m->dropout_seed = 1234;
            double sum;
            CHECK_OK(cp_model_forward_backward(m, &b, 1.0, i, &sum, &n));
            loss[i] = sum / (double)n;
        }
        printf("    dropout on: loss %.6f (recomputed %.6f), eval %.6f\n", loss[0], loss[1], eval);
        CHECK(loss[0] == loss[1], "the same seed drew other masks: %.9f vs %.9f", loss[0], loss[1]);
        CHECK(fabs(loss[0] - eval) > 1e-3, "dropout did not change the loss (%.6f, eval %.6f)", loss[0], eval);
    }
    cp_model_free(m);
    cp_st_close(&st);
}

TEST(bad_input_is_named) {
    char dir[] = "/tmp/cpeft-bart-bad-XXXXXX", model[600];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(model, sizeof model, "%s/model", dir);
    copy_with_field(FIX "/models/bart_default", model, "decoder_start_token_id", "null");
    cp_model *m = load_model(model);
    cp_safetensors st;
    CHECK_OK(cp_st_open(&st, FIX "/bart_default/expected.safetensors"));
    cp_batch b = batch_of(&st);
    cp_outputs out = {0};
    if (m) {
        CHECK_ERR(cp_model_forward(m, &b, &out), "config.json: field \"decoder_start_token_id\" is not set");
        cp_batch e = b;
        e.labels = NULL;
        e.decoder_input_ids = cp_st_find(&st, "decoder_input_ids")->data; /* explicit decoder inputs need no start token */
        e.decoder_attention_mask = NULL;
        CHECK_OK(cp_model_forward(m, &e, &out));
    }
    cp_model_free(m);
    copy_with_field(FIX "/models/bart_default", model, "decoder_attention_heads", "5");
    cp_model *bad = NULL;
    CHECK_ERR(cp_model_load(&bad, model, CP_LOAD_WEIGHTS), "\"decoder_attention_heads\": embed_dim must be divisible by num_heads");
    cp_model_free(bad);
    m = load_model(FIX "/models/bart_default");
    if (m) {
        enum { LONG = 41 }; /* max_position_embeddings is 40 */
        int64_t ids[LONG];
        for (int i = 0; i < LONG; i++) ids[i] = 3 + i;
        const int64_t dec[1] = {2};
        cp_batch l = {.B = 1, .T = LONG, .input_ids = ids, .Td = 1, .decoder_input_ids = dec};
        CHECK_ERR(cp_model_forward(m, &l, &out), "encoder positions up to 41, but max_position_embeddings is 40");
        /* an adapter made for an encoder-only model (BERT's query / value) */
        CHECK_ERR(cp_adapter_load(m, "tests/fixtures/ia3/bert_seqcls", "default", 1, 0), "bert");
    }
    cp_model_free(m);
    cp_st_close(&st);
    rm_rf(dir);
}

int main(void) {
    RUN(models_match_transformers);
    RUN(lora_and_ia3_match_peft);
    RUN(cpeft_adapters_load_in_peft);
    RUN(ten_adamw_steps_match_peft);
    RUN(dropout_in_training);
    RUN(bad_input_is_named);
    printf("  worst: logits %.2e, gradients %.2e relative\n", worst_logits, worst_grad);
    return test_summary();
}
