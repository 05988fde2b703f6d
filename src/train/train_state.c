/*
 * train_state.c — a training run's checkpoint-N/ directory, as the Hugging Face Trainer names it,
 * written and read back for exact resumption:
 *
 *   checkpoint-N/adapter_config.json, adapter_model.safetensors   the adapter, as PEFT saves it
 *   checkpoint-N/optimizer.safetensors                             AdamW's moments (+ exact values)
 *   checkpoint-N/trainer_state.json                                transformers' TrainerState: the
 *                                                                  step, log_history, the best metric
 *                                                                  (train_log.h)
 *   checkpoint-N/cpeft_state.json                                  what resuming exactly needs besides:
 *                                                                  the settings that must match
 *
 * Older cpeft checkpoints kept those settings in trainer_state.json itself; they are read from there
 * when cpeft_state.json is absent.
 *
 * A checkpoint is written complete under a temporary name and replaces an existing one in one step
 * (cp_dir_replace), so a kill at any instant leaves complete checkpoints.
 */
#include "train/trainer.h"
#include "core/alloc.h"
#include "core/pyfmt.h"
#include "core/strbuf.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "peft/adapter_io.h"
#include "peft/peft_model.h"
#include "train/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* optimizer.safetensors: AdamW's moments of every trainable parameter ("<name>.exp_avg",
 * "<name>.exp_avg_sq"), and the f32 value ("<name>.value") of each one the adapter file keeps in a
 * narrower dtype (the biases and modules_to_save copies of a bf16 / f16 model, saved in its dtype
 * as PEFT saves them) or not at all (a prompt encoder's parameters: the file holds its output), so
 * that resuming continues from the exact values. */
static cp_status write_state(cp_trainer *r, const char *dir, int64_t step) {
    /* a prompt encoder's parameters are not in the adapter file at all (it holds their output) */
    const cp_peft_adapter *ad = cp_peft_find_adapter(r->m, r->o.adapter_name);
    const int all_values = ad && ad->config->method->prompt;
    cp_st_write_tensor *t = cp_calloc((size_t)(3 * r->n_params), sizeof *t, "optimizer tensors");
    char **names = cp_calloc((size_t)(3 * r->n_params), sizeof *names, "optimizer names");
    cp_status st = t && names ? CP_OK : CP_ERR;
    int n = 0;
    for (int i = 0; st == CP_OK && i < r->n_params; i++)
        for (int k = 0; k < 3; k++) {
            const cp_param *p = r->params[i];
            if (k == 2 && p->source_dtype == CP_F32 && !all_values) continue;
            cp_strbuf sb;
            cp_sb_init(&sb);
            cp_sb_printf(&sb, "%s.%s", p->name, k == 2 ? "value" : k ? "exp_avg_sq" : "exp_avg");
            names[n] = cp_sb_finish(&sb);
            cp_st_write_tensor *w = &t[n];
            w->name = names[n++];
            w->dtype = CP_F32;
            w->ndim = p->ndim;
            for (int d = 0; d < p->ndim; d++) w->shape[d] = p->shape[d];
            w->data = k == 2 ? p->data : k ? r->opt.exp_avg_sq[i] : r->opt.exp_avg[i];
        }
    char *path = st == CP_OK ? cp_path_join(dir, "optimizer.safetensors") : NULL;
    if (st == CP_OK) st = path ? cp_st_write(path, t, n, NULL, NULL, 0) : CP_ERR;
    cp_free(path);
    for (int i = 0; names && i < n; i++) cp_free(names[i]);
    cp_free(names);
    cp_free(t);
    if (st != CP_OK) return st;
    /* cpeft_state.json: what the run was made with (what must match on resume) */
    const cp_train_options *a = &r->o;
    cp_strbuf sb;
    cp_sb_init(&sb);
    char f1[40], f2[40];
    cp_sb_printf(&sb, "{\n  \"global_step\": %lld,\n  \"max_steps\": %lld,\n  \"seed\": %lld,\n  \"train_examples\": %lld,\n"
                      "  \"per_device_train_batch_size\": %lld,\n  \"gradient_accumulation_steps\": %lld,\n  \"world_size\": %d,\n"
                      "  \"learning_rate\": %s,\n  \"lr_scheduler_type\": \"%s\",\n  \"warmup_steps\": %lld,\n"
                      "  \"max_seq_length\": %lld,\n  \"weight_decay\": %s\n}\n",
                 (long long)step, (long long)r->total_steps, (long long)a->seed, (long long)cp_trainer_n_train(r),
                 (long long)a->per_device_train_batch_size, (long long)a->gradient_accumulation_steps, cp_dist_size(),
                 cp_py_float_repr(a->learning_rate, f1, sizeof f1), cp_lr_scheduler_name(a->lr_scheduler_type),
                 (long long)r->warmup_steps, (long long)a->max_seq_length, cp_py_float_repr(a->weight_decay, f2, sizeof f2));
    char *text = cp_sb_finish(&sb);
    path = cp_path_join(dir, "cpeft_state.json");
    st = text && path ? cp_write_file_atomic(path, text, strlen(text)) : CP_ERR;
    cp_free(text);
    cp_free(path);
    if (st != CP_OK) return st;
    /* trainer_state.json: the Trainer's */
    text = cp_trainer_state_text(r);
    path = cp_path_join(dir, "trainer_state.json");
    st = text && path ? cp_write_file_atomic(path, text, strlen(text)) : CP_ERR;
    cp_free(text);
    cp_free(path);
    return st;
}

cp_status cp_trainer_save_checkpoint(cp_trainer *r, char **dir) {
    *dir = NULL;
    char name[64];
    snprintf(name, sizeof name, "checkpoint-%lld", (long long)r->step);
    char *final = cp_path_join(r->o.output_dir, name), *staging = NULL;
    if (!final) return CP_ERR;
    cp_status st = cp_dir_begin(final, &staging);
    if (st == CP_OK) st = cp_adapter_save(r->m, r->o.adapter_name, staging);
    if (st == CP_OK && r->cls) st = cp_class_write_head_config(r, staging);
    if (st == CP_OK) st = cp_train_report_saved(r); /* best_model_checkpoint, before the state records it */
    if (st == CP_OK) st = write_state(r, staging, r->step);
    if (st == CP_OK) st = cp_dir_replace(&staging, final);
    else cp_dir_abort(&staging);
    if (st != CP_OK) {
        cp_error_context("saving %s (the previous checkpoint is intact)", final);
        cp_free(final);
        return st;
    }
    *dir = final;
    return CP_OK;
}

/* A log value: a number, or the raw float text the log keeps ("NaN" included). */
static double number_of(const cJSON *it) { return cJSON_IsRaw(it) && it->valuestring ? strtod(it->valuestring, NULL) : it->valuedouble; }

cp_status cp_trainer_load_checkpoint_state(cp_trainer *r, const char *dir) {
    char *path = cp_path_join(dir, "cpeft_state.json");
    if (path && !cp_path_exists(path)) { cp_free(path); path = cp_path_join(dir, "trainer_state.json"); } /* an older cpeft's */
    cJSON *root = NULL;
    cp_status st = path ? cp_json_read_file(path, &root) : CP_ERR;
    int64_t step = 0, seed = 0, bs = 0, ga = 0, n = 0, world = 1;
    if (st == CP_OK &&
        (cp_json_get_int(root, "global_step", 0, 1, &step, path) != CP_OK || cp_json_get_int(root, "seed", 0, 1, &seed, path) != CP_OK ||
         cp_json_get_int(root, "per_device_train_batch_size", 0, 1, &bs, path) != CP_OK ||
         cp_json_get_int(root, "gradient_accumulation_steps", 0, 1, &ga, path) != CP_OK ||
         cp_json_get_int(root, "train_examples", 0, 1, &n, path) != CP_OK ||
         cp_json_get_int(root, "world_size", 1, 0, &world, path) != CP_OK)) /* absent before MPI: one process */
        st = CP_ERR;
    /* the data order of a step depends on how many ranks share it (train/dist.h) */
    if (st == CP_OK && world != cp_dist_size())
        st = cp_error("%s: the checkpoint was made by %lld process%s (MPI ranks) and this run has %d; resume with the same number "
                      "(the global batch and each rank's examples depend on it)", dir, (long long)world, world == 1 ? "" : "es",
                      cp_dist_size());
    if (st == CP_OK && (seed != r->o.seed || bs != r->o.per_device_train_batch_size || ga != r->o.gradient_accumulation_steps ||
                        n != cp_trainer_n_train(r)))
        st = cp_error("%s: the checkpoint was made with --seed %lld, batch size %lld, accumulation %lld on %lld examples; "
                      "resume with the same settings and data (now: %lld, %lld, %lld, %lld)",
                      dir, (long long)seed, (long long)bs, (long long)ga, (long long)n, (long long)r->o.seed,
                      (long long)r->o.per_device_train_batch_size, (long long)r->o.gradient_accumulation_steps, (long long)cp_trainer_n_train(r));
    cJSON_Delete(root);
    cp_free(path);
    if (st != CP_OK) return st;
    /* the log: log_history and the best metric, from which the loss series are rebuilt */
    path = cp_path_join(dir, "trainer_state.json");
    st = path ? cp_train_log_load(&r->log, path) : CP_ERR;
    cp_free(path);
    if (st != CP_OK) return st;
    const cJSON *e;
    cJSON_ArrayForEach(e, r->log.history) {
        const cJSON *s = cJSON_GetObjectItem(e, "step"), *tl = cJSON_GetObjectItem(e, "loss"), *el = cJSON_GetObjectItem(e, "eval_loss");
        if (s && tl) cp_loss_series_add(&r->train_loss, s->valuedouble, number_of(tl));
        if (s && el) cp_loss_series_add(&r->eval_loss, s->valuedouble, number_of(el));
    }
    /* optimizer moments */
    path = cp_path_join(dir, "optimizer.safetensors");
    cp_safetensors f;
    st = path ? cp_st_open(&f, path) : CP_ERR;
    for (int i = 0; st == CP_OK && i < r->n_params; i++)
        for (int k = 0; k < 2 && st == CP_OK; k++) {
            char key[1024];
            snprintf(key, sizeof key, "%s.%s", r->params[i]->name, k ? "exp_avg_sq" : "exp_avg");
            const cp_st_tensor *t = cp_st_find(&f, key);
            if (!t || t->dtype != CP_F32 || t->numel != r->params[i]->numel) st = cp_error("%s: no matching tensor \"%s\"", path, key);
            else memcpy(k ? r->opt.exp_avg_sq[i] : r->opt.exp_avg[i], t->data, (size_t)t->numel * sizeof(float));
        }
    /* the f32 values of what the adapter file rounded (absent in older checkpoints: the rounded
     * values then stand), and of every prompt encoder parameter (required: the file has none) */
    const cp_peft_adapter *ad = cp_peft_find_adapter(r->m, r->o.adapter_name);
    const int all_values = ad && ad->config->method->prompt;
    for (int i = 0; st == CP_OK && i < r->n_params; i++) {
        char key[1024];
        snprintf(key, sizeof key, "%s.value", r->params[i]->name);
        const cp_st_tensor *t = cp_st_find(&f, key);
        if (!t && all_values) st = cp_error("%s: no tensor \"%s\" (the %s encoder's parameters)", path, key, ad->config->method->peft_type);
        if (!t) continue;
        if (t->dtype != CP_F32 || t->numel != r->params[i]->numel) st = cp_error("%s: tensor \"%s\" does not match the parameter", path, key);
        else memcpy(r->params[i]->data, t->data, (size_t)t->numel * sizeof(float));
    }
    if (path) cp_st_close(&f);
    cp_free(path);
    r->opt.step = step;
    r->start_step = step;
    r->step = step;
    r->last_checkpoint = step;
    return st;
}
