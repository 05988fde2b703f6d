/*
 * cmd_predict.c — `cpeft predict`: a SEQ_CLS / TOKEN_CLS model (a base model + the adapter `cpeft
 * train --task-type ...` saved, or a checkpoint with its own head) run on a labelled classification
 * file: one JSON line per record on stdout, and the metrics (accuracy / macro-F1, or seqeval's entity
 * precision / recall / F1) on stderr and, with --metrics-out, as a JSON file.
 *
 * The label set and the head's size come from the adapter directory's config.json (written by the
 * trainer beside the adapter, as model.config.save_pretrained writes it), else from the model's
 * config.json. An adapter whose classifier has another number of outputs than that label set is an
 * error naming the tensor and both numbers; a record's label outside the set is an error naming
 * file:line (train/class_data.c).
 *
 *   SEQ_CLS   {"line": L, "label": "positive", "probabilities": {"negative": 0.1, "positive": 0.9}}
 *             (softmax; multi-label: sigmoid per label and "labels": [...] over 0.5; regression: "value")
 *   TOKEN_CLS {"line": L, "tags": ["O", "B-person", ...], "scores": [0.99, ...]}: one tag per word (the
 *             first sub-token's prediction, as run_ner.py aligns them), words beyond --max-seq-length
 *             dropped
 */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/adapter_args.h"
#include "core/alloc.h"
#include "core/json_write.h"
#include "core/strbuf.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/hook.h"
#include "models/model.h"
#include "train/class_eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: cpeft predict --model DIR [--adapter DIR] --data FILE [--task-type SEQ_CLS|TOKEN_CLS] [options]\n\n"
            "Runs a sequence or token classifier on a labelled file: JSON lines per record on stdout, the metrics\n"
            "on stderr.\n\n"
            "  --model DIR            the base model (or a checkpoint with its head)\n"
            "  --adapter DIR          an adapter saved by cpeft train --task-type ... (its config.json gives the\n"
            "                         labels) or by PEFT\n"
            "  --data FILE            SEQ_CLS: .csv / .tsv / .jsonl; TOKEN_CLS: CoNLL or .jsonl word lists\n"
            "  --task-type T          default: the adapter's task_type\n"
            "  --text-field NAME  --text-pair-field NAME  --label-field NAME   as in cpeft train\n"
            "  --max-seq-length N     tokens per record (default: the model's positions, at most 512)\n"
            "  --batch-size N (32)    --strict (a TOKEN_CLS sentence longer than --max-seq-length is an error)\n"
            "  --metrics-out FILE     also write the metrics as JSON\n");
}

typedef struct {
    const cp_label_set *labels;
    cp_problem_type problem;
    int token;
    cp_strbuf sb;
} printer;

static void softmax(const float *x, int64_t K, double *p) {
    double mx = x[0], s = 0;
    for (int64_t k = 1; k < K; k++) mx = x[k] > mx ? x[k] : mx;
    for (int64_t k = 0; k < K; k++) s += p[k] = exp((double)x[k] - mx);
    for (int64_t k = 0; k < K; k++) p[k] /= s;
}

