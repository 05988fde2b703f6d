/*
 * trainer.c — the trainer (cp_trainer of include/cpeft.h): the training loop and everything around
 * it, reported through callbacks, never printed.
 *
 *   create   options checked and copied; output directory taken; pad token (the tokenizer's, else
 *            eos); data (train + eval file or held-out split); adapter (the model's own, a PEFT
 *            config, LoRA options or a checkpoint); trainable parameters and AdamW; the position of
 *            a resumed run (train_state.c)
 *   step     micro-batches run in a fixed order (epoch e shuffled from seed and e; LoRA's and the
 *            model's dropout masks seeded from seed and the micro-batch index, model_dropout
 *            switching the model's own off), accumulation of them per optimizer step,
 *            so a run is a pure function of its options and resuming is exact; then, when the
 *            step's number calls for them, a log (on_log, metrics.jsonl), an evaluation and a
 *            checkpoint-N/. A NaN/Inf loss stops before the bad step is applied, keeping the last
 *            good checkpoint
 *   run      the evaluation before training, the steps, and at the end the final evaluation and
 *            the final adapter; a stop request (cp_trainer_request_stop, e.g. from cpeft train's
 *            SIGINT handler) ends it after the step under way, with a checkpoint
 *
 * The output directory (train/output_dir.c) is locked for the trainer's life and refused when it
 * already holds something, unless the run overwrites or resumes; every checkpoint-N/ replaces an
 * existing one in one step and the final adapter is committed in one step, so a kill at any instant
 * leaves complete checkpoints and a complete final adapter, old or new.
 */
#include "train/trainer.h"
#include "chat/chat_template.h"
#include "core/alloc.h"
#include "io/fsutil.h"
#include "models/model.h"
#include "models/bf16.h"
#include "peft/adapter_io.h"
#include "peft/peft_config.h"
#include "peft/peft_model.h"
#include "train/dist.h"
#include "train/step.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "cp_trainer_request_stop needs a lock-free atomic int to be async-signal-safe");

double cp_trainer_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

uint64_t cp_trainer_mix(uint64_t a, uint64_t b) {
    uint64_t z = a * 0x9e3779b97f4a7c15ull ^ (b + 0x632be59bd9b4e019ull + (a << 6) + (a >> 2));
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    return z ^ (z >> 31);
}

void cp_loss_series_add(cp_loss_series *s, double step, double value) {
    if (s->n == s->cap) {
        int64_t cap = s->cap ? 2 * s->cap : 256;
        double *a = cp_realloc(s->step, (size_t)cap * sizeof *a, "history");
        if (!a) return;
        s->step = a;
        double *b = cp_realloc(s->value, (size_t)cap * sizeof *b, "history");
        if (!b) return;
        s->value = b;
        s->cap = cap;
    }
    s->step[s->n] = step;
    s->value[s->n++] = value;
}

/* ---- callbacks ------------------------------------------------------------------------------------ */

static cp_status callback_result(int rc, const char *which, int64_t step) {
    return rc ? cp_error("stopped by the %s callback (it returned %d) at step %lld", which, rc, (long long)step) : CP_OK;
}

/* ---- setup ---------------------------------------------------------------------------------------- */

/* The copy of the options keeps its own strings (the caller's may go away after create). */
static cp_status copy_options(cp_trainer *t, const cp_train_options *o) {
    t->o = *o;
    const char **fields[] = {&t->o.data_path, &t->o.eval_data_path, &t->o.text_field, &t->o.adapter_name,
                             &t->o.peft_config_path, &t->o.output_dir, &t->o.resume_from, &t->o.run_name};
    _Static_assert(sizeof fields / sizeof *fields == sizeof t->strings / sizeof *t->strings, "one owned string per field");
    if (!t->o.adapter_name) t->o.adapter_name = "default";
    if (!t->o.text_field) t->o.text_field = "text";
    if (!t->o.run_name) t->o.run_name = "cpeft";
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        if (!*fields[i]) continue;
        if (!(t->strings[i] = cp_strdup(*fields[i]))) return CP_ERR;
        *fields[i] = t->strings[i];
    }
    const char **cls_fields[] = {&t->o.text_pair_field, &t->o.label_field, &t->o.task_type};
    _Static_assert(sizeof cls_fields / sizeof *cls_fields == sizeof t->cls_strings / sizeof *t->cls_strings, "one owned string per field");
    for (size_t i = 0; i < sizeof cls_fields / sizeof *cls_fields; i++) {
        if (!*cls_fields[i]) continue;
        if (!(t->cls_strings[i] = cp_strdup(*cls_fields[i]))) return CP_ERR;
        *cls_fields[i] = t->cls_strings[i];
    }
    const char **s2s_fields[] = {&t->o.source_field, &t->o.target_field, &t->o.source_prefix};
    _Static_assert(sizeof s2s_fields / sizeof *s2s_fields == sizeof t->s2s_strings / sizeof *t->s2s_strings, "one owned string per field");
    for (size_t i = 0; i < sizeof s2s_fields / sizeof *s2s_fields; i++) {
        if (!*s2s_fields[i]) continue;
        if (!(t->s2s_strings[i] = cp_strdup(*s2s_fields[i]))) return CP_ERR;
        *s2s_fields[i] = t->s2s_strings[i];
    }
    const char **log_fields[] = {&t->o.metric_for_best_model, &t->o.report_to, &t->o.logging_dir};
    _Static_assert(sizeof log_fields / sizeof *log_fields == sizeof t->log_strings / sizeof *t->log_strings, "one owned string per field");
    for (size_t i = 0; i < sizeof log_fields / sizeof *log_fields; i++) {
        if (!*log_fields[i]) continue;
        if (!(t->log_strings[i] = cp_strdup(*log_fields[i]))) return CP_ERR;
        *log_fields[i] = t->log_strings[i];
    }
    /* the LoRA option strings are used during create only */
    return CP_OK;
}

