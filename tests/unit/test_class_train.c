/*
 * test_class_train.c — classification training (SEQ_CLS / TOKEN_CLS) on tiny BERT fixtures
 * (tests/reference/make_class_train_fixtures.py → tests/fixtures/clstrain):
 *   - 10 AdamW steps (accumulation 2, warmup + linear decay, clipping) against PyTorch + PEFT: losses,
 *     grad norms, learning rates and every final adapter tensor (LoRA and the classifier copy);
 *   - the public trainer on the tiny tokenizer and data files: labels discovered, config.json beside
 *     the adapter, metrics in metrics.jsonl, and resuming from checkpoint-3 ending on the bytes of the
 *     run that was not stopped;
 *   - `cpeft predict` on the trained adapter: one JSON line per record, its metrics equal to the
 *     trainer's final evaluation;
 *   - bad input: an eval label outside the set (file:line), a model head of another size than the
 *     data's labels and an adapter head of another size than the model config (both numbers), a
 *     TOKEN_CLS sentence over --max-seq-length with --strict.
 */
#include "test.h"
#include "run_cmd.h"
#include "cpeft.h"
#include "core/alloc.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "peft/adapter_io.h"
#include "peft/peft_model.h"
#include "train/optim.h"
#include "train/step.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define FIX "tests/fixtures/clstrain"

static char tmpdir[128];

static double rel_diff(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return num / fmax(den, 1e-12);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) { free(s); s = NULL; }
    if (s) s[n] = '\0';
    fclose(f);
    return s;
}

static int same_file(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) same = 0;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

