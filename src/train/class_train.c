/*
 * class_train.c — classification in the trainer (SEQ_CLS / TOKEN_CLS models; see trainer.h): the data
 * with its discovered label set, the micro-batches, evaluation with metrics, the head's config.json
 * beside each saved adapter, and cp_train_data_labels (the label set a run will discover, so that a
 * program can load its model with that many labels first).
 */
#include "train/trainer.h"
#include "core/alloc.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "models/model.h"
#include "train/class_eval.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int cp_class_task_of(const cp_model *m) {
    return m->task == CP_TASK_SEQ_CLS ? (int)CP_CLASS_SEQ : m->task == CP_TASK_TOKEN_CLS ? (int)CP_CLASS_TOKEN : -1;
}

int64_t cp_trainer_n_train(const cp_trainer *t) { return t->cls ? t->ctrain.n : t->s2s ? t->strain.n : t->train.n; }

/* The reader's options from the trainer's. text_field "text" is cp_train_options_init's default for
 * causal-LM data: here it means the reader's own default ("sentence" else "text"; "tokens"). */
static void class_options(const cp_train_options *o, cp_class_task task, int64_t max_seq_length, const char *path,
                          cp_class_options *co) {
    *co = (cp_class_options){.path = path, .task = task, .text_pair_field = o->text_pair_field, .label_field = o->label_field,
                             .max_seq_length = max_seq_length, .strict = o->strict, .add_prefix_space = -1};
    co->text_field = o->text_field && strcmp(o->text_field, "text") ? o->text_field : NULL;
}

/* Keeps the first n examples. */
static void keep_first(cp_class_dataset *ds, int64_t n) {
    if (n <= 0 || n >= ds->n) return;
    for (int64_t i = n; i < ds->n; i++) {
        cp_class_example *ex = &ds->examples[i];
        ds->n_tokens -= ex->len;
        cp_free(ex->ids);
        cp_free(ex->type_ids);
        cp_free(ex->labels);
        cp_free(ex->values);
    }
    ds->n = n;
}

static cp_status task_of(const char *task_type, cp_class_task *out) {
    if (task_type && !strcmp(task_type, "SEQ_CLS")) *out = CP_CLASS_SEQ;
    else if (task_type && !strcmp(task_type, "TOKEN_CLS")) *out = CP_CLASS_TOKEN;
    else return cp_error("--task-type: \"%s\" has no labels to discover (SEQ_CLS or TOKEN_CLS)", task_type ? task_type : "");
    return CP_OK;
}

cp_status cp_train_data_labels(const cp_tokenizer *tok, const cp_train_options *o, const char *task_type, char ***labels,
                               int64_t *n, const char **problem_type) {
    *labels = NULL;
    *n = 0;
    if (problem_type) *problem_type = NULL;
    cp_class_task task = CP_CLASS_SEQ;
    if (!tok || !o || !o->data_path) return cp_error("cp_train_data_labels: no tokenizer, options or data_path");
    if (task_of(task_type, &task) != CP_OK) return CP_ERR;
    cp_class_options co;
    class_options(o, task, o->max_seq_length > 0 ? o->max_seq_length : 512, o->data_path, &co);
    cp_class_dataset ds;
    cp_label_set set = {0};
    if (cp_class_dataset_load(&ds, &set, tok, &co) != CP_OK) return CP_ERR;
    cp_class_dataset_free(&ds);
    char **names = cp_calloc((size_t)set.n, sizeof *names, "labels");
    cp_status st = names ? CP_OK : CP_ERR;
    for (int64_t i = 0; st == CP_OK && i < set.n; i++)
        if (!(names[i] = cp_strdup(set.names[i]))) st = CP_ERR;
    if (st == CP_OK) {
        *labels = names;
        *n = set.n;
        if (problem_type) *problem_type = task == CP_CLASS_SEQ ? cp_problem_type_name(set.problem) : NULL;
    } else {
        cp_train_labels_free(names, set.n);
    }
    cp_label_set_free(&set);
    return st;
}

void cp_train_labels_free(char **labels, int64_t n) {
    for (int64_t i = 0; labels && i < n; i++) cp_free(labels[i]);
    cp_free(labels);
}