/* Resuming: the checkpoint's adapter, trainable. A prompt-learning adapter's file holds the encoded
 * prompt_embeddings only (PEFT refuses to load one trainable): its encoder is built from the
 * checkpoint's config and takes its parameters from optimizer.safetensors (train_state.c). */
static cp_status resume_adapter(cp_trainer *t) {
    const cp_train_options *a = &t->o;
    char *path = cp_path_join(a->resume_from, "adapter_config.json");
    cp_peft_config *cfg = NULL;
    cp_status st = path ? cp_peft_config_load(path, &cfg) : CP_ERR;
    cp_free(path);
    if (st == CP_OK && !cfg->method->prompt) st = cp_adapter_load(t->m, a->resume_from, a->adapter_name, 1, 1);
    else if (st == CP_OK) {
        cfg->inference_mode = 0;
        cp_rng rng;
        cp_rng_seed(&rng, cp_trainer_mix((uint64_t)a->seed, 0x1a2b));
        st = cp_peft_add(t->m, a->adapter_name, cfg, &rng, 1, 1);
    }
    cp_peft_config_free(cfg);
    return st;
}

static cp_status setup_adapter(cp_trainer *t, const cp_train_options *caller) {
    const cp_train_options *a = &t->o;
    if (a->resume_from) return resume_adapter(t);
    cp_peft_adapter *have = cp_peft_find_adapter(t->m, a->adapter_name);
    if (have) { /* the program attached it: trained as it is */
        if (!have->trainable)
            return cp_error("adapter \"%s\" is frozen (loaded with is_trainable 0, or from a config in inference_mode): "
                            "nothing to train", a->adapter_name);
        for (int i = 0; i < t->m->peft->n_active; i++)
            if (!strcmp(t->m->peft->active[i], a->adapter_name) && !t->m->peft->disabled) return CP_OK;
        return cp_error("adapter \"%s\" is not active (cp_model_set_adapters) or adapters are disabled", a->adapter_name);
    }
    cp_peft_config *cfg = NULL; /* any method's config from the file, else LoRA's from the options */
    cp_status st = a->peft_config_path ? cp_peft_config_load(a->peft_config_path, &cfg)
                                       : cp_lora_config_for_task(&caller->lora, cp_model_task_type(t->m), &cfg);
    /* PEFT's get_peft_model would freeze such an adapter and Trainer then fails ("element 0 of tensors
     * does not require grad"); training makes it trainable, and the saved config says inference_mode
     * true whatever this one said, as save_pretrained writes it */
    if (st == CP_OK && cfg->inference_mode) {
        cp_warn("%s says \"inference_mode\": true (as every saved adapter_config.json does); training the adapter anyway "
                "(get_peft_model would freeze it)", a->peft_config_path);
        cfg->inference_mode = 0; /* a prompt encoder is built whole, as for training */
    }
    if (st == CP_OK) {
        cp_rng rng;
        cp_rng_seed(&rng, cp_trainer_mix((uint64_t)a->seed, 0x1a2b));
        st = cp_peft_add(t->m, a->adapter_name, cfg, &rng, 1, 1);
    }
    cp_peft_config_free(cfg);
    return st;
}

/* The chat template conversational records are rendered with: o.chat_template (a .jinja file, or a
 * tokenizer_config.json) or the model directory's. An explicit file must load; the model's may be
 * missing or beyond the Jinja subset, which only matters (and is then reported) when the data is
 * conversational. */
static cp_status load_chat_template(cp_trainer *t) {
    const char *path = t->o.chat_template;
    if (path) {
        if (!(t->chat_path = cp_strdup(path))) return CP_ERR;
        t->o.chat_template = t->chat_path;
        if (cp_chat_template_load_file(&t->chat, path) != CP_OK) return cp_error_context("--chat-template");
        size_t n = strlen(path);
        if (n >= 5 && !strcmp(path + n - 5, ".json")) return CP_OK; /* a tokenizer_config.json brings its tokens */
        /* bos_token / eos_token: the tokenizer's (tokenizer_config.json's, as the template sees them there) */
        const cp_tokenizer *tok = t->tok;
        return cp_chat_template_set_tokens(t->chat, cp_tokenizer_id_to_token(tok, cp_tokenizer_special_id(tok, CP_SPECIAL_BOS)),
                                           cp_tokenizer_id_to_token(tok, cp_tokenizer_special_id(tok, CP_SPECIAL_EOS)));
    }
    if (!t->m->dir) return CP_OK;
    if (cp_chat_template_load_dir(&t->chat, t->m->dir, NULL) != CP_OK) {
        t->chat = NULL;
        if (!(t->chat_error = cp_strdup(cp_last_error()))) return CP_ERR;
        cp_clear_error();
    }
    return CP_OK;
}