static void steps_case(const char *name) {
    char dir[256], path[320];
    snprintf(dir, sizeof dir, FIX "/steps/%s", name);
    snprintf(path, sizeof path, "%s/expected.json", dir);
    cJSON *exp = NULL;
    CHECK_OK(cp_json_read_file(path, &exp));
    if (!exp) return;
    const cJSON *jl = cJSON_GetObjectItem(exp, "labels"), *cfg = cJSON_GetObjectItem(exp, "config");
    int K = cJSON_GetArraySize(jl);
    const char *names[16];
    for (int i = 0; i < K && i < 16; i++) names[i] = cJSON_GetArrayItem(jl, i)->valuestring;
    cp_model *m = NULL;
    snprintf(path, sizeof path, "%s/base", dir);
    CHECK_OK(cp_model_load_labels(&m, path, CP_LOAD_WEIGHTS, cJSON_GetObjectItem(exp, "task_type")->valuestring, names, K, NULL));
    if (m) CHECK_OK(cp_adapter_load(m, dir, "default", 1, 1));
    cp_param **params = NULL;
    int n = 0;
    if (!m || cp_peft_trainable_params(m, &params, &n) != CP_OK) { CHECK(0, "%s: setup", name); cp_model_free(m); cJSON_Delete(exp); return; }
    cp_safetensors st;
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    CHECK_OK(cp_st_open(&st, path));
    const cJSON *betas = cJSON_GetObjectItem(cfg, "betas");
    cp_adamw_config oc = {cJSON_GetObjectItem(cfg, "lr")->valuedouble, cJSON_GetArrayItem(betas, 0)->valuedouble,
                          cJSON_GetArrayItem(betas, 1)->valuedouble, cJSON_GetObjectItem(cfg, "eps")->valuedouble,
                          cJSON_GetObjectItem(cfg, "weight_decay")->valuedouble};
    cp_adamw opt;
    CHECK_OK(cp_adamw_init(&opt, params, n, oc));
    const int64_t steps = (int64_t)cJSON_GetObjectItem(cfg, "num_training_steps")->valuedouble;
    const int64_t warmup = (int64_t)cJSON_GetObjectItem(cfg, "num_warmup_steps")->valuedouble;
    const int ga = (int)cJSON_GetObjectItem(cfg, "gradient_accumulation_steps")->valuedouble;
    double worst_loss = 0, worst_norm = 0, worst_lr = 0;
    for (int64_t s = 0; s < steps; s++) {
        cp_batch micro[4];
        for (int i = 0; i < ga; i++) {
            char k[4][40];
            int idx = (int)(s * ga + i);
            snprintf(k[0], sizeof k[0], "input_ids_%d", idx);
            snprintf(k[1], sizeof k[1], "attention_mask_%d", idx);
            snprintf(k[2], sizeof k[2], "token_type_ids_%d", idx);
            snprintf(k[3], sizeof k[3], "labels_%d", idx);
            const cp_st_tensor *t = cp_st_find(&st, k[0]);
            micro[i] = (cp_batch){.B = t->shape[0], .T = t->shape[1], .input_ids = t->data,
                                  .attention_mask = cp_st_find(&st, k[1])->data, .token_type_ids = cp_st_find(&st, k[2])->data,
                                  .labels = cp_st_find(&st, k[3])->data};
        }
        double lr = oc.lr * cp_schedule_factor(CP_SCHED_LINEAR, s, warmup, steps);
        cp_step_result res;
        CHECK_OK(cp_train_step(m, &opt, micro, ga, lr, cJSON_GetObjectItem(cfg, "max_grad_norm")->valuedouble, 0, 1, &res));
        worst_loss = fmax(worst_loss, fabs(res.loss - cJSON_GetArrayItem(cJSON_GetObjectItem(exp, "losses"), (int)s)->valuedouble));
        double wn = cJSON_GetArrayItem(cJSON_GetObjectItem(exp, "grad_norms"), (int)s)->valuedouble;
        worst_norm = fmax(worst_norm, fabs(res.grad_norm - wn) / wn);
        worst_lr = fmax(worst_lr, fabs(lr - cJSON_GetArrayItem(cJSON_GetObjectItem(exp, "lrs"), (int)s)->valuedouble));
    }
    double worst_final = 0;
    int matched = 0;
    for (int i = 0; i < st.n_tensors; i++) {
        const char *key = st.tensors[i].name;
        if (strncmp(key, "final.", 6)) continue;
        cp_param *p = cp_adapter_find_param(m, "default", key + 6);
        CHECK(p != NULL, "%s: %s not in the model", name, key);
        if (!p) continue;
        double d = rel_diff(p->data, st.tensors[i].data, p->numel);
        if (d > 1e-4) printf("    %s: relative difference %.3e\n", key, d);
        worst_final = fmax(worst_final, d);
        matched++;
    }
    printf("  %-12s 10 steps vs PyTorch + PEFT: |loss diff| %.2e, grad norm rel %.2e, lr %.1e, final tensors rel %.2e (%d)\n",
           name, worst_loss, worst_norm, worst_lr, worst_final, matched);
    CHECK(worst_loss < 1e-5, "%s: losses differ by %.3e", name, worst_loss);
    CHECK(worst_norm < 1e-4, "%s: grad norms differ by %.3e", name, worst_norm);
    CHECK(worst_lr < 1e-12, "%s: learning rates differ by %.3e", name, worst_lr);
    CHECK(worst_final < 1e-4 && matched == n, "%s: final adapter differs by %.3e (%d/%d tensors)", name, worst_final, matched, n);
    cp_adamw_free(&opt);
    cp_free(params);
    cp_st_close(&st);
    cp_model_free(m);
    cJSON_Delete(exp);
}

TEST(ten_adamw_steps_match_peft) {
    steps_case("bert_seqcls");
    steps_case("bert_tokcls");
}

/* ---- the trainer ------------------------------------------------------------------------------------ */

typedef struct {
    const char *task, *train, *eval;
} task_files;

static const task_files SEQ = {"SEQ_CLS", FIX "/data/seq_train.tsv", FIX "/data/seq_eval.tsv"};
static const task_files TOK = {"TOKEN_CLS", FIX "/data/tok_train.conll", FIX "/data/tok_eval.conll"};

static void options(cp_train_options *o, const task_files *f, const char *out) {
    cp_train_options_init(o);
    o->task_type = f->task;
    o->data_path = f->train;
    o->eval_data_path = f->eval;
    o->output_dir = out;
    o->overwrite_output_dir = 1;
    o->max_steps = 6;
    o->save_steps = 3;
    o->eval_steps = 3;
    o->logging_steps = 1;
    o->per_device_train_batch_size = 4;
    o->learning_rate = 5e-3;
    o->lora.r = 4;
    o->seed = 3;
    o->max_seq_length = 32;
}

