/*
 * seq2seq.c — the call of an encoder-decoder model (cp_arch.encoder_decoder), for any architecture
 * that builds one: m->encoder_stack over the encoder's batch, then m->stack (the decoder) over the
 * decoder's, its cross-attention reading the encoder's final states through run->cross, then the LM
 * head and the SEQ_2_SEQ_LM loss, as *ForConditionalGeneration.forward does:
 *
 *   enc    = encoder(input_ids, attention_mask)                                  (B,T,C)
 *   dec_in = decoder_input_ids, or shift_right(labels): decoder_start_token_id first, -100 → pad
 *   h      = decoder(dec_in, decoder_attention_mask; enc, attention_mask)        (B,Td,C)
 *   logits = lm_head(h · decoder_output_scale);  loss = CE(logits, labels), -100 ignored, no shift
 *
 * Training: the decoder's forward keeps its activations and its backward sends the gradient of enc
 * (every block's cross-attention adds to it) to the encoder's backward. When nothing of the encoder
 * trains (LoRA on the decoder only), the encoder runs as in inference (no saved activations) and
 * its backward does not run at all; the decoder then stops at its own lowest trained block.
 *
 * Generation: the encoder once (cp_seq2seq_encode), then decoder steps with the self-attention
 * KV cache and every layer's cross-attention keys / values computed on the first step only.
 */
#include "models/model.h"
#include "core/alloc.h"
#include "kernels/vector.h"
#include "models/head.h"
#include "models/hook.h"
#include "models/proj.h"

#include <string.h>

/* The encoder's and the decoder's batches of a user batch (the decoder inputs made from the labels
 * when not given). */
typedef struct {
    cp_batch enc, dec;
} s2s_batches;

static cp_status check_mask(const int64_t *mask, int64_t n, const char *name) {
    for (int64_t i = 0; mask && i < n; i++)
        if (mask[i] != 0 && mask[i] != 1)
            return cp_error("batch: %s holds %lld at position %lld (expected 0 or 1)", name, (long long)mask[i], (long long)i);
    return CP_OK;
}

static cp_status make_batches(cp_model *m, const cp_batch *b, s2s_batches *out) {
    const cp_model_config *c = &m->config;
    if (!m->has_weights) return cp_error("%s: the model was loaded without weights", m->dir);
    if (!b || !b->input_ids) return cp_error("batch: input_ids is required (the encoder's input)");
    if (b->B <= 0 || b->T <= 0) return cp_error("batch: empty batch (B=%lld, T=%lld)", (long long)b->B, (long long)b->T);
    if (b->Td < 0) return cp_error("batch: Td is %lld (the decoder length; 0: the labels' length T)", (long long)b->Td);
    if (b->token_type_ids || b->bbox || b->position_ids || b->label_values)
        return cp_error("batch: %s given, but %s (SEQ_2_SEQ_LM) takes none", b->token_type_ids ? "token_type_ids" : b->bbox ? "bbox"
                        : b->position_ids ? "position_ids" : "label_values", c->model_type);
    if (!b->decoder_input_ids && !b->labels)
        return cp_error("batch: %s needs decoder_input_ids or labels (the decoder's inputs are the labels shifted right)",
                        c->model_type);
    const int64_t B = b->B, Td = b->Td ? b->Td : b->T;
    if (check_mask(b->attention_mask, B * b->T, "attention_mask") != CP_OK ||
        check_mask(b->decoder_attention_mask, B * Td, "decoder_attention_mask") != CP_OK)
        return CP_ERR;
    const int64_t *ids = b->decoder_input_ids;
    if (!ids) { /* _shift_right(labels) */
        if (c->decoder_start_token_id == CP_TOKEN_UNSET)
            return cp_error("%s/config.json: field \"decoder_start_token_id\" is not set, so the labels cannot be shifted into "
                            "decoder inputs (self.model.config.decoder_start_token_id has to be defined. In T5 it is usually "
                            "set to the pad_token_id); give decoder_input_ids or set the field", m->dir);
        if (c->pad_token_id == CP_TOKEN_UNSET)
            return cp_error("%s/config.json: field \"pad_token_id\" is not set (self.model.config.pad_token_id has to be "
                            "defined): the labels' -100 cannot become decoder inputs", m->dir);
        int64_t *d = cp_arena_alloc(&m->arena, (size_t)(B * Td) * sizeof *d, "decoder input ids");
        if (!d) return CP_ERR;
        for (int64_t r = 0; r < B; r++)
            for (int64_t t = 0; t < Td; t++) {
                const int64_t y = t ? b->labels[r * Td + t - 1] : c->decoder_start_token_id;
                d[r * Td + t] = y == CP_IGNORE_INDEX ? c->pad_token_id : y;
            }
        ids = d;
    }
    out->enc = (cp_batch){.B = B, .T = b->T, .input_ids = b->input_ids, .attention_mask = b->attention_mask};
    out->dec = (cp_batch){.B = B, .T = Td, .input_ids = ids, .attention_mask = b->decoder_attention_mask, .labels = b->labels};
    return CP_OK;
}