cp_status cp_class_trainer_setup(cp_trainer *t) {
    const cp_train_options *a = &t->o;
    const cp_class_task task = (cp_class_task)cp_class_task_of(t->m);
    t->cls = 1;
    if (a->task_type && strcmp(a->task_type, cp_model_task_type(t->m)))
        return cp_error("--task-type %s, but the model was loaded for %s", a->task_type, cp_model_task_type(t->m));
    cp_class_options co;
    class_options(a, task, a->max_seq_length, a->data_path, &co);
    co.problem = t->m->config.problem_type;
    if (cp_class_dataset_load(&t->ctrain, &t->labels, t->tok, &co) != CP_OK) return CP_ERR;
    const int64_t K = cp_model_num_labels(t->m);
    if (t->labels.n != K) {
        char names[256];
        return cp_error("%s: the training data has %lld labels (%s) but the model's head has %lld outputs (num_labels of "
                        "%s/config.json); load the model with the data's labels (cp_model_load_labels, as cpeft train does)",
                        a->data_path, (long long)t->labels.n, cp_label_set_describe(&t->labels, names, sizeof names),
                        (long long)K, t->m->dir);
    }
    /* a head the checkpoint lacked is drawn from the run's seed (transformers draws it from the seed
     * set before from_pretrained); a resumed run reads it from the checkpoint */
    if (t->m->n_fresh_head && !a->resume_from && cp_model_init_head(t->m, cp_trainer_mix((uint64_t)a->seed, 0x4eadu)) != CP_OK)
        return CP_ERR;
    keep_first(&t->ctrain, a->max_train_samples);
    if (a->eval_data_path) {
        class_options(a, task, a->max_seq_length, a->eval_data_path, &co);
        co.problem = t->labels.problem;
        if (cp_class_dataset_load(&t->ceval, &t->labels, t->tok, &co) != CP_OK) return CP_ERR;
        keep_first(&t->ceval, a->max_eval_samples);
        t->has_eval = 1;
    } else if (a->validation_split > 0) {
        return cp_error("--validation-split: not available for %s yet; give the evaluation file with --eval-data",
                        cp_model_task_type(t->m));
    }
    t->cb = cp_calloc((size_t)a->gradient_accumulation_steps, sizeof *t->cb, "micro-batches");
    return t->cb ? CP_OK : CP_ERR;
}

void cp_class_trainer_free(cp_trainer *t) {
    for (int64_t i = 0; t->cb && i < t->o.gradient_accumulation_steps; i++) cp_class_batch_free(&t->cb[i]);
    cp_free(t->cb);
    cp_class_dataset_free(&t->ctrain);
    cp_class_dataset_free(&t->ceval);
    if (t->labels.n) cp_label_set_free(&t->labels);
    for (size_t i = 0; i < sizeof t->cls_strings / sizeof *t->cls_strings; i++) cp_free(t->cls_strings[i]);
}

cp_status cp_class_micro_batch(cp_trainer *t, const int64_t *order, int64_t start, int64_t count, cp_class_batch *cb,
                               cp_batch *out) {
    if (cp_class_batch_make(&t->ctrain, order, start, count, t->pad_id, cb) != CP_OK) return CP_ERR;
    *out = (cp_batch){.B = cb->B, .T = cb->T, .input_ids = cb->input_ids, .attention_mask = cb->attention_mask,
                      .token_type_ids = cb->token_type_ids, .labels = cb->labels, .label_values = cb->label_values};
    return CP_OK;
}

cp_status cp_class_trainer_evaluate(cp_trainer *t, cp_train_eval *e) {
    cp_class_scores s;
    cp_status st = cp_class_evaluate(t->m, &t->ceval, &t->labels, t->pad_id, t->o.per_device_train_batch_size, NULL, NULL, &s);
    e->loss = s.loss;
    e->accuracy = s.accuracy;
    e->macro_f1 = s.macro_f1;
    e->precision = s.precision;
    e->recall = s.recall;
    e->f1 = s.f1;
    e->examples = t->ceval.n;
    return st;
}

/* DIR/config.json: the base model's config.json with the trained head's fields, as
 * model.config.save_pretrained writes it for that head (AutoConfig.from_pretrained(DIR) gives
 * num_labels, id2label, label2id and problem_type back). */
cp_status cp_class_write_head_config(const cp_trainer *t, const char *dir) {
    char *src = cp_path_join(t->m->dir, "config.json");
    cJSON *root = NULL;
    cp_status st = src ? cp_json_read_file(src, &root) : CP_ERR;
    cp_free(src);
    if (st != CP_OK) return st;
    cJSON *arch = cJSON_CreateArray(), *id2label = cJSON_CreateObject(), *label2id = cJSON_CreateObject();
    cJSON_AddItemToArray(arch, cJSON_CreateString(t->m->root->class_name));
    for (int64_t i = 0; i < t->labels.n; i++) {
        char key[32];
        snprintf(key, sizeof key, "%lld", (long long)i);
        cJSON_AddItemToObject(id2label, key, cJSON_CreateString(t->labels.names[i]));
        cJSON_AddItemToObject(label2id, t->labels.names[i], cJSON_CreateNumber((double)i));
    }
    const char *replaced[] = {"architectures", "id2label", "label2id", "num_labels", "problem_type"};
    for (size_t i = 0; i < sizeof replaced / sizeof *replaced; i++) cJSON_DeleteItemFromObject(root, replaced[i]);
    cJSON_AddItemToObject(root, "architectures", arch);
    cJSON_AddItemToObject(root, "id2label", id2label);
    cJSON_AddItemToObject(root, "label2id", label2id);
    cJSON_AddItemToObject(root, "num_labels", cJSON_CreateNumber((double)t->labels.n));
    /* transformers records the problem type a SEQ_CLS forward resolved; token classification has none */
    if (t->ctrain.task == CP_CLASS_SEQ) cJSON_AddItemToObject(root, "problem_type", cJSON_CreateString(cp_problem_type_name(t->labels.problem)));
    else cJSON_AddItemToObject(root, "problem_type", cJSON_CreateNull());
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    char *path = cp_path_join(dir, "config.json");
    st = text && path ? cp_write_file_atomic(path, text, strlen(text)) : cp_error("%s: cannot write config.json", dir);
    cJSON_free(text);
    cp_free(path);
    return st;
}
