/*
 * test_gguf_names.c — models/gguf_names.h: finding an architecture's GGUF tensor-name table and a
 * tensor in it (the converter's cp_gguf_llama_hf_name and shape checks are tested in test_gguf.c).
 */
#include "test.h"

#include "models/gguf_names.h"

TEST(finds_the_llama_table) {
    const cp_gguf_names *a = cp_gguf_names_find("llama");
    CHECK(a && !strcmp(a->gguf_arch, "llama"), "llama table");
    CHECK(cp_gguf_names_find("gpt2") == NULL && cp_gguf_names_find("") == NULL, "no table for gpt2");
    if (!a) return;
    /* every Hugging Face block name is distinct; one optional tensor (the LM head) */
    for (int i = 0; i < a->n_block; i++)
        for (int j = 0; j < i; j++) CHECK(strcmp(a->block[i].hf, a->block[j].hf), "%s twice", a->block[i].hf);
    int optional = 0;
    for (int i = 0; i < a->n_top; i++) optional += a->top[i].optional;
    CHECK(optional == 1 && a->n_top == 3 && a->n_block == 9, "%d top (%d optional), %d per block", a->n_top, optional,
          a->n_block);
}

TEST(matches_top_level_and_block_names) {
    const cp_gguf_names *a = cp_gguf_names_find("llama");
    if (!a) { CHECK(0, "no llama table"); return; }
    int64_t layer = 7;
    const cp_gguf_tensor_name *t = cp_gguf_names_match(a, "token_embd.weight", &layer);
    CHECK(t && !strcmp(t->hf, "model.embed_tokens.weight") && layer == -1, "token_embd");
    t = cp_gguf_names_match(a, "blk.12.attn_q.weight", &layer);
    CHECK(t && !strcmp(t->hf, "self_attn.q_proj.weight") && layer == 12 && t->rope_rows == CP_GGUF_ROPE_Q_HEADS, "attn_q");
    t = cp_gguf_names_match(a, "blk.0.attn_k.weight", &layer);
    CHECK(t && t->rope_rows == CP_GGUF_ROPE_KV_HEADS && t->rows == CP_GGUF_DIM_KV && t->cols == CP_GGUF_DIM_HIDDEN, "attn_k");
    t = cp_gguf_names_match(a, "blk.3.ffn_down.weight", &layer);
    CHECK(t && t->rope_rows == CP_GGUF_ROPE_NONE && t->rows == CP_GGUF_DIM_HIDDEN && t->cols == CP_GGUF_DIM_FFN, "ffn_down");
    static const char *const unknown[] = {"blk.01.attn_q.weight", "blk.0.attn_q.bias", "blk..attn_q.weight",
                                          "blk.1attn_q.weight", "blk.999999999999.attn_q.weight", "attn_q.weight",
                                          "rope_freqs.weight", ""};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++)
        CHECK(cp_gguf_names_match(a, unknown[i], &layer) == NULL, "'%s' matched", unknown[i]);
}

TEST(ignored_and_refused_tensors) {
    const cp_gguf_names *a = cp_gguf_names_find("llama");
    if (!a) { CHECK(0, "no llama table"); return; }
    CHECK(cp_gguf_names_ignored(a, "blk.0.attn_rot_embd"), "old files' rotary tables are skipped");
    CHECK(cp_gguf_names_ignored(a, "blk.31.attn_rot_embd"), "in every block");
    CHECK(!cp_gguf_names_ignored(a, "attn_rot_embd") && !cp_gguf_names_ignored(a, "blk.0.attn_q.weight"), "not others");
    const char *why = cp_gguf_names_refused(a, "rope_freqs.weight");
    CHECK(why && strstr(why, "Llama-3.1-style rope scaling"), "rope_freqs refused: %s", why ? why : "(none)");
    CHECK(cp_gguf_names_refused(a, "output.weight") == NULL, "output.weight is not refused");
}

int main(void) {
    RUN(finds_the_llama_table);
    RUN(matches_top_level_and_block_names);
    RUN(ignored_and_refused_tensors);
    return test_summary();
}