static cp_status setup_data(cp_trainer *t) {
    const cp_train_options *a = &t->o;
    if (cp_class_task_of(t->m) >= 0) return cp_class_trainer_setup(t);
    if (cp_s2s_task_of(t->m)) return cp_s2s_trainer_setup(t);
    if (a->task_type && strcmp(a->task_type, cp_model_task_type(t->m)))
        return cp_error("--task-type %s, but the model was loaded for %s", a->task_type, cp_model_task_type(t->m));
    if (load_chat_template(t) != CP_OK) return CP_ERR;
    cp_data_options dopt = {.path = a->data_path, .format = CP_DATA_AUTO, .text_field = a->text_field,
                            .max_seq_length = a->max_seq_length, .strict = a->strict, .chat_template = t->chat,
                            .chat_template_error = t->chat_error, .assistant_only_loss = a->assistant_only_loss,
                            .full_loss = !a->completion_only_loss};
    if (cp_dataset_load(&t->train, t->tok, &dopt) != CP_OK) return CP_ERR;
    if (a->eval_data_path) {
        dopt.path = a->eval_data_path;
        if (cp_dataset_load(&t->eval, t->tok, &dopt) != CP_OK) return CP_ERR;
        t->has_eval = 1;
    } else if (a->validation_split > 0) {
        if (cp_dataset_split(&t->train, a->validation_split, (uint64_t)a->seed, &t->eval) != CP_OK) return CP_ERR;
        t->has_eval = 1;
    }
    if (t->train.n_target_tokens == 0)
        return cp_error("%s: the data has no response tokens to learn from (every label is masked)", a->data_path);
    return CP_OK;
}

/* The positions a prompt-learning adapter takes before every row (0 for other methods): the adapter
 * already on the model, or the config it will be made from (--peft-config, the checkpoint's). */
static cp_status prompt_positions(cp_trainer *t, int64_t *n) {
    const cp_train_options *a = &t->o;
    const cp_peft_adapter *have = a->resume_from ? NULL : cp_peft_find_adapter(t->m, a->adapter_name);
    *n = 0;
    if (have) {
        if (have->config->method->prompt) *n = have->config->method->prompt->positions(have->config);
        return CP_OK;
    }
    char *path = a->resume_from ? cp_path_join(a->resume_from, "adapter_config.json") : a->peft_config_path ? cp_strdup(a->peft_config_path) : NULL;
    cp_peft_config *cfg = NULL;
    cp_status st = path ? cp_peft_config_load(path, &cfg) : CP_OK;
    if (st == CP_OK && cfg && cfg->method->prompt) *n = cfg->method->prompt->positions(cfg);
    cp_peft_config_free(cfg);
    cp_free(path);
    return st;
}

/* PEFT's refusals for an adapter it would not train this way. */
static cp_status check_method(cp_trainer *t) {
    const cp_peft_adapter *ad = cp_peft_find_adapter(t->m, t->o.adapter_name);
    const cp_prompt_learning *p = ad ? ad->config->method->prompt : NULL;
    if (t->o.gradient_checkpointing && p && p->no_gradient_checkpointing)
        return cp_error("--gradient-checkpointing: %s", p->no_gradient_checkpointing);
    return CP_OK;
}