static cp_status print_record(void *user, const cp_class_example *ex, int64_t index, const float *logits, int64_t K) {
    printer *P = user;
    cp_strbuf *sb = &P->sb;
    double p[K > 0 ? K : 1];
    sb->len = 0;
    if (sb->data) sb->data[0] = '\0';
    cp_sb_printf(sb, "{\"line\": %lld", (long long)ex->line);
    if (!P->token) {
        if (P->problem == CP_PROBLEM_REGRESSION) {
            cp_sb_printf(sb, ", \"value\": %.6g", (double)logits[0]);
        } else {
            int multi = P->problem == CP_PROBLEM_MULTI_LABEL;
            if (multi) for (int64_t k = 0; k < K; k++) p[k] = 1.0 / (1.0 + exp(-(double)logits[k]));
            else softmax(logits, K, p);
            int64_t best = 0;
            for (int64_t k = 1; k < K; k++) best = p[k] > p[best] ? k : best;
            if (multi) {
                cp_sb_append(sb, ", \"labels\": [");
                int first = 1;
                for (int64_t k = 0; k < K; k++)
                    if (p[k] > 0.5) { cp_sb_append(sb, first ? "" : ", "); cp_json_write_cstring(sb, P->labels->names[k], 0); first = 0; }
                cp_sb_append(sb, "]");
            } else {
                cp_sb_append(sb, ", \"label\": ");
                cp_json_write_cstring(sb, P->labels->names[best], 0);
            }
            cp_sb_append(sb, ", \"probabilities\": {");
            for (int64_t k = 0; k < K; k++) {
                cp_sb_append(sb, k ? ", " : "");
                cp_json_write_cstring(sb, P->labels->names[k], 0);
                cp_sb_printf(sb, ": %.6f", p[k]);
            }
            cp_sb_append(sb, "}");
        }
    } else { /* one tag per word: the positions that carry a word's label (its first sub-token) */
        cp_strbuf scores;
        cp_sb_init(&scores);
        cp_sb_append(sb, ", \"tags\": [");
        int first = 1;
        for (int64_t t = 0; t < ex->len; t++) {
            if (ex->labels[t] == -100) continue;
            softmax(logits + t * K, K, p);
            int64_t best = 0;
            for (int64_t k = 1; k < K; k++) best = p[k] > p[best] ? k : best;
            cp_sb_append(sb, first ? "" : ", ");
            cp_json_write_cstring(sb, P->labels->names[best], 0);
            cp_sb_printf(&scores, "%s%.6f", first ? "" : ", ", p[best]);
            first = 0;
        }
        cp_sb_printf(sb, "], \"scores\": [%s]", scores.data ? scores.data : "");
        cp_sb_free(&scores);
    }
    cp_sb_append(sb, "}\n");
    (void)index;
    if (!sb->data || fputs(sb->data, stdout) == EOF) return cp_error("cannot write to standard output");
    return CP_OK;
}

/* The adapter's task_type and, from its config.json, the head's labels (NULL names when it has none). */
static cp_status read_adapter(const char *dir, char **task_type, char ***names, int64_t *n, char **problem) {
    *task_type = NULL;
    *names = NULL;
    *n = 0;
    *problem = NULL;
    char *path = cp_path_join(dir, "adapter_config.json");
    cJSON *root = NULL;
    cp_status st = path ? cp_json_read_file(path, &root) : CP_ERR;
    const char *s = NULL;
    if (st == CP_OK && cp_json_get_string(root, "task_type", NULL, 0, &s, path) == CP_OK && s) *task_type = cp_strdup(s);
    cJSON_Delete(root);
    cp_free(path);
    root = NULL;
    if (st != CP_OK) return st;
    path = cp_path_join(dir, "config.json");
    if (!path || !cp_path_exists(path)) { cp_free(path); return CP_OK; }
    st = cp_json_read_file(path, &root);
    const cJSON *v = st == CP_OK ? cJSON_GetObjectItem(root, "id2label") : NULL;
    if (st == CP_OK && cJSON_IsObject(v)) {
        int64_t k = cJSON_GetArraySize(v);
        *names = cp_calloc((size_t)(k ? k : 1), sizeof **names, "labels");
        if (!*names) st = CP_ERR;
        for (const cJSON *it = v->child; st == CP_OK && it; it = it->next) {
            char *end;
            long long id = strtoll(it->string, &end, 10);
            if (*end || id < 0 || id >= k || !cJSON_IsString(it) || (*names)[id])
                st = cp_error("%s: field \"id2label\": entry \"%s\" is not a distinct class id in [0, %lld) with a name", path,
                              it->string, (long long)k);
            else if (!((*names)[id] = cp_strdup(it->valuestring))) st = CP_ERR;
        }
        *n = k;
    }
    if (st == CP_OK && cp_json_get_string(root, "problem_type", NULL, 0, &s, path) == CP_OK && s) *problem = cp_strdup(s);
    cJSON_Delete(root);
    cp_free(path);
    return st;
}

