/*
 * test_s2s_train.c — SEQ_2_SEQ_LM training on tiny T5 fixtures and E2E NLG records
 * (tests/reference/make_s2s_train_fixtures.py → tests/fixtures/s2strain):
 *   - 10 AdamW steps of LoRA and of IA3 on t5 v1.0 against PyTorch + PEFT: the micro-batches cpeft's
 *     seq2seq reader makes from train.csv (source prefix, truncation) equal DataCollatorForSeq2Seq's,
 *     then losses, grad norms, learning rates and every final adapter tensor;
 *   - the public trainer on t5 v1.1 (its tokenizer, model dropout on): eval loss in metrics.jsonl, the
 *     adapter saved with task_type SEQ_2_SEQ_LM, resuming from checkpoint-3 ending on the bytes of the
 *     run that was not stopped, a validation split, `cpeft train` auto-detecting the task;
 *   - `cpeft eval-generate` on a trained adapter and 60 E2E rows (7 distinct sources): each prediction
 *     equal to transformers' greedy generate(), the references grouped per source, corpus BLEU and ROUGE-L
 *     equal to sacrebleu / rouge-score on those predictions;
 *   - bad input: a record without its target (file:line), a target over --max-target-length with
 *     --strict, --task-type CAUSAL_LM on an encoder-decoder; for eval-generate a record without its
 *     target, an adapter made for an encoder-only model, an encoder-only model.
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
#include "train/seq2seq_data.h"
#include "train/step.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define FIX "tests/fixtures/s2strain"
#define V11 "tests/fixtures/t5/models/t5_v11"

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

static const char *bin(void) {
    const char *b = getenv("CPEFT_BIN");
    return b ? b : "build/cpeft";
}

/* The fixture's micro-batch i equals cpeft's batch of the same records (file order, cycled). */
static int same_batch(const cp_safetensors *st, int i, const cp_s2s_batch *b) {
    char k[3][40];
    snprintf(k[0], sizeof k[0], "input_ids_%d", i);
    snprintf(k[1], sizeof k[1], "attention_mask_%d", i);
    snprintf(k[2], sizeof k[2], "labels_%d", i);
    const cp_st_tensor *ids = cp_st_find(st, k[0]), *mask = cp_st_find(st, k[1]), *lab = cp_st_find(st, k[2]);
    if (!ids || !mask || !lab || ids->shape[0] != b->B || ids->shape[1] != b->T || lab->shape[1] != b->Td) {
        printf("    micro-batch %d: shapes (%lld,%lld)/(%lld) vs cpeft's (%lld,%lld)/(%lld)\n", i, ids ? (long long)ids->shape[0] : -1,
               ids ? (long long)ids->shape[1] : -1, lab ? (long long)lab->shape[1] : -1, (long long)b->B, (long long)b->T, (long long)b->Td);
        return 0;
    }
    const int64_t *pi = ids->data, *pm = mask->data, *pl = lab->data;
    for (int64_t j = 0; j < b->B * b->T; j++)
        if (pi[j] != b->input_ids[j] || pm[j] != b->attention_mask[j]) {
            printf("    micro-batch %d: input %lld: id %lld mask %lld vs cpeft's %lld %lld\n", i, (long long)j, (long long)pi[j],
                   (long long)pm[j], (long long)b->input_ids[j], (long long)b->attention_mask[j]);
            return 0;
        }
    for (int64_t j = 0; j < b->B * b->Td; j++)
        if (pl[j] != b->labels[j]) {
            printf("    micro-batch %d: label %lld: %lld vs cpeft's %lld\n", i, (long long)j, (long long)pl[j], (long long)b->labels[j]);
            return 0;
        }
    return 1;
}