static cp_status setup(cp_trainer *t, const cp_train_options *caller) {
    cp_train_options *a = &t->o;
    if (a->output_dir && cp_dist_rank() == 0) { /* rank 0 alone writes (train/dist_train.c checks the others see it) */
        char holder[256];
        snprintf(holder, sizeof holder, "%s (pid %d)", a->run_name, (int)getpid());
        if (cp_output_dir_open(&t->out, a->output_dir, a->overwrite_output_dir || a->resume_from,
                               "--overwrite-output-dir or --resume-from-checkpoint", holder, &t->cleaned) != CP_OK)
            return CP_ERR;
    }
    const cp_model_config *mc = &t->m->config;
    t->m->model_dropout = a->model_dropout; /* before the memory plan's dry run, which measures the dropout's scratch */
    /* a prompt-learning adapter's virtual tokens come before every row: with a learned position table
     * they take positions from the data */
    int64_t virt = 0;
    if (prompt_positions(t, &virt) != CP_OK) return CP_ERR;
    const int64_t room = t->m->arch->learned_positions ? mc->max_positions - virt : mc->max_positions;
    if (a->max_seq_length == 0) a->max_seq_length = room < 1024 ? room : 1024;
    if (a->max_seq_length > room && virt && t->m->arch->learned_positions)
        return cp_error("--max-seq-length %lld and the adapter's %lld virtual tokens exceed the model's %lld positions (at most "
                        "--max-seq-length %lld)", (long long)a->max_seq_length, (long long)virt, (long long)mc->max_positions,
                        (long long)room);
    if (a->max_seq_length > mc->max_positions)
        return cp_error("--max-seq-length %lld exceeds the model's %lld positions", (long long)a->max_seq_length,
                        (long long)mc->max_positions);
    if (a->max_seq_length < 2) return cp_error("%lld virtual tokens leave no room for the data in the model's %lld positions",
                                               (long long)virt, (long long)mc->max_positions);
    /* pad: the tokenizer's, else eos (documented default), as most fine-tuning scripts set it */
    int32_t pad = cp_tokenizer_special_id(t->tok, CP_SPECIAL_PAD);
    if (pad == CP_TOKEN_NONE) {
        pad = cp_tokenizer_special_id(t->tok, CP_SPECIAL_EOS);
        if (pad == CP_TOKEN_NONE) return cp_error("the tokenizer has neither a pad nor an eos token");
        t->pad_is_eos = 1;
    }
    if (pad >= mc->vocab_size) /* every batch with padding would embed it */
        return cp_error("the pad token id %d (the tokenizer's %s token) is outside the model's vocabulary [0, %lld) (vocab_size)",
                        pad, t->pad_is_eos ? "eos" : "pad", (long long)mc->vocab_size);
    t->pad_id = pad;
    if (setup_data(t) != CP_OK || setup_adapter(t, caller) != CP_OK || check_method(t) != CP_OK ||
        cp_peft_trainable_params(t->m, &t->params, &t->n_params) != CP_OK)
        return CP_ERR;
    /* --quantize: the frozen token embedding and LM head too, before --bf16 would pack panels of them */
    if (cp_peft_quantize_embeddings(t->m, t->params, t->n_params, NULL) != CP_OK) return CP_ERR;
    if (a->bf16 && cp_model_use_bf16(t->m, t->params, t->n_params, NULL) != CP_OK) return CP_ERR; /* after the adapter: its weights stay f32 */
    if (t->n_params == 0) return cp_error("adapter \"%s\" has no trainable parameters", a->adapter_name);
    cp_adamw_config oc = {a->learning_rate, a->adam_beta1, a->adam_beta2, a->adam_epsilon, a->weight_decay};
    const int64_t B = a->per_device_train_batch_size, GA = a->gradient_accumulation_steps;
    const int64_t n_train = cp_trainer_n_train(t);
    t->order = cp_malloc((size_t)n_train * sizeof *t->order, "the epoch order");
    t->bd = cp_calloc((size_t)GA, sizeof *t->bd, "micro-batches");
    t->micro = cp_calloc((size_t)GA, sizeof *t->micro, "micro-batches");
    if (!t->order || !t->bd || !t->micro || cp_adamw_init(&t->opt, t->params, t->n_params, oc) != CP_OK) return CP_ERR;
    /* micro-batches per epoch on each rank (all of them with one process) */
    t->batches_per_epoch = cp_dist_batches_per_rank(n_train, cp_dist_size(), B);
    t->shard = cp_malloc((size_t)(B * cp_dist_size()) * sizeof *t->shard, "the global batch's order");
    if (!t->shard) return CP_ERR;
    t->steps_per_epoch = t->batches_per_epoch / GA > 0 ? t->batches_per_epoch / GA : 1;
    t->total_steps = a->max_steps > 0 ? a->max_steps : (int64_t)ceil(a->num_train_epochs * (double)t->steps_per_epoch);
    t->warmup_steps = a->warmup_steps > 0 ? a->warmup_steps : (int64_t)ceil(a->warmup_ratio * (double)t->total_steps);
    if (cp_train_report_setup(t) != CP_OK) return CP_ERR;
    if (a->resume_from && cp_trainer_load_checkpoint_state(t, a->resume_from) != CP_OK) return CP_ERR;
    if (a->output_dir && cp_dist_rank() == 0) {
        char *path = cp_path_join(a->output_dir, "metrics.jsonl");
        t->metrics = path ? fopen(path, a->resume_from ? "a" : "w") : NULL;
        cp_free(path);
        if (!t->metrics) return cp_error("%s: cannot write metrics.jsonl", a->output_dir);
    }
    return CP_OK;
}

cp_status cp_trainer_create(cp_trainer **out, cp_model *m, const cp_tokenizer *tok, const cp_train_options *o) {
    *out = NULL;
    if (!m || !tok) return cp_error("cp_trainer_create: no model or no tokenizer");
    if (cp_train_options_check(o) != CP_OK) return CP_ERR;
    cp_trainer *t = cp_calloc(1, sizeof *t, "the trainer");
    if (!t) return CP_ERR;
    t->m = m;
    t->tok = tok;
    t->order_epoch = -1;
    t->t0_step = -1;
    t->out.lock_fd = -1;
    atomic_init(&t->stop, 0);
    /* every rank learns of a failure on any (a rank without the data file), then checks that all
     * run the same configuration and share the output directory (dist_train.c) */
    cp_status st = copy_options(t, o);
    if (st == CP_OK) st = setup(t, o);
    if (cp_dist_agree(st) != CP_OK || cp_trainer_dist_check(t) != CP_OK) {
        if (st == CP_OK && t->metrics && !t->o.resume_from) { /* another rank failed: leave the directory reusable */
            char *path = cp_path_join(t->o.output_dir, "metrics.jsonl");
            fclose(t->metrics);
            t->metrics = NULL;
            if (path) unlink(path);
            cp_free(path);
        }
        if (st == CP_OK && t->tb.path && !t->o.resume_from) unlink(t->tb.path);
        cp_trainer_free(t);
        return CP_ERR;
    }
    *out = t;
    return CP_OK;
}