/* The start of every call: a fresh arena, the run, the two batches. */
static cp_status start(cp_model *m, const cp_batch *b, cp_run *run, s2s_batches *sb) {
    cp_arena_reset(&m->arena);
    *run = cp_model_run(m);
    run->batch_rows = b->B;
    return make_batches(m, b, sb);
}

/* A prompt-learning adapter as PeftModelForSeq2SeqLM runs it (models/hook.h):
 *   virtual input embeddings (prompt tuning, p-tuning): the first n of the encoder's P·2 rows before
 *     the encoder's batch, its mask with n leading ones (which the cross-attention reads too); the
 *     decoder, its mask and the labels as they are (PEFT gives the decoder none of the rows)
 *   a key/value prefix (prefix tuning): the encoder as it is; n columns before every decoder
 *     self-attention's keys, the decoder mask with n leading ones, the decoder's positions from n
 * is_prefix: which of the two (0 without an adapter). */
static int is_prefix(const cp_run *run) { return run->prompt && run->prompt->ops->kv_prefix; }

/* The encoder's batch with its virtual tokens (run->n_virtual set; the caller clears it before the
 * decoder runs). */
static cp_status prompt_encoder_batch(cp_model *m, cp_run *run, cp_batch *enc) {
    if (!run->prompt || is_prefix(run)) return CP_OK;
    cp_batch pb;
    if (cp_model_prompt_batch(m, run, enc, NULL, &pb) != CP_OK) return CP_ERR;
    *enc = pb;
    return CP_OK;
}

/* The decoder's batch with the prefix (run->n_prefix and its key mask set): after the encoder ran. */
static cp_status prompt_decoder_batch(cp_model *m, cp_run *run, cp_batch *dec) {
    if (!is_prefix(run)) return CP_OK;
    cp_batch pb;
    if (cp_model_prompt_batch(m, run, dec, NULL, &pb) != CP_OK) return CP_ERR;
    *dec = pb;
    return CP_OK;
}

static void scale(float *x, int64_t n, double s) {
    if (s == 1.0 || s == 0.0) return;
    const float f = (float)s; /* torch multiplies a float32 tensor by the Python float as float32 */
    for (int64_t i = 0; i < n; i++) x[i] *= f;
}

cp_status cp_seq2seq_forward(cp_model *m, const cp_batch *user_batch, cp_outputs *out) {
    cp_run run;
    s2s_batches sb;
    if (start(m, user_batch, &run, &sb) != CP_OK || prompt_encoder_batch(m, &run, &sb.enc) != CP_OK) return CP_ERR;
    const int64_t B = sb.enc.B, T = sb.enc.T, Td = sb.dec.T, C = m->config.hidden_size;
    float *enc = cp_arena_floats(&m->arena, (size_t)(B * T * C), "encoder states");          // (B,T,C), T: n + the batch's
    float *final = cp_arena_floats(&m->arena, (size_t)(B * Td * C), "decoder hidden states"); // (B,Td,C)
    if (!enc || !final || cp_stack_forward_on(m, &m->encoder_stack, &run, &sb.enc, NULL, enc, NULL) != CP_OK) return CP_ERR;
    run.n_virtual = 0;
    if (prompt_decoder_batch(m, &run, &sb.dec) != CP_OK) return CP_ERR;
    const cp_cross_states cs = {.states = enc, .mask = sb.enc.attention_mask, .Te = T};
    run.cross = &cs;
    if (cp_stack_forward_on(m, &m->stack, &run, &sb.dec, NULL, final, out->hidden_states) != CP_OK) return CP_ERR;
    scale(final, B * Td * C, m->decoder_output_scale);
    const cp_task_labels labels = {.ids = sb.dec.labels, .ndim = 2, .shape = {B, Td}};
    cp_head_outputs ho = {.logits = out->logits};
    if (cp_head_forward(&run, &m->head, final, B, Td, sb.dec.input_ids, sb.dec.labels ? &labels : NULL, &ho) != CP_OK)
        return CP_ERR;
    out->loss_tokens = ho.n_items;
    out->loss = ho.loss;
    return CP_OK;
}