/* The adapter's classifier (a modules_to_save copy of classifier / score / out_proj) against the head
 * the model was built with: PEFT's load would fail on the shapes; say which numbers differ. */
static cp_status check_adapter_head(const cp_model *m, const char *dir, const char *label_source) {
    char *path = cp_path_join(dir, "adapter_model.safetensors");
    cp_safetensors f;
    if (!path || !cp_path_exists(path) || cp_st_open(&f, path) != CP_OK) { cp_free(path); return CP_OK; } /* the load reports it */
    const int64_t K = cp_model_num_labels(m);
    static const char *const heads[] = {"classifier.weight", "classifier.out_proj.weight", "score.weight"};
    cp_status st = CP_OK;
    for (int64_t i = 0; i < f.n_tensors && st == CP_OK; i++) {
        const cp_st_tensor *t = &f.tensors[i];
        size_t ln = strlen(t->name);
        for (int h = 0; h < 3; h++) {
            size_t lh = strlen(heads[h]);
            if (ln < lh || strcmp(t->name + ln - lh, heads[h]) || (ln > lh && t->name[ln - lh - 1] != '.')) continue;
            if (t->ndim == 2 && t->shape[0] != K)
                st = cp_error("%s: tensor %s has %lld outputs (the adapter's head has %lld labels), but the model is built with "
                              "num_labels %lld (%s)", path, t->name, (long long)t->shape[0], (long long)t->shape[0], (long long)K,
                              label_source);
            break;
        }
    }
    cp_st_close(&f);
    cp_free(path);
    return st;
}