void cp_trainer_free(cp_trainer *t) {
    if (!t) return;
    if (t->metrics) fclose(t->metrics);
    cp_train_report_free(t);
    for (size_t i = 0; i < sizeof t->log_strings / sizeof *t->log_strings; i++) cp_free(t->log_strings[i]);
    cp_output_dir_close(&t->out);
    cp_adamw_free(&t->opt);
    for (int64_t i = 0; t->bd && i < t->o.gradient_accumulation_steps; i++) cp_batch_data_free(&t->bd[i]);
    cp_free(t->bd);
    cp_free(t->micro);
    cp_free(t->params);
    cp_free(t->order);
    cp_free(t->shard);
    cp_dataset_free(&t->train);
    cp_chat_template_free(t->chat);
    cp_free(t->chat_error);
    cp_free(t->chat_path);
    if (t->has_eval && !t->cls && !t->s2s) cp_dataset_free(&t->eval);
    cp_class_trainer_free(t);
    cp_s2s_trainer_free(t);
    cp_free(t->train_loss.step);
    cp_free(t->train_loss.value);
    cp_free(t->eval_loss.step);
    cp_free(t->eval_loss.value);
    for (size_t i = 0; i < sizeof t->strings / sizeof *t->strings; i++) cp_free(t->strings[i]);
    cp_free(t);
}

/* ---- batches -------------------------------------------------------------------------------------- */

static cp_batch as_batch(const cp_batch_data *bd) {
    cp_batch b = {.B = bd->B, .T = bd->T, .input_ids = bd->input_ids, .attention_mask = bd->attention_mask, .labels = bd->labels};
    return b;
}

/* Rows r0 .. r0 + n − 1 of batch b (a view: the same arrays from row r0 on). */
static cp_batch batch_rows(const cp_model *m, cp_batch b, int64_t r0, int64_t n) {
    const int64_t T = b.T, Td = b.Td ? b.Td : T, K = m->head.num_labels > 1 ? m->head.num_labels : 1;
#define ROWS(f, w) if (b.f) b.f += r0 * (w)
    ROWS(input_ids, T); ROWS(attention_mask, T); ROWS(position_ids, T); ROWS(token_type_ids, T); ROWS(bbox, 4 * T);
    ROWS(labels, m->task == CP_TASK_SEQ_CLS ? 1 : m->task == CP_TASK_SEQ_2_SEQ_LM ? Td : T);
    ROWS(label_values, K); ROWS(decoder_input_ids, Td); ROWS(decoder_attention_mask, Td);
#undef ROWS
    b.B = n;
    return b;
}

/* Micro-batch g of the run (slot i of the step) into t->micro[i]. Under MPI every rank makes the whole
 * global micro-batch (N·b rows, padded to its longest as one process pads it; the copies cost nothing
 * next to the forward) and runs its rows r·b .. r·b + b − 1: the positions of every row are then the
 * single-process run's, and so are its dropout masks (keyed by the global row, models/run.h). */
static cp_status micro_batch(cp_trainer *t, int64_t g, int64_t i) {
    const int64_t B = t->o.per_device_train_batch_size, n = cp_trainer_n_train(t);
    int64_t epoch = g / t->batches_per_epoch, j = g % t->batches_per_epoch;
    if (epoch != t->order_epoch) {
        for (int64_t k = 0; k < n; k++) t->order[k] = k;
        cp_rng rng;
        cp_rng_seed(&rng, cp_trainer_mix((uint64_t)t->o.seed, (uint64_t)epoch + 1));
        cp_dataset_shuffle(t->order, n, &rng);
        t->order_epoch = epoch;
    }
    int64_t start = j * B, count = n - start < B ? n - start : B;
    const int64_t *order = t->order, N = cp_dist_size();
    if (N > 1) { /* global batch j: the ranks' batches j·N .. j·N + N − 1 (train/dist.h: accelerate's even_batches) */
        for (int64_t q = 0; q < N * B; q++) t->shard[q] = t->order[cp_dist_stream_index(j * N * B + q, n, N, B)];
        order = t->shard;
        start = 0;
        count = N * B;
    }
    cp_status st;
    if (t->cls) st = cp_class_micro_batch(t, order, start, count, &t->cb[i], &t->micro[i]);
    else if (t->s2s) st = cp_s2s_micro_batch(t, &t->strain, order, start, count, &t->sb[i], &t->micro[i]);
    else if ((st = cp_batch_make(&t->train, order, start, count, t->pad_id, &t->bd[i])) == CP_OK) t->micro[i] = as_batch(&t->bd[i]);
    if (st == CP_OK && N > 1) t->micro[i] = batch_rows(t->m, t->micro[i], cp_dist_rank() * B, B);
    return st;
}

cp_status cp_trainer_evaluate(cp_trainer *t, double *loss) {
    *loss = NAN;
    if (!t->has_eval) return cp_error("no evaluation data (eval_data_path or validation_split)");
    if (t->cls) {
        cp_train_eval e;
        cp_status st = cp_trainer_evaluate_metrics(t, &e);
        *loss = e.loss;
        return st;
    }
    /* the language-model or seq2seq eval data in unshuffled batches of the training batch size; under
     * MPI rank r runs batches r, r + N, ... and the sums are reduced */
    const int64_t B = t->o.per_device_train_batch_size, n = t->s2s ? t->seval.n : t->eval.n;
    const int64_t N = cp_dist_size(), r = cp_dist_rank();
    cp_batch_data bd = {0};
    cp_s2s_batch sb = {0};
    double sum = 0;
    int64_t count = 0;
    cp_status st = CP_OK;
    for (int64_t s = r * B; s < n && st == CP_OK; s += N * B) {
        const int64_t nb = n - s < B ? n - s : B;
        cp_batch b;
        if (t->s2s) st = cp_s2s_micro_batch(t, &t->seval, NULL, s, nb, &sb, &b);
        else if ((st = cp_batch_make(&t->eval, NULL, s, nb, t->pad_id, &bd)) == CP_OK) b = as_batch(&bd);
        if (st != CP_OK) break;
        cp_outputs out = {0};
        if ((st = cp_model_forward(t->m, &b, &out)) != CP_OK) break;
        if (out.loss_tokens) { sum += out.loss * (double)out.loss_tokens; count += out.loss_tokens; }
    }
    cp_batch_data_free(&bd);
    cp_s2s_batch_free(&sb);
    /* a rank's failure here is its own: the caller ends the job (cp_dist_abort) */
    double sums[2] = {sum, (double)count};
    if (st == CP_OK) st = cp_dist_sum_f64(sums, 2, "summing the evaluation loss");
    *loss = sums[1] > 0 ? sums[0] / sums[1] : NAN;
    return st;
}