cp_status cp_seq2seq_forward_backward(cp_model *m, const cp_batch *user_batch, double norm, int recompute, double *loss_sum,
                                      int64_t *n_targets) {
    cp_run run;
    s2s_batches sb;
    if (start(m, user_batch, &run, &sb) != CP_OK) return CP_ERR;
    if (!sb.dec.labels) return cp_error("batch: training needs labels");
    if (prompt_encoder_batch(m, &run, &sb.enc) != CP_OK) return CP_ERR;
    const int64_t B = sb.enc.B, T = sb.enc.T, Td = sb.dec.T, C = m->config.hidden_size;
    float *enc = cp_arena_floats(&m->arena, (size_t)(B * T * C), "encoder states");               // (B,T,C)
    float *final = cp_arena_floats(&m->arena, (size_t)(B * Td * C), "decoder hidden states");      // (B,Td,C)
    float *d_final = cp_arena_floats(&m->arena, (size_t)(B * Td * C), "decoder output gradients"); // (B,Td,C)
    if (!enc || !final || !d_final) return CP_ERR;
    const int64_t n_virtual = run.n_virtual; /* the encoder's virtual tokens train through its backward */
    const int enc_trains = n_virtual > 0 || cp_stack_trains(m, &m->encoder_stack);
    void *enc_saved = NULL, *dec_saved = NULL;
    cp_status st = enc_trains ? cp_stack_forward_train_on(m, &m->encoder_stack, &run, &sb.enc, recompute, enc, &enc_saved)
                              : cp_stack_forward_on(m, &m->encoder_stack, &run, &sb.enc, NULL, enc, NULL);
    if (st != CP_OK) return CP_ERR;
    run.n_virtual = 0;
    if (prompt_decoder_batch(m, &run, &sb.dec) != CP_OK) return CP_ERR;
    cp_cross_states cs = {.states = enc, .mask = sb.enc.attention_mask, .Te = T};
    if (enc_trains) {
        if (!(cs.d_states = cp_arena_floats(&m->arena, (size_t)(B * T * C), "encoder state gradients"))) return CP_ERR;
        memset(cs.d_states, 0, (size_t)(B * T * C) * sizeof *cs.d_states);
    }
    run.cross = &cs;
    if (cp_stack_forward_train_on(m, &m->stack, &run, &sb.dec, recompute, final, &dec_saved) != CP_OK) return CP_ERR;
    scale(final, B * Td * C, m->decoder_output_scale);
    const cp_task_labels labels = {.ids = sb.dec.labels, .ndim = 2, .shape = {B, Td}};
    cp_head_outputs ho = {0};
    if (cp_head_backward(&run, &m->head, final, B, Td, sb.dec.input_ids, &labels, norm, d_final, &ho) != CP_OK) return CP_ERR;
    *loss_sum = ho.loss_sum;
    *n_targets = ho.n_items;
    scale(d_final, B * Td * C, m->decoder_output_scale); // h·s: dh = s·d(h·s)
    if (cp_stack_backward_on(m, &m->stack, &run, &sb.dec, d_final, dec_saved) != CP_OK) return CP_ERR;
    if (!enc_trains) return CP_OK;
    run.cross = NULL;
    run.n_virtual = n_virtual;
    run.n_prefix = 0;
    run.prefix_key_mask = NULL;
    return cp_stack_backward_on(m, &m->encoder_stack, &run, &sb.enc, cs.d_states, enc_saved);
}

/* ---- generation ------------------------------------------------------------------------------------ */

/* The positions a prompt-learning adapter adds to the encoder's rows (virtual input embeddings) and
 * to the decoder's self-attention cache (a key/value prefix). */
static void prompt_room(const cp_model *m, int64_t *enc, int64_t *self) {
    *enc = *self = 0;
    if (!m->prompt) return;
    const int64_t n = m->prompt->ops->n_virtual(m->prompt);
    *(m->prompt->ops->kv_prefix ? self : enc) = n;
}

cp_status cp_seq2seq_cache_init(const cp_model *m, cp_seq2seq_cache *c, int64_t B, int64_t Te, int64_t capacity) {
    memset(c, 0, sizeof *c);
    int64_t n_enc, n_self;
    prompt_room(m, &n_enc, &n_self);
    Te += n_enc;
    capacity += n_self;
    const int64_t C = m->config.hidden_size, D = m->config.num_heads * m->config.head_dim, L = m->stack.n_blocks;
    c->B = B;
    c->Te = Te;
    c->enc = cp_malloc((size_t)(B * Te * C) * sizeof *c->enc, "encoder states");
    c->enc_mask = cp_malloc((size_t)(B * Te) * sizeof *c->enc_mask, "encoder mask");
    c->cross_k = cp_malloc((size_t)(L * B * Te * D) * sizeof *c->cross_k, "cross-attention keys");
    c->cross_v = cp_malloc((size_t)(L * B * Te * D) * sizeof *c->cross_v, "cross-attention values");
    if (!c->enc || !c->enc_mask || !c->cross_k || !c->cross_v || cp_kv_cache_init(&c->self, L, B, capacity, D) != CP_OK) {
        cp_seq2seq_cache_free(c);
        return CP_ERR;
    }
    return CP_OK;
}

