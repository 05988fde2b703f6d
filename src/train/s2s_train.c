/*
 * s2s_train.c — SEQ_2_SEQ_LM in the trainer (an encoder-decoder model: t5, mt5; see trainer.h): the
 * source / target records of seq2seq_data.h (train file, eval file or a held-out split), the
 * micro-batches (encoder input_ids / attention_mask (B,T), labels (B,Td) padded with -100; the
 * decoder inputs are the labels shifted right by the model, as T5ForConditionalGeneration does when
 * it is given labels only), and the evaluation: the mean cross-entropy over every target token of the
 * eval data, as Seq2SeqTrainer's eval_loss on unshuffled batches of the training batch size (the loop
 * is cp_trainer_evaluate's).
 */
#include "train/trainer.h"
#include "core/alloc.h"
#include "models/model.h"

#include <string.h>

#define S2S_DEFAULT_MAX_SOURCE 512 /* T5's model_max_length */
#define S2S_DEFAULT_MAX_TARGET 128 /* run_summarization.py's max_target_length */

int cp_s2s_task_of(const cp_model *m) { return m->task == CP_TASK_SEQ_2_SEQ_LM; }

static void s2s_options(const cp_train_options *o, const char *path, cp_s2s_options *so) {
    *so = (cp_s2s_options){.path = path, .source_field = o->source_field, .target_field = o->target_field,
                           .source_prefix = o->source_prefix, .max_source_length = o->max_source_length,
                           .max_target_length = o->max_target_length, .strict = o->strict};
}

/* Keeps the first n examples (n <= 0: all). */
static void keep_first(cp_s2s_dataset *ds, int64_t n) {
    if (n <= 0 || n >= ds->n) return;
    for (int64_t i = n; i < ds->n; i++) {
        ds->n_source_tokens -= ds->examples[i].n_src;
        ds->n_target_tokens -= ds->examples[i].n_tgt;
        cp_free(ds->examples[i].src);
        cp_free(ds->examples[i].tgt);
        cp_free(ds->examples[i].source_text);
        cp_free(ds->examples[i].target_text);
    }
    ds->n = n;
}

/* A held-out fraction of ds moved into val, chosen as cp_dataset_split chooses it (cp_split_examples);
 * the token counts follow their examples. */
static cp_status split(cp_s2s_dataset *ds, double fraction, uint64_t seed, cp_s2s_dataset *val) {
    memset(val, 0, sizeof *val);
    void *vex;
    if (cp_split_examples(ds->examples, sizeof *ds->examples, &ds->n, fraction, seed, &vex, &val->n) != CP_OK)
        return CP_ERR;
    val->examples = vex;
    for (int64_t i = 0; i < val->n; i++) {
        const cp_s2s_example *ex = &val->examples[i];
        val->n_source_tokens += ex->n_src;
        val->n_target_tokens += ex->n_tgt;
        ds->n_source_tokens -= ex->n_src;
        ds->n_target_tokens -= ex->n_tgt;
    }
    return CP_OK;
}

cp_status cp_s2s_trainer_setup(cp_trainer *t) {
    cp_train_options *a = &t->o;
    t->s2s = 1;
    if (a->task_type && strcmp(a->task_type, cp_model_task_type(t->m)))
        return cp_error("--task-type %s, but the model was loaded for %s", a->task_type, cp_model_task_type(t->m));
    if (a->max_source_length == 0) a->max_source_length = S2S_DEFAULT_MAX_SOURCE;
    if (a->max_target_length == 0) a->max_target_length = S2S_DEFAULT_MAX_TARGET;
    if (t->m->config.decoder_start_token_id < 0)
        return cp_error("%s/config.json has no decoder_start_token_id: the decoder inputs (the labels shifted right) cannot "
                        "be made", t->m->dir);
    cp_s2s_options so;
    s2s_options(a, a->data_path, &so);
    if (cp_s2s_dataset_load(&t->strain, t->tok, &so) != CP_OK) return CP_ERR;
    if (t->strain.n == 0) return cp_error("%s: no records", a->data_path);
    keep_first(&t->strain, a->max_train_samples);
    if (a->eval_data_path) {
        s2s_options(a, a->eval_data_path, &so);
        if (cp_s2s_dataset_load(&t->seval, t->tok, &so) != CP_OK) return CP_ERR;
        if (t->seval.n == 0) return cp_error("%s: no records", a->eval_data_path);
        keep_first(&t->seval, a->max_eval_samples);
        t->has_eval = 1;
    } else if (a->validation_split > 0) {
        if (split(&t->strain, a->validation_split, (uint64_t)a->seed, &t->seval) != CP_OK) return CP_ERR;
        t->has_eval = 1;
    }
    t->sb = cp_calloc((size_t)a->gradient_accumulation_steps, sizeof *t->sb, "micro-batches");
    return t->sb ? CP_OK : CP_ERR;
}

void cp_s2s_trainer_free(cp_trainer *t) {
    for (int64_t i = 0; t->sb && i < t->o.gradient_accumulation_steps; i++) cp_s2s_batch_free(&t->sb[i]);
    cp_free(t->sb);
    cp_s2s_dataset_free(&t->strain);
    cp_s2s_dataset_free(&t->seval);
    for (size_t i = 0; i < sizeof t->s2s_strings / sizeof *t->s2s_strings; i++) cp_free(t->s2s_strings[i]);
}

static cp_batch as_batch(const cp_s2s_batch *sb) {
    return (cp_batch){.B = sb->B, .T = sb->T, .input_ids = sb->input_ids, .attention_mask = sb->attention_mask,
                      .labels = sb->labels, .Td = sb->Td};
}

cp_status cp_s2s_micro_batch(cp_trainer *t, const cp_s2s_dataset *ds, const int64_t *order, int64_t start, int64_t count,
                             cp_s2s_batch *sb, cp_batch *out) {
    if (cp_s2s_batch_make(ds, order, start, count, t->pad_id, sb) != CP_OK) return CP_ERR;
    *out = as_batch(sb);
    return CP_OK;
}