static cp_model *load_for(const cp_tokenizer *tok, const cp_train_options *o) {
    char **labels = NULL;
    int64_t n = 0;
    const char *problem = NULL;
    cp_model *m = NULL;
    CHECK_OK(cp_train_data_labels(tok, o, o->task_type, &labels, &n, &problem));
    if (labels) CHECK_OK(cp_model_load_labels(&m, FIX "/tiny_bert", CP_LOAD_WEIGHTS, o->task_type, (const char *const *)labels, n, problem));
    cp_train_labels_free(labels, n);
    return m;
}

static int last_eval(void *user, const cp_train_eval *e) {
    *(cp_train_eval *)user = *e;
    return 0;
}

/* A run of 6 steps (checkpoints at 3), then a second run resumed from checkpoint-3. */
static void trainer_case(const task_files *f, cp_train_eval *final_eval) {
    cp_tokenizer *tok = NULL;
    CHECK_OK(cp_tokenizer_load_dir(&tok, FIX "/tiny_bert"));
    if (!tok) return;
    char a_dir[256], b_dir[256], path[400], path2[400];
    snprintf(a_dir, sizeof a_dir, "%s/%s_a", tmpdir, f->task);
    snprintf(b_dir, sizeof b_dir, "%s/%s_b", tmpdir, f->task);
    cp_train_options o;
    options(&o, f, a_dir);
    o.callbacks = (cp_train_callbacks){.on_evaluate = last_eval, .user = final_eval};
    cp_model *m = load_for(tok, &o);
    cp_trainer *t = NULL;
    if (m) CHECK_OK(cp_trainer_create(&t, m, tok, &o));
    if (t) CHECK_OK(cp_trainer_run(t));
    cp_trainer_free(t);
    cp_model_free(m);
    /* the head config beside the adapter */
    snprintf(path, sizeof path, "%s/config.json", a_dir);
    cJSON *cfg = NULL;
    CHECK_OK(cp_json_read_file(path, &cfg));
    if (cfg) {
        const cJSON *id2label = cJSON_GetObjectItem(cfg, "id2label"), *arch = cJSON_GetArrayItem(cJSON_GetObjectItem(cfg, "architectures"), 0);
        const char *want0 = f == &SEQ ? "neg" : "B-loc";
        const char *cls = f == &SEQ ? "BertForSequenceClassification" : "BertForTokenClassification";
        CHECK(id2label && cJSON_GetObjectItem(id2label, "0") && !strcmp(cJSON_GetObjectItem(id2label, "0")->valuestring, want0),
              "%s: id2label[0] is not %s", path, want0);
        CHECK(arch && !strcmp(arch->valuestring, cls), "%s: architectures[0] is not %s", path, cls);
        CHECK(cJSON_GetObjectItem(cfg, "label2id") && cJSON_GetObjectItem(cJSON_GetObjectItem(cfg, "label2id"), want0),
              "%s: no label2id", path);
        CHECK(cJSON_GetObjectItem(cfg, "num_labels")->valuedouble == (f == &SEQ ? 3 : 5), "%s: num_labels", path);
        cJSON_Delete(cfg);
    }
    snprintf(path, sizeof path, "%s/checkpoint-3/config.json", a_dir);
    CHECK(access(path, R_OK) == 0, "%s: missing", path);
    snprintf(path, sizeof path, "%s/metrics.jsonl", a_dir);
    char *metrics = slurp(path);
    CHECK(metrics && strstr(metrics, f == &SEQ ? "\"eval_macro_f1\"" : "\"eval_f1\""), "%s: no eval metrics", path);
    free(metrics);
    CHECK(!isnan(final_eval->loss) && (f == &SEQ ? !isnan(final_eval->macro_f1) : !isnan(final_eval->f1)),
          "%s: the last evaluation has no metrics", f->task);
    /* resumed from checkpoint-3 */
    options(&o, f, b_dir);
    snprintf(path, sizeof path, "%s/checkpoint-3", a_dir);
    o.resume_from = path;
    m = load_for(tok, &o);
    t = NULL;
    if (m) CHECK_OK(cp_trainer_create(&t, m, tok, &o));
    if (t) CHECK_OK(cp_trainer_run(t));
    cp_trainer_free(t);
    cp_model_free(m);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", a_dir);
    snprintf(path2, sizeof path2, "%s/adapter_model.safetensors", b_dir);
    CHECK(same_file(path, path2), "%s: the resumed run's adapter differs from the uninterrupted run's", f->task);
    printf("  %-9s 6 steps, resumed from checkpoint-3: adapter bytes %s; final eval loss %.4f, %s %.4f\n", f->task,
           same_file(path, path2) ? "identical" : "DIFFERENT", final_eval->loss, f == &SEQ ? "macro-F1" : "entity F1",
           f == &SEQ ? final_eval->macro_f1 : final_eval->f1);
    cp_tokenizer_free(tok);
}