int cmd_predict(int argc, char **argv) {
    const char *model_dir = NULL, *adapter = NULL, *data = NULL, *task = NULL, *metrics_out = NULL, *v;
    cp_class_options co = {.add_prefix_space = -1};
    int64_t max_len = 0, batch = 32;
    int r;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { help(stdout); return 0; }
        if (!strcmp(argv[i], "--strict")) { co.strict = 1; continue; }
#define STR(flag, var) \
    if ((r = cp_arg_value(argc, argv, &i, flag, &v, "predict"))) { if (r < 0) return 2; var = v; continue; }
        STR("--model", model_dir) STR("--adapter", adapter) STR("--data", data) STR("--task-type", task)
        STR("--text-field", co.text_field) STR("--text-pair-field", co.text_pair_field) STR("--label-field", co.label_field)
        STR("--metrics-out", metrics_out)
#undef STR
        if ((r = cp_arg_value(argc, argv, &i, "--max-seq-length", &v, "predict"))) {
            if (r < 0 || cp_arg_int(v, "--max-seq-length", 2, 1 << 24, &max_len, "predict")) return 2;
            continue;
        }
        if ((r = cp_arg_value(argc, argv, &i, "--batch-size", &v, "predict"))) {
            if (r < 0 || cp_arg_int(v, "--batch-size", 1, 1 << 20, &batch, "predict")) return 2;
            continue;
        }
        fprintf(stderr, "cpeft predict: unknown argument %s\n", argv[i]);
        help(stderr);
        return 2;
    }
    if (!model_dir || !data) {
        fprintf(stderr, "cpeft predict: needs --model and --data\n");
        help(stderr);
        return 2;
    }
    char *a_task = NULL, **names = NULL, *a_problem = NULL;
    int64_t n_names = 0;
    cp_model *m = NULL;
    cp_tokenizer *tok = NULL;
    cp_label_set set = {0};
    cp_class_dataset ds = {0};
    printer P = {0};
    cp_sb_init(&P.sb);
    char source[1200];
    cp_status st = adapter ? read_adapter(adapter, &a_task, &names, &n_names, &a_problem) : CP_OK;
    if (st == CP_OK && !task) task = a_task;
    if (st == CP_OK && (!task || (strcmp(task, "SEQ_CLS") && strcmp(task, "TOKEN_CLS"))))
        st = cp_error("--task-type: %s (SEQ_CLS or TOKEN_CLS%s)", task ? task : "not given",
                      adapter ? ", or an adapter whose task_type is one" : "");
    if (st == CP_OK && names) {
        snprintf(source, sizeof source, "id2label of %s/config.json", adapter);
        st = cp_model_load_labels(&m, model_dir, CP_LOAD_WEIGHTS, task, (const char *const *)names, n_names, a_problem);
    } else if (st == CP_OK) {
        snprintf(source, sizeof source, "num_labels of %s/config.json", model_dir);
        st = cli_model_load_task(&m, model_dir, CP_LOAD_WEIGHTS, task);
    }
    if (st == CP_OK && adapter) st = check_adapter_head(m, adapter, source);
    if (st == CP_OK && adapter) st = cp_model_load_adapter(m, adapter, "default", 0);
    if (st == CP_OK) st = cli_tokenizer_load(&tok, model_dir);
    if (st == CP_OK) {
        const int64_t K = cp_model_num_labels(m);
        const char **ln = cp_calloc((size_t)K, sizeof *ln, "labels");
        if (!ln) st = CP_ERR;
        for (int64_t k = 0; st == CP_OK && k < K; k++) ln[k] = cp_model_label_name(m, k);
        if (st == CP_OK) st = cp_label_set_from_names(&set, ln, K, m->config.problem_type);
        cp_free(ln);
    }
    if (st == CP_OK) {
        int64_t positions = cp_model_max_positions(m);
        /* a prompt-learning adapter's virtual tokens take positions of a learned table */
        if (m->prompt && m->arch->learned_positions) positions -= m->prompt->ops->n_virtual(m->prompt);
        co.path = data;
        co.task = !strcmp(task, "SEQ_CLS") ? CP_CLASS_SEQ : CP_CLASS_TOKEN;
        co.problem = m->config.problem_type;
        co.max_seq_length = max_len ? max_len : positions < 512 ? positions : 512;
        st = cp_class_dataset_load(&ds, &set, tok, &co);
    }
    cp_class_scores s;
    if (st == CP_OK) {
        P.labels = &set;
        P.problem = ds.problem;
        P.token = ds.task == CP_CLASS_TOKEN;
        st = cp_class_evaluate(m, &ds, &set, cp_tokenizer_special_id(tok, CP_SPECIAL_PAD) >= 0 ? cp_tokenizer_special_id(tok, CP_SPECIAL_PAD) : 0,
                               batch, print_record, &P, &s);
    }
    if (st == CP_OK) {
        fflush(stdout);
        cp_strbuf j;
        cp_sb_init(&j);
        cp_sb_printf(&j, "{\"examples\": %lld, \"truncated\": %lld, \"loss\": %.6f", (long long)ds.n, (long long)ds.n_truncated, s.loss);
        const char *keys[] = {"accuracy", "macro_f1", "precision", "recall", "f1"};
        const double vals[] = {s.accuracy, s.macro_f1, s.precision, s.recall, s.f1};
        for (int k = 0; k < 5; k++)
            if (!isnan(vals[k])) cp_sb_printf(&j, ", \"%s\": %.6f", keys[k], vals[k]);
        cp_sb_append(&j, "}\n");
        fprintf(stderr, "metrics: %s", j.data ? j.data : "\n");
        if (metrics_out && j.data) st = cp_write_file_atomic(metrics_out, j.data, strlen(j.data));
        cp_sb_free(&j);
    }
    int rc = 0;
    if (st != CP_OK) {
        fflush(stdout);
        fprintf(stderr, "cpeft predict: %s\n", cp_last_error());
        rc = 1;
    }
    cp_sb_free(&P.sb);
    cp_class_dataset_free(&ds);
    if (set.n) cp_label_set_free(&set);
    cp_tokenizer_free(tok);
    cp_model_free(m);
    for (int64_t i = 0; names && i < n_names; i++) cp_free(names[i]);
    cp_free(names);
    cp_free(a_task);
    cp_free(a_problem);
    return rc;
}