static void steps_case(const char *name) {
    char dir[256], path[320];
    snprintf(dir, sizeof dir, FIX "/steps/%s", name);
    snprintf(path, sizeof path, "%s/expected.json", dir);
    cJSON *exp = NULL;
    CHECK_OK(cp_json_read_file(path, &exp));
    if (!exp) return;
    const cJSON *cfg = cJSON_GetObjectItem(exp, "config");
    cp_model *m = NULL;
    cp_tokenizer *tok = NULL;
    CHECK_OK(cp_model_load(&m, cJSON_GetObjectItem(exp, "base_dir")->valuestring, CP_LOAD_WEIGHTS));
    CHECK_OK(cp_tokenizer_load_dir(&tok, V11));
    if (m) CHECK_OK(cp_adapter_load(m, dir, "default", 1, 1));
    cp_param **params = NULL;
    int n = 0;
    if (!m || !tok || cp_peft_trainable_params(m, &params, &n) != CP_OK) {
        CHECK(0, "%s: setup", name);
        cp_model_free(m);
        cp_tokenizer_free(tok);
        cJSON_Delete(exp);
        return;
    }
    m->model_dropout = 0;
    cp_s2s_options so = {.path = FIX "/train.csv", .source_field = "mr", .target_field = "ref",
                         .source_prefix = cJSON_GetObjectItem(cfg, "source_prefix")->valuestring,
                         .max_source_length = (int64_t)cJSON_GetObjectItem(cfg, "max_source_length")->valuedouble,
                         .max_target_length = (int64_t)cJSON_GetObjectItem(cfg, "max_target_length")->valuedouble};
    cp_s2s_dataset ds;
    CHECK_OK(cp_s2s_dataset_load(&ds, tok, &so));
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
    const int64_t B = (int64_t)cJSON_GetObjectItem(cfg, "micro_batch_size")->valuedouble;
    int64_t order[16]; /* the micro-batch's records: the file in order, cycled */
    cp_s2s_batch sb[4] = {{0}};
    double worst_loss = 0, worst_norm = 0, worst_lr = 0;
    int batches_equal = 1;
    for (int64_t s = 0; s < steps && ds.n; s++) {
        cp_batch micro[4];
        for (int i = 0; i < ga; i++) {
            const int idx = (int)(s * ga + i);
            for (int64_t k = 0; k < B && k < 16; k++) order[k] = (idx * B + k) % ds.n;
            CHECK_OK(cp_s2s_batch_make(&ds, order, 0, B, m->config.pad_token_id, &sb[i]));
            if (!same_batch(&st, idx, &sb[i])) {
                CHECK(0, "%s: micro-batch %d differs from DataCollatorForSeq2Seq's", name, idx);
                batches_equal = 0;
            }
            micro[i] = (cp_batch){.B = sb[i].B, .T = sb[i].T, .input_ids = sb[i].input_ids, .attention_mask = sb[i].attention_mask,
                                  .labels = sb[i].labels, .Td = sb[i].Td};
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
    printf("  %-5s 10 steps on E2E records vs PyTorch + PEFT: batches %s, |loss diff| %.2e, grad norm rel %.2e, lr %.1e, "
           "final tensors rel %.2e (%d)\n", name, batches_equal ? "equal" : "DIFFERENT", worst_loss, worst_norm, worst_lr,
           worst_final, matched);
    CHECK(ds.n == 24 && ds.n_truncated_target > 0, "%s: %lld records, %lld targets truncated (the fixture cuts some)", name,
          (long long)ds.n, (long long)ds.n_truncated_target);
    CHECK(worst_loss < 1e-5, "%s: losses differ by %.3e", name, worst_loss);
    CHECK(worst_norm < 1e-4, "%s: grad norms differ by %.3e", name, worst_norm);
    CHECK(worst_lr < 1e-12, "%s: learning rates differ by %.3e", name, worst_lr);
    CHECK(worst_final < 1e-4 && matched == n, "%s: final adapter differs by %.3e (%d/%d tensors)", name, worst_final, matched, n);
    for (int i = 0; i < 4; i++) cp_s2s_batch_free(&sb[i]);
    cp_s2s_dataset_free(&ds);
    cp_adamw_free(&opt);
    cp_free(params);
    cp_st_close(&st);
    cp_model_free(m);
    cp_tokenizer_free(tok);
    cJSON_Delete(exp);
}

TEST(ten_adamw_steps_match_peft) {
    steps_case("lora");
    steps_case("ia3");
}

/* ---- the trainer ------------------------------------------------------------------------------------ */

static void options(cp_train_options *o, const char *out) {
    cp_train_options_init(o);
    o->data_path = FIX "/train.csv";
    o->eval_data_path = FIX "/eval.jsonl";
    o->source_field = "mr";
    o->target_field = "ref";
    o->source_prefix = "data to text: ";
    o->max_source_length = 40;
    o->max_target_length = 24;
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
}

static int count_evals(void *user, const cp_train_eval *e) {
    (void)e;
    (*(int *)user)++;
    return 0;
}

static void train_once(const cp_train_options *o, cp_trainer_info *info) {
    cp_model *m = NULL;
    cp_tokenizer *tok = NULL;
    CHECK_OK(cp_tokenizer_load_dir(&tok, V11));
    CHECK_OK(cp_model_load(&m, V11, CP_LOAD_WEIGHTS));
    cp_trainer *t = NULL;
    if (m && tok) CHECK_OK(cp_trainer_create(&t, m, tok, o));
    if (t) CHECK_OK(cp_trainer_run(t));
    if (t && info) cp_trainer_get_info(t, info);
    cp_trainer_free(t);
    cp_model_free(m);
    cp_tokenizer_free(tok);
}

TEST(trainer_eval_loss_adapter_and_exact_resume) {
    char a_dir[256], b_dir[256], path[400], path2[400];
    snprintf(a_dir, sizeof a_dir, "%s/run_a", tmpdir);
    snprintf(b_dir, sizeof b_dir, "%s/run_b", tmpdir);
    cp_train_options o;
    options(&o, a_dir);
    int evals = 0;
    o.callbacks = (cp_train_callbacks){.on_evaluate = count_evals, .user = &evals};
    cp_trainer_info in;
    memset(&in, 0, sizeof in);
    train_once(&o, &in);
    CHECK(evals == 3, "evaluations: %d (before training, at 3, at 6)", evals);
    CHECK(in.train_examples == 24 && in.eval_examples == 6 && in.max_source_length == 40 && in.max_target_length == 24 &&
              in.train_target_truncated > 0 && in.train_loss_tokens > 0,
          "info: %lld train, %lld eval, lengths %lld / %lld, %lld targets cut, %lld loss tokens", (long long)in.train_examples,
          (long long)in.eval_examples, (long long)in.max_source_length, (long long)in.max_target_length,
          (long long)in.train_target_truncated, (long long)in.train_loss_tokens);
    snprintf(path, sizeof path, "%s/adapter_config.json", a_dir);
    cJSON *cfg = NULL;
    CHECK_OK(cp_json_read_file(path, &cfg));
    const cJSON *tt = cfg ? cJSON_GetObjectItem(cfg, "task_type") : NULL;
    CHECK(tt && cJSON_IsString(tt) && !strcmp(tt->valuestring, "SEQ_2_SEQ_LM"), "%s: task_type is not SEQ_2_SEQ_LM", path);
    cJSON_Delete(cfg);
    snprintf(path, sizeof path, "%s/metrics.jsonl", a_dir);
    char *metrics = slurp(path);
    int n_eval = 0;
    for (const char *p = metrics; p && (p = strstr(p, "\"eval_loss\"")); p++) n_eval++;
    CHECK(n_eval == 3, "%s: %d eval_loss lines", path, n_eval);
    free(metrics);
    /* resumed from checkpoint-3 */
    options(&o, b_dir);
    snprintf(path, sizeof path, "%s/checkpoint-3", a_dir);
    o.resume_from = path;
    train_once(&o, NULL);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", a_dir);
    snprintf(path2, sizeof path2, "%s/adapter_model.safetensors", b_dir);
    CHECK(same_file(path, path2), "the resumed run's adapter differs from the uninterrupted run's");
    printf("  6 steps (t5 v1.1, model dropout on), resumed from checkpoint-3: adapter bytes %s\n",
           same_file(path, path2) ? "identical" : "DIFFERENT");
    /* a validation split instead of an eval file */
    options(&o, b_dir);
    o.eval_data_path = NULL;
    o.validation_split = 0.25;
    memset(&in, 0, sizeof in);
    train_once(&o, &in);
    CHECK(in.train_examples == 18 && in.eval_examples == 6, "validation split 0.25 of 24: %lld / %lld",
          (long long)in.train_examples, (long long)in.eval_examples);
}

/* `cpeft train` on an encoder-decoder: the task found from the model, the flags read, the adapter PEFT's. */
TEST(cli_trains_seq2seq) {
    char cmd[1024], out[16384];
    snprintf(cmd, sizeof cmd,
             "%s train --model %s --data %s/train.csv --eval-data %s/eval.jsonl --source-field mr --target-field ref "
             "--source-prefix 'data to text: ' --max-source-length 40 --max-target-length 24 --output-dir %s/cli "
             "--max-steps 2 --logging-steps 1 --per-device-train-batch-size 4 --progress lines 2>&1",
             bin(), V11, FIX, FIX, tmpdir);
    int rc = run_cmd(out, sizeof out, cmd);
    CHECK(rc == 0 && strstr(out, "24 training examples") && strstr(out, "targets truncated to --max-target-length 24") &&
              strstr(out, "eval loss"),
          "cpeft train: exit %d\n%s", rc, out);
    char path[400];
    snprintf(path, sizeof path, "%s/cli/adapter_model.safetensors", tmpdir);
    CHECK(access(path, R_OK) == 0, "%s: missing", path);
}

/* ---- cpeft eval-generate --------------------------------------------------------------------------------- */

static double json_num(const char *json, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *p = strstr(json, k);
    return p ? atof(p + strlen(k)) : NAN;
}

TEST(eval_generate_matches_sacrebleu) {
    cJSON *exp = NULL;
    CHECK_OK(cp_json_read_file(FIX "/gen/expected.json", &exp));
    if (!exp) return;
    char cmd[1024], out[4096], preds[300];
    snprintf(preds, sizeof preds, "%s/preds.jsonl", tmpdir);
    snprintf(cmd, sizeof cmd,
             "%s eval-generate --model %s --adapter %s/gen/adapter --data %s/gen/data.csv --source-field mr --target-field ref "
             "--source-prefix 'data to text: ' --max-new-tokens 16 --batch-size 3 --output %s --json 2>&1",
             bin(), V11, FIX, FIX, preds);
    int rc = run_cmd(out, sizeof out, cmd);
    CHECK(rc == 0, "%s: exit %d\n%s", cmd, rc, out);
    /* the predictions: one line per distinct source, the transformers prediction, the grouped references */
    const cJSON *jp = cJSON_GetObjectItem(exp, "predictions"), *jr = cJSON_GetObjectItem(exp, "references"),
                *js = cJSON_GetObjectItem(exp, "sources");
    FILE *f = fopen(preds, "r");
    char line[16384];
    int n = 0, same_pred = 0, same_refs = 0;
    while (f && fgets(line, sizeof line, f)) {
        cJSON *rec = cJSON_Parse(line);
        const cJSON *p = rec ? cJSON_GetObjectItem(rec, "prediction") : NULL, *r = rec ? cJSON_GetObjectItem(rec, "references") : NULL,
                    *src = rec ? cJSON_GetObjectItem(rec, "source") : NULL;
        if (p && n < cJSON_GetArraySize(jp)) {
            if (!strcmp(p->valuestring, cJSON_GetArrayItem(jp, n)->valuestring)) same_pred++;
            else printf("    segment %d: \"%s\", transformers \"%s\"\n", n, p->valuestring, cJSON_GetArrayItem(jp, n)->valuestring);
            const cJSON *want = cJSON_GetArrayItem(jr, n);
            int ok = r && src && cJSON_GetArraySize(r) == cJSON_GetArraySize(want) &&
                     !strcmp(src->valuestring, cJSON_GetArrayItem(js, n)->valuestring);
            for (int k = 0; ok && k < cJSON_GetArraySize(r); k++)
                ok = !strcmp(cJSON_GetArrayItem(r, k)->valuestring, cJSON_GetArrayItem(want, k)->valuestring);
            same_refs += ok;
        }
        n++;
        cJSON_Delete(rec);
    }
    if (f) fclose(f);
    const int want_n = cJSON_GetArraySize(jp);
    CHECK(n == want_n && same_pred == want_n && same_refs == want_n,
          "%d lines (want %d), %d predictions as transformers', %d reference groups as expected", n, want_n, same_pred, same_refs);
    /* the scores */
    double d_bleu = fabs(json_num(out, "bleu") - cJSON_GetObjectItem(exp, "bleu")->valuedouble);
    double d_rouge = fmax(fabs(json_num(out, "rougeL") - cJSON_GetObjectItem(exp, "rougeL")->valuedouble),
                          fmax(fabs(json_num(out, "rougeL_precision") - cJSON_GetObjectItem(exp, "rougeL_precision")->valuedouble),
                               fabs(json_num(out, "rougeL_recall") - cJSON_GetObjectItem(exp, "rougeL_recall")->valuedouble)));
    int same_counts = json_num(out, "hyp_len") == cJSON_GetObjectItem(exp, "hyp_len")->valuedouble &&
                      json_num(out, "ref_len") == cJSON_GetObjectItem(exp, "ref_len")->valuedouble;
    const char *c = strstr(out, "\"bleu_counts\": [");
    for (int k = 0; c && k < 4; k++) {
        c = strchr(c, k ? ',' : '[') + 1;
        same_counts &= atof(c) == cJSON_GetArrayItem(cJSON_GetObjectItem(exp, "bleu_counts"), k)->valuedouble;
    }
    printf("  eval-generate: %d segments from 60 rows, predictions %d/%d as transformers', BLEU %.4f (|diff| %.1e vs "
           "sacrebleu), ROUGE-L %.4f (|diff| %.1e vs rouge-score), counts %s\n", n, same_pred, want_n, json_num(out, "bleu"), d_bleu,
           json_num(out, "rougeL"), d_rouge, same_counts ? "equal" : "DIFFERENT");
    CHECK(json_num(out, "bleu") > 0 && d_bleu < 1e-9 && d_rouge < 1e-12 && same_counts, "scores: %s", out);
    cJSON_Delete(exp);
    /* bad input */
    char bad[300];
    snprintf(bad, sizeof bad, "%s/notarget.jsonl", tmpdir);
    f = fopen(bad, "w");
    if (f) {
        fputs("{\"mr\": \"name[A]\", \"ref\": \"A.\"}\n{\"mr\": \"name[B]\", \"ref\": null}\n", f);
        fclose(f);
    }
    snprintf(cmd, sizeof cmd, "%s eval-generate --model %s --data %s --source-field mr --target-field ref 2>&1", bin(), V11, bad);
    rc = run_cmd(out, sizeof out, cmd);
    CHECK(rc == 1 && strstr(out, "notarget.jsonl:2: missing field \"ref\""), "a record without its target: exit %d, %s", rc, out);
    printf("  %s", out);
    snprintf(cmd, sizeof cmd, "%s eval-generate --model %s --adapter tests/fixtures/clstrain/steps/bert_seqcls --data %s/gen/data.csv "
                              "--source-field mr --target-field ref 2>&1", bin(), V11, FIX);
    rc = run_cmd(out, sizeof out, cmd);
    CHECK(rc == 1 && strstr(out, "SEQ_CLS") && strstr(out, "encoder-only"), "an encoder-only adapter: exit %d, %s", rc, out);
    printf("  %s", out);
    snprintf(cmd, sizeof cmd, "%s eval-generate --model tests/fixtures/clstrain/tiny_bert --data %s/gen/data.csv "
                              "--source-field mr --target-field ref 2>&1", bin(), FIX);
    rc = run_cmd(out, sizeof out, cmd);
    CHECK(rc == 1 && strstr(out, "not an encoder-decoder"), "an encoder-only model: exit %d, %s", rc, out);
    printf("  %s", out);
}

/* ---- bad input ----------------------------------------------------------------------------------------- */

static void expect_error(const cp_train_options *o, const char *want, const char *what) {
    cp_model *m = NULL;
    cp_tokenizer *tok = NULL;
    CHECK_OK(cp_tokenizer_load_dir(&tok, V11));
    CHECK_OK(cp_model_load(&m, V11, CP_LOAD_WEIGHTS));
    cp_trainer *t = NULL;
    cp_status st = m && tok ? cp_trainer_create(&t, m, tok, o) : CP_OK;
    CHECK(st != CP_OK && strstr(cp_last_error(), want), "%s: %s (want \"%s\")", what, st == CP_OK ? "accepted" : cp_last_error(), want);
    printf("  %s: %s\n", what, cp_last_error());
    cp_trainer_free(t);
    cp_model_free(m);
    cp_tokenizer_free(tok);
}

TEST(bad_inputs_name_file_line) {
    char bad[300], out[256];
    snprintf(bad, sizeof bad, "%s/bad.jsonl", tmpdir);
    FILE *f = fopen(bad, "w");
    if (f) {
        fputs("{\"mr\": \"name[A]\", \"ref\": \"A is a place.\"}\n{\"mr\": \"name[B]\"}\n", f);
        fclose(f);
    }
    snprintf(out, sizeof out, "%s/bad_out", tmpdir);
    cp_train_options o;
    options(&o, out);
    o.data_path = bad;
    char want[400];
    snprintf(want, sizeof want, "%s:2", bad);
    expect_error(&o, want, "a record without its target");
    options(&o, out);
    o.strict = 1;
    o.max_source_length = 128;
    expect_error(&o, "over max_target_length 24", "a target over --max-target-length with --strict");
    options(&o, out);
    o.task_type = "CAUSAL_LM";
    expect_error(&o, "SEQ_2_SEQ_LM", "--task-type CAUSAL_LM on t5");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cpeft_s2s_train_%d", (int)getpid());
    char cmd[200];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", tmpdir);
    if (system(cmd)) return 1;
    cp_set_quiet(1);
    RUN(ten_adamw_steps_match_peft);
    RUN(trainer_eval_loss_adapter_and_exact_resume);
    RUN(cli_trains_seq2seq);
    RUN(eval_generate_matches_sacrebleu);
    RUN(bad_inputs_name_file_line);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) {}
    return test_summary();
}