static cp_train_eval seq_eval, tok_eval;

TEST(trainer_head_config_metrics_and_exact_resume) {
    trainer_case(&SEQ, &seq_eval);
    trainer_case(&TOK, &tok_eval);
}

/* ---- cpeft predict ----------------------------------------------------------------------------------- */

static const char *bin(void) {
    const char *b = getenv("CPEFT_BIN");
    return b ? b : "build/cpeft";
}

static double metric(const char *json, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *p = strstr(json, k);
    return p ? atof(p + strlen(k)) : NAN;
}

static void predict_case(const task_files *f, const cp_train_eval *e, int records) {
    char cmd[1024], out[16384], mpath[300];
    snprintf(mpath, sizeof mpath, "%s/%s_metrics.json", tmpdir, f->task);
    snprintf(cmd, sizeof cmd, "%s predict --model %s/tiny_bert --adapter %s/%s_a --data %s --max-seq-length 32 --batch-size 2 "
                              "--metrics-out %s 2>/dev/null", bin(), FIX, tmpdir, f->task, f->eval, mpath);
    int rc = run_cmd(out, sizeof out, cmd);
    CHECK(rc == 0, "%s: exit %d", cmd, rc);
    int lines = 0;
    for (const char *p = out; (p = strchr(p, '\n')); p++) lines++;
    CHECK(lines == records, "%s predict: %d lines, %d records", f->task, lines, records);
    CHECK(strstr(out, f == &SEQ ? "\"label\": \"" : "\"tags\": [\""), "%s predict: no labels in %s", f->task, out);
    char *m = slurp(mpath);
    CHECK(m != NULL, "%s: no metrics file", mpath);
    if (!m) return;
    double dl = fabs(metric(m, "loss") - e->loss);
    double dm = f == &SEQ ? fabs(metric(m, "accuracy") - e->accuracy) + fabs(metric(m, "macro_f1") - e->macro_f1)
                          : fabs(metric(m, "f1") - e->f1) + fabs(metric(m, "precision") - e->precision);
    printf("  %-9s predict (batch 2) vs the trainer's last evaluation (batch 4): loss diff %.1e, metrics diff %.1e\n", f->task, dl, dm);
    CHECK(dl < 1e-5 && dm < 1e-6, "%s: predict's metrics %s differ from the trainer's (loss %.6f)", f->task, m, e->loss);
    free(m);
}

TEST(predict_prints_records_and_the_trainers_metrics) {
    predict_case(&SEQ, &seq_eval, 6);
    predict_case(&TOK, &tok_eval, 3);
}

/* ---- bad input --------------------------------------------------------------------------------------- */

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) { fputs(text, f); fclose(f); }
}