cp_status cp_trainer_evaluate_metrics(cp_trainer *t, cp_train_eval *e) {
    *e = (cp_train_eval){.step = t->step, .total_steps = t->total_steps, .loss = NAN, .when = CP_EVAL_DURING, .accuracy = NAN,
                         .macro_f1 = NAN, .precision = NAN, .recall = NAN, .f1 = NAN};
    if (!t->has_eval) return cp_error("no evaluation data (eval_data_path or validation_split)");
    if (t->cls) return cp_class_trainer_evaluate(t, e); /* sharded over the ranks (class_eval.c): every rank has the metrics */
    e->examples = t->s2s ? t->seval.n : t->eval.n;
    return cp_trainer_evaluate(t, &e->loss);
}

/* An evaluation recorded (history, metrics.jsonl) and reported. */
static cp_status evaluate_and_report(cp_trainer *t, cp_eval_when when) {
    cp_train_eval e;
    const double t0 = cp_trainer_now();
    if (cp_trainer_evaluate_metrics(t, &e) != CP_OK) return CP_ERR;
    e.when = when;
    cp_loss_series_add(&t->eval_loss, (double)t->step, e.loss);
    if (cp_train_report_eval(t, &e, cp_trainer_now() - t0) != CP_OK) return CP_ERR;
    if (cp_dist_rank() != 0) return CP_OK; /* rank 0 reports */
    if (t->metrics) {
        fprintf(t->metrics, "{\"step\": %lld, \"eval_loss\": %.6f", (long long)t->step, e.loss);
        const char *keys[] = {"eval_accuracy", "eval_macro_f1", "eval_precision", "eval_recall", "eval_f1"};
        const double vals[] = {e.accuracy, e.macro_f1, e.precision, e.recall, e.f1};
        for (int k = 0; k < 5; k++)
            if (!isnan(vals[k])) fprintf(t->metrics, ", \"%s\": %.6f", keys[k], vals[k]);
        fprintf(t->metrics, "}\n");
        fflush(t->metrics);
    }
    return t->o.callbacks.on_evaluate ? callback_result(t->o.callbacks.on_evaluate(t->o.callbacks.user, &e), "on_evaluate", t->step)
                                      : CP_OK;
}

static cp_status save_and_report(cp_trainer *t) {
    if (cp_dist_rank() != 0) { /* rank 0 writes, every rank can resume from it */
        t->last_checkpoint = t->step;
        return cp_train_report_saved(t); /* the best checkpoint's name, as rank 0 has it */
    }
    char *dir;
    if (cp_trainer_save_checkpoint(t, &dir) != CP_OK) return CP_ERR;
    t->last_checkpoint = t->step;
    if (cp_train_report_rotate(t) != CP_OK) { cp_free(dir); return CP_ERR; }
    cp_train_save s = {.step = t->step, .dir = dir, .kind = CP_SAVE_CHECKPOINT};
    cp_status st = t->o.callbacks.on_save ? callback_result(t->o.callbacks.on_save(t->o.callbacks.user, &s), "on_save", t->step) : CP_OK;
    cp_free(dir);
    return st;
}

/* ---- one step ------------------------------------------------------------------------------------- */

static void start_clock(cp_trainer *t) {
    t->t0 = t->log_t0 = cp_trainer_now();
    t->t0_step = t->step;
    t->log_loss = t->log_tokens = 0;
    t->log_count = 0;
}