void cp_seq2seq_cache_free(cp_seq2seq_cache *c) {
    cp_free(c->enc);
    cp_free(c->enc_mask);
    cp_free(c->cross_k);
    cp_free(c->cross_v);
    cp_kv_cache_free(&c->self);
    memset(c, 0, sizeof *c);
}

static cp_status gen_start(cp_model *m, const cp_adapter_mix *mix, cp_run *run) {
    if (!m->has_weights) return cp_error("%s: the model was loaded without weights", m->dir);
    if (m->prompt && mix)
        return cp_error("%s: a mixed-adapter batch (adapter_names) cannot run a prompt-learning adapter: PEFT's adapter_names is for "
                        "methods that adapt modules", m->dir);
    cp_arena_reset(&m->arena);
    *run = cp_model_run(m);
    run->mix = mix;
    return CP_OK;
}

cp_status cp_seq2seq_encode(cp_model *m, const cp_batch *b, const cp_adapter_mix *mix, cp_seq2seq_cache *c) {
    cp_run run;
    int64_t n_enc, n_self;
    prompt_room(m, &n_enc, &n_self);
    if (b->B != c->B || b->T + n_enc != c->Te)
        return cp_error("generate: an encoder batch of (%lld, %lld) and %lld virtual tokens for a cache of (%lld, %lld)",
                        (long long)b->B, (long long)b->T, (long long)n_enc, (long long)c->B, (long long)c->Te);
    if (gen_start(m, mix, &run) != CP_OK || check_mask(b->attention_mask, b->B * b->T, "attention_mask") != CP_OK) return CP_ERR;
    cp_batch eb = {.B = b->B, .T = b->T, .input_ids = b->input_ids, .attention_mask = b->attention_mask};
    if (prompt_encoder_batch(m, &run, &eb) != CP_OK || // PeftModelForSeq2SeqLM.generate: the virtual tokens before the inputs
        cp_stack_forward_on(m, &m->encoder_stack, &run, &eb, NULL, c->enc, NULL) != CP_OK)
        return CP_ERR;
    for (int64_t i = 0; i < eb.B * eb.T; i++) c->enc_mask[i] = eb.attention_mask ? eb.attention_mask[i] : 1;
    c->cross_ready = 0;
    return CP_OK;
}

cp_status cp_seq2seq_step(cp_model *m, const cp_batch *dec, const cp_adapter_mix *mix, cp_seq2seq_cache *c, float *logits) {
    cp_run run;
    if (dec->B != c->B) return cp_error("batch: %lld rows, but the cache holds %lld", (long long)dec->B, (long long)c->B);
    if (gen_start(m, mix, &run) != CP_OK) return CP_ERR;
    const int64_t B = dec->B, T = dec->T, C = m->config.hidden_size;
    const cp_cross_states cs = {.states = c->enc, .mask = c->enc_mask, .Te = c->Te, .cache_k = c->cross_k,
                                .cache_v = c->cross_v, .cached = c->cross_ready};
    run.cross = &cs;
    const cp_batch db = {.B = B, .T = T, .input_ids = dec->input_ids, .attention_mask = dec->attention_mask};
    cp_batch pb;
    /* prefix tuning: prepare_inputs_for_generation hands get_prompt() to the first step as its past_key_values */
    if (is_prefix(&run) && c->self.len == 0 && cp_model_prompt_batch(m, &run, &db, &c->self, &pb) != CP_OK) return CP_ERR;
    float *final = cp_arena_floats(&m->arena, (size_t)(B * T * C), "decoder hidden states"); // (B,T,C)
    float *last = cp_arena_floats(&m->arena, (size_t)(B * C), "last hidden states");        // (B,C)
    if (!final || !last || cp_kv_cache_begin(&c->self, dec->attention_mask, T) != CP_OK ||
        cp_stack_forward_on(m, &m->stack, &run, &db, &c->self, final, NULL) != CP_OK)
        return CP_ERR;
    c->cross_ready = 1;
    for (int64_t r = 0; r < B; r++) memcpy(last + r * C, final + (r * T + T - 1) * C, (size_t)C * sizeof *last);
    scale(last, B * C, m->decoder_output_scale);
    if (cp_proj_forward(&run, m->lm_head, logits, last, B) != CP_OK) return CP_ERR;
    const float *bias = m->head.logits_bias; /* BART's final_logits_bias, as the head adds it in the forward */
    for (int64_t r = 0; bias && r < B; r++) cp_add_inplace(logits + r * m->config.vocab_size, bias, m->config.vocab_size);
    cp_kv_cache_advance(&c->self, T);
    return CP_OK;
}