TEST(bad_inputs_name_file_line_and_sizes) {
    cp_tokenizer *tok = NULL;
    CHECK_OK(cp_tokenizer_load_dir(&tok, FIX "/tiny_bert"));
    if (!tok) return;
    char bad[300], out_dir[300];
    snprintf(bad, sizeof bad, "%s/bad_eval.tsv", tmpdir);
    snprintf(out_dir, sizeof out_dir, "%s/bad_run", tmpdir);
    write_file(bad, "sentence\tlabel\ngood\tpos\nbad film\tawful\n");
    cp_train_options o;
    options(&o, &SEQ, out_dir);
    o.eval_data_path = bad;
    cp_model *m = load_for(tok, &o);
    cp_trainer *t = NULL;
    char want[400];
    snprintf(want, sizeof want, "%s:3: label \"awful\" is not in the label set", bad);
    if (m) CHECK_ERR(cp_trainer_create(&t, m, tok, &o), want);
    cp_trainer_free(t);
    cp_model_free(m);
    /* a model whose head has config.json's 2 labels, data with 3 */
    options(&o, &SEQ, out_dir);
    m = NULL;
    CHECK_OK(cp_model_load_task(&m, FIX "/tiny_bert", CP_LOAD_WEIGHTS, "SEQ_CLS"));
    t = NULL;
    if (m) CHECK_ERR(cp_trainer_create(&t, m, tok, &o), "has 3 labels (neg, neu, pos) but the model's head has 2 outputs");
    cp_trainer_free(t);
    cp_model_free(m);
    /* --strict: a TOKEN_CLS sentence longer than max_seq_length */
    options(&o, &TOK, out_dir);
    o.strict = 1;
    o.max_seq_length = 6;
    char **labels = NULL;
    int64_t n_labels = 0;
    CHECK_ERR(cp_train_data_labels(tok, &o, o.task_type, &labels, &n_labels, NULL),
              "tok_train.conll:6: the sentence has 6 tokens (6 words), more than max_seq_length 6");
    printf("  strict TOKEN_CLS: %s\n", cp_last_error());
    cp_train_labels_free(labels, n_labels);
    o.strict = 0; /* without --strict: truncated and counted */
    m = load_for(tok, &o);
    t = NULL;
    if (m) CHECK_OK(cp_trainer_create(&t, m, tok, &o));
    cp_trainer_info in = {0};
    if (t) cp_trainer_get_info(t, &in);
    CHECK(in.train_truncated == 4, "TOKEN_CLS max_seq_length 6: %lld sentences truncated (expected 4)", (long long)in.train_truncated);
    cp_trainer_free(t);
    cp_model_free(m);
    /* an adapter with a 3-label head and no config.json, on the model config's 2 labels */
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/nohead && cp %s/SEQ_CLS_a/adapter_config.json %s/SEQ_CLS_a/adapter_model.safetensors %s/nohead/ && "
             "%s predict --model %s/tiny_bert --adapter %s/nohead --data %s 2>&1", tmpdir, tmpdir, tmpdir, tmpdir, bin(), FIX, tmpdir, SEQ.eval);
    int rc = run_cmd(out, sizeof out, cmd);
    CHECK(rc == 1 && strstr(out, "classifier.weight has 3 outputs") && strstr(out, "num_labels 2"),
          "an adapter head of another size: exit %d, %s", rc, out);
    printf("  adapter head vs model config: %s", strstr(out, "cpeft predict:") ? strstr(out, "cpeft predict:") : out);
    /* an eval label outside the set through cpeft predict */
    snprintf(cmd, sizeof cmd, "%s predict --model %s/tiny_bert --adapter %s/SEQ_CLS_a --data %s 2>&1", bin(), FIX, tmpdir, bad);
    rc = run_cmd(out, sizeof out, cmd);
    CHECK(rc == 1 && strstr(out, want), "predict on a bad label: exit %d, %s", rc, out);
    cp_tokenizer_free(tok);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cpeft_class_train_%d", (int)getpid());
    char cmd[200];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", tmpdir);
    if (system(cmd)) return 1;
    cp_set_quiet(1);
    RUN(ten_adamw_steps_match_peft);
    RUN(trainer_head_config_metrics_and_exact_resume);
    RUN(predict_prints_records_and_the_trainers_metrics);
    RUN(bad_inputs_name_file_line_and_sizes);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) {}
    return test_summary();
}