cp_status cp_trainer_step(cp_trainer *t, cp_train_progress *p) {
    const cp_train_options *a = &t->o;
    const int64_t GA = a->gradient_accumulation_steps, step = t->step;
    if (step >= t->total_steps) return cp_error("the run is complete (%lld of %lld steps)", (long long)step, (long long)t->total_steps);
    if (t->t0_step < 0) start_clock(t);
    for (int64_t i = 0; i < GA; i++)
        if (micro_batch(t, step * GA + i, i) != CP_OK) return CP_ERR;
    double lr = a->learning_rate * cp_schedule_factor((cp_schedule)a->lr_scheduler_type, step, t->warmup_steps, t->total_steps);
    double t_step = cp_trainer_now();
    cp_step_result res;
    /* dropout: every rank the step's seed, its rows keyed from its first row in the global batch, so
     * N ranks draw the masks one process draws for the N·b rows (models/run.h) */
    const uint64_t dropout_seed = cp_trainer_mix((uint64_t)a->seed, (uint64_t)(step * GA) + 0x5eed);
    t->m->dropout_row0 = cp_dist_rank() * a->per_device_train_batch_size;
    if (cp_train_step(t->m, &t->opt, t->micro, (int)GA, lr, a->max_grad_norm, a->gradient_checkpointing, dropout_seed, &res) != CP_OK)
        { t->m->dropout_row0 = 0; return CP_ERR; }
    t->m->dropout_row0 = 0;
    if (!isfinite(res.loss) || !isfinite(res.grad_norm)) {
        char kept[600];
        if (t->last_checkpoint) snprintf(kept, sizeof kept, "the last good checkpoint is %s/checkpoint-%lld", a->output_dir, (long long)t->last_checkpoint);
        else snprintf(kept, sizeof kept, "no checkpoint had been saved yet");
        return cp_error("step %lld: the loss is %s; stopping without applying this step (%s). Try a lower --learning-rate",
                        (long long)step + 1, isnan(res.loss) || isnan(res.grad_norm) ? "NaN" : "infinite", kept);
    }
    double now = cp_trainer_now();
    const int64_t done = t->step = step + 1;
    t->last_norm = res.grad_norm;
    t->log_loss += res.loss;
    t->run_loss_sum += res.loss;
    t->log_tokens += (double)res.n_tokens;
    t->log_count++;
    double per_step = (now - t->t0) / (double)(done - t->t0_step);
    cp_train_progress pr = {.step = done, .total_steps = t->total_steps,
                            .epoch = (double)(done * GA) / (double)t->batches_per_epoch, .loss = res.loss,
                            .learning_rate = lr, .grad_norm = res.grad_norm, .tokens = res.n_tokens,
                            .tokens_per_second = now > t_step ? (double)res.n_tokens / (now - t_step) : 0,
                            .seconds_per_step = per_step, .eta_seconds = per_step * (double)(t->total_steps - done)};
    if (p) *p = pr;
    const cp_train_callbacks cb_rank0 = {0}, *cb = cp_dist_rank() == 0 ? &a->callbacks : &cb_rank0; /* rank 0 reports */
    if (cb->on_step && callback_result(cb->on_step(cb->user, &pr), "on_step", done) != CP_OK) return CP_ERR;
    if (done % a->logging_steps == 0 || done == t->total_steps) {
        pr.loss = t->log_loss / (double)t->log_count;
        pr.tokens = (int64_t)t->log_tokens;
        pr.tokens_per_second = t->log_tokens / (now - t->log_t0);
        cp_loss_series_add(&t->train_loss, (double)done, pr.loss);
        if (cp_train_report_log(t, done, pr.loss, t->last_norm, lr) != CP_OK) return CP_ERR;
        if (t->metrics) {
            fprintf(t->metrics, "{\"step\": %lld, \"epoch\": %.4f, \"loss\": %.6f, \"learning_rate\": %.6e, \"grad_norm\": %.6f, "
                                "\"tokens_per_second\": %.1f}\n",
                    (long long)done, pr.epoch, pr.loss, lr, t->last_norm, pr.tokens_per_second);
            fflush(t->metrics);
        }
        if (cb->on_log && callback_result(cb->on_log(cb->user, &pr), "on_log", done) != CP_OK) return CP_ERR;
        t->log_loss = t->log_tokens = 0;
        t->log_count = 0;
        t->log_t0 = cp_trainer_now();
    }
    if (t->has_eval && a->eval_steps > 0 && (done % a->eval_steps == 0 || done == t->total_steps) &&
        evaluate_and_report(t, CP_EVAL_DURING) != CP_OK)
        return CP_ERR;
    if (a->output_dir && a->save_steps > 0 && done % a->save_steps == 0 && done < t->total_steps && save_and_report(t) != CP_OK)
        return CP_ERR;
    return CP_OK;
}

/* ---- the run -------------------------------------------------------------------------------------- */

/* The adapter files of checkpoint `src` (adapter_config.json, adapter_model.safetensors and, for a
 * classification head, config.json) copied into the new directory `dst`. */
static cp_status copy_adapter_files(const char *src, const char *dst) {
    if (cp_mkdirs(dst) != CP_OK) return CP_ERR;
    static const char *const files[] = {"adapter_config.json", "adapter_model.safetensors", "config.json"};
    cp_status st = CP_OK;
    for (int i = 0; i < 3 && st == CP_OK; i++) {
        char *a = cp_path_join(src, files[i]), *b = cp_path_join(dst, files[i]);
        if (!a || !b) st = CP_ERR;
        else if (i < 2 || cp_path_exists(a)) st = cp_copy_file(a, b);
        cp_free(a);
        cp_free(b);
    }
    return st;
}

/* The final adapter: written complete into a fresh adapter-step-N/ with the output directory's
 * trainer_state.json, then committed in one step. */
static cp_status save_final(cp_trainer *t) {
    if (cp_dist_rank() != 0) return CP_OK;
    const char *out = t->o.output_dir;
    char *best = NULL; /* load_best_model_at_end: the best checkpoint's adapter files are the final adapter */
    if (cp_train_report_summary(t) != CP_OK || cp_trainer_finish_best(t, &best) != CP_OK) return CP_ERR;
    char *name = cp_output_dir_fresh_adapter_name(out, t->step);
    char *dir = name ? cp_path_join(out, name) : NULL;
    cp_status st = dir ? CP_OK : CP_ERR;
    if (st == CP_OK && best) st = copy_adapter_files(best, dir);
    else if (st == CP_OK) st = cp_adapter_save(t->m, t->o.adapter_name, dir);
    if (st == CP_OK && t->cls && !best) st = cp_class_write_head_config(t, dir);
    /* trainer_state.json beside the adapter: the output directory's, committed with it */
    char *state = st == CP_OK ? cp_trainer_state_text(t) : NULL, *path = state ? cp_path_join(dir, "trainer_state.json") : NULL;
    if (st == CP_OK) st = path ? cp_write_file_atomic(path, state, strlen(state)) : CP_ERR;
    cp_free(state);
    cp_free(path);
    cp_free(best);
    if (st == CP_OK) st = cp_output_dir_commit_adapter(out, name);
    if (st == CP_OK && t->o.callbacks.on_save) {
        cp_train_save s = {.step = t->step, .dir = dir, .kind = CP_SAVE_FINAL};
        st = callback_result(t->o.callbacks.on_save(t->o.callbacks.user, &s), "on_save", t->step);
    }
    cp_free(name);
    cp_free(dir);
    return st;
}

cp_status cp_trainer_run(cp_trainer *t) {
    if (t->finished) return cp_error("the run is complete (%lld of %lld steps)", (long long)t->step, (long long)t->total_steps);
    t->stopped = 0;
    /* the starting point, so that the eval losses that follow have something to compare with */
    if (t->has_eval && t->step == 0 && evaluate_and_report(t, CP_EVAL_BEFORE_TRAINING) != CP_OK) return CP_ERR;
    start_clock(t);
    const int64_t first = t->step;
    int stop;
    while (t->step < t->total_steps) {
        /* a stop requested on any rank stops them all (one small all-reduce per step) */
        if (t->step == first && (cp_dist_any(atomic_exchange(&t->stop, 0), &stop, "sharing a stop request") != CP_OK || stop)) {
            t->stopped = 1; /* stopped before the first step: nothing to save */
            return CP_OK;
        }
        if (cp_trainer_step(t, NULL) != CP_OK) return CP_ERR;
        if (cp_dist_any(atomic_exchange(&t->stop, 0), &stop, "sharing a stop request") != CP_OK) return CP_ERR;
        if (stop) {
            if (t->o.output_dir && t->last_checkpoint != t->step && save_and_report(t) != CP_OK) return CP_ERR;
            t->stopped = 1;
            return CP_OK;
        }
    }
    if (t->has_eval && t->o.eval_steps == 0 && evaluate_and_report(t, CP_EVAL_AFTER_TRAINING) != CP_OK) return CP_ERR;
    if (t->o.output_dir && save_final(t) != CP_OK) return CP_ERR;
    t->finished = 1;
    return CP_OK;
}

void cp_trainer_request_stop(cp_trainer *t) {
    if (t) atomic_store(&t->stop, 1);
}

void cp_trainer_get_info(const cp_trainer *t, cp_trainer_info *out) {
    memset(out, 0, sizeof *out);
    out->train_examples = cp_trainer_n_train(t);
    out->train_tokens = t->cls ? t->ctrain.n_tokens : t->s2s ? t->strain.n_source_tokens + t->strain.n_target_tokens : t->train.n_tokens;
    out->train_loss_tokens = t->s2s ? t->strain.n_target_tokens : t->train.n_target_tokens;
    for (int64_t i = 0; t->cls && i < t->ctrain.n; i++) { /* rows (SEQ_CLS), labelled tokens (TOKEN_CLS) */
        const cp_class_example *ex = &t->ctrain.examples[i];
        if (t->ctrain.task == CP_CLASS_SEQ) out->train_loss_tokens++;
        else for (int64_t k = 0; k < ex->len; k++) out->train_loss_tokens += ex->labels[k] != -100;
    }
    out->train_truncated = t->cls ? t->ctrain.n_truncated : t->s2s ? t->strain.n_truncated_source : t->train.n_truncated;
    out->train_skipped = t->train.n_skipped;
    out->eval_examples = !t->has_eval ? 0 : t->cls ? t->ceval.n : t->s2s ? t->seval.n : t->eval.n;
    out->eval_truncated = !t->has_eval ? 0 : t->cls ? t->ceval.n_truncated : t->s2s ? t->seval.n_truncated_source : t->eval.n_truncated;
    if (t->s2s) {
        out->train_target_truncated = t->strain.n_truncated_target;
        out->eval_target_truncated = t->has_eval ? t->seval.n_truncated_target : 0;
        out->max_source_length = t->o.max_source_length;
        out->max_target_length = t->o.max_target_length;
    }
    out->max_seq_length = t->o.max_seq_length;
    out->pad_token_id = (int32_t)t->pad_id;
    out->pad_is_eos = t->pad_is_eos;
    out->total_steps = t->total_steps;
    out->steps_per_epoch = t->steps_per_epoch;
    out->warmup_steps = t->warmup_steps;
    out->start_step = t->start_step;
    out->step = t->step;
    out->last_checkpoint = t->last_checkpoint;
    out->stopped = t->stopped;
    out->output_files_cleaned = t->cleaned;
    out->best_global_step = t->log.best_global_step;
    out->best_metric = t->log.has_best ? t->log.best_metric : NAN;
    out->checkpoints_deleted = t->checkpoints_deleted;
    out->logging_dir = t->logging_dir;
}

void cp_trainer_history(const cp_trainer *t, cp_train_history *out) {
    out->n_train = t->train_loss.n;
    out->train_step = t->train_loss.step;
    out->train_loss = t->train_loss.value;
    out->n_eval = t->eval_loss.n;
    out->eval_step = t->eval_loss.step;
    out->eval_loss = t->eval_loss.value;
}
