/*
 * test_encoders.c — BERT-family encoders and their task heads against transformers + PEFT (fixtures from
 * tests/reference/make_encoder_fixtures.py, under tests/fixtures/encoders/):
 *   - forward: logits (B,K) / (B,T,K) / last hidden state, every hidden state, loss, for each model
 *     (f32, and bf16 / f16 stored copies), the task taken from config.json's architectures;
 *   - task selection: the same checkpoint loaded for another task (FEATURE_EXTRACTION, TOKEN_CLS);
 *   - LoRA (task_type SEQ_CLS / TOKEN_CLS, the classifier in modules_to_save): logits and loss with the
 *     adapter, and the gradient of every trainable tensor after one backward;
 *   - bad input: tasks an encoder has not, labels of the wrong kind.
 * Architectures: bert, roberta, xlm-roberta, distilbert, electra (embeddings_project), layoutlm (bbox).
 * Goals: logits <= 1e-5, gradients <= 1e-4 relative to each tensor's largest entry.
 */
#include "test.h"
#include "cpeft.h"
#include "core/alloc.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "peft/adapter_io.h"
#include "peft/peft_model.h"

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#define ROOT "tests/fixtures/encoders"
#define DEC_ROOT "tests/fixtures/decoder_heads" /* GPT-2, GPT-Neo, Llama, Mistral, Qwen2 with their classification heads */
#define LOGIT_TOL 1e-5
#define GRAD_TOL 1e-4

static double worst_logits, worst_hidden, worst_loss, worst_grad;

static const void *get(const cp_safetensors *st, const char *name, cp_dtype dtype) {
    const cp_st_tensor *t = cp_st_find(st, name);
    return t && t->dtype == dtype ? t->data : NULL;
}

static double rel_diff(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return num / fmax(den, 1e-12);
}

/* The batch a fixture holds (inputs and labels). */
static cp_batch fixture_batch(const cp_safetensors *st) {
    const cp_st_tensor *ids = cp_st_find(st, "input_ids");
    cp_batch b = {.B = ids->shape[0], .T = ids->shape[1], .input_ids = ids->data,
                  .attention_mask = get(st, "attention_mask", CP_I64), .token_type_ids = get(st, "token_type_ids", CP_I64),
                  .labels = get(st, "labels", CP_I64), .label_values = get(st, "label_values", CP_F32),
                  .bbox = get(st, "bbox", CP_I64)};
    return b;
}

/* Max |a - b| over (B,T,D) rows, skipping the padding positions of a decoder (mask given): what a decoder
 * computes there (queries with no keys under left padding) is not a result transformers defines. */
static double masked_diff(const float *a, const float *b, int64_t B, int64_t T, int64_t D, const int64_t *mask) {
    double d = 0;
    for (int64_t r = 0; r < B * T; r++)
        if (!mask || mask[r]) d = fmax(d, test_max_abs_diff(a + r * D, b + r * D, (size_t)D));
    return d;
}

static int64_t logits_numel(const cp_model *m, const cp_batch *b) {
    const char *task = cp_model_task_type(m);
    if (!strcmp(task, "SEQ_CLS")) return b->B * cp_model_num_labels(m);
    if (!strcmp(task, "TOKEN_CLS")) return b->B * b->T * cp_model_num_labels(m);
    return b->B * b->T * cp_model_hidden_size(m);
}

static void forward_case(const char *root, const char *file) {
    char path[512], model_dir[512];
    snprintf(path, sizeof path, "%s/forward/%s", root, file);
    cp_safetensors st;
    CHECK_OK(cp_st_open(&st, path));
    const char *name = cp_st_meta(&st, "model"), *task = cp_st_meta(&st, "task");
    snprintf(model_dir, sizeof model_dir, "%s/models/%s", root, name ? name : "?");
    cp_model *m = NULL;
    CHECK_OK(cp_model_load_task(&m, model_dir, CP_LOAD_WEIGHTS, NULL));
    const float *want = get(&st, "logits", CP_F32), *want_hidden = get(&st, "hidden_states", CP_F32),
                *want_loss = get(&st, "loss", CP_F32);
    if (!m || !want || !want_hidden || !want_loss || !task) {
        CHECK(0, "%s: setup", file);
        cp_model_free(m);
        cp_st_close(&st);
        return;
    }
    CHECK(!strcmp(cp_model_task_type(m), task), "%s: loaded for %s, transformers' class is %s", file, cp_model_task_type(m), task);
    cp_batch b = fixture_batch(&st);
    const int64_t n = logits_numel(m, &b), C = cp_model_hidden_size(m), L = cp_model_num_layers(m);
    float *logits = malloc((size_t)n * sizeof *logits), *hidden = malloc((size_t)((L + 1) * b.B * b.T * C) * sizeof *hidden);
    cp_outputs out = {.logits = logits, .hidden_states = hidden};
    CHECK_OK(cp_model_forward(m, &b, &out));
    const int64_t *mask = m->arch->encoder ? NULL : b.attention_mask;
    const int seq = !strcmp(task, "SEQ_CLS");
    const double dl = masked_diff(logits, want, b.B, seq ? 1 : b.T, n / b.B / (seq ? 1 : b.T), seq ? NULL : mask);
    double dh = 0;
    for (int64_t l = 0; l <= L; l++)
        dh = fmax(dh, masked_diff(hidden + l * b.B * b.T * C, want_hidden + l * b.B * b.T * C, b.B, b.T, C, mask));
    const double dloss = strcmp(task, "FEATURE_EXTRACTION") ? fabs(out.loss - want_loss[0]) : 0;
    printf("  %-28s %-18s logits %.2e  hidden %.2e  loss %.2e (%.6f)\n", name, task, dl, dh, dloss, out.loss);
    CHECK(dl <= LOGIT_TOL, "%s: logits differ by %.3e", file, dl);
    CHECK(dh <= LOGIT_TOL, "%s: hidden states differ by %.3e", file, dh);
    CHECK(dloss <= LOGIT_TOL, "%s: loss %.8f vs %.8f", file, out.loss, (double)want_loss[0]);
    const char *want_repr = cp_st_meta(&st, "repr"), *want_count = cp_st_meta(&st, "num_parameters");
    char *repr = cp_model_repr(m);
    CHECK(repr && want_repr && !strcmp(repr, want_repr), "%s: repr differs:\n%s\n--- transformers:\n%s", file, repr ? repr : "",
          want_repr ? want_repr : "");
    free(repr);
    CHECK(want_count && cp_model_num_parameters(m) == atoll(want_count), "%s: %lld parameters, transformers counts %s", file,
          (long long)cp_model_num_parameters(m), want_count ? want_count : "?");
    worst_logits = fmax(worst_logits, dl);
    worst_hidden = fmax(worst_hidden, dh);
    worst_loss = fmax(worst_loss, dloss);
    free(logits);
    free(hidden);
    cp_model_free(m);
    cp_st_close(&st);
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every forward fixture under root; returns their number. */
static int forward_cases(const char *root) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s/forward", root);
    DIR *d = opendir(dir);
    CHECK(d != NULL, "cannot open %s", dir);
    if (!d) return 0;
    char *names[64];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 64)
        if (strstr(e->d_name, ".safetensors")) names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, name_cmp);
    for (int i = 0; i < n; i++) { forward_case(root, names[i]); free(names[i]); }
    return n;
}

TEST(encoder_forward_matches_transformers) {
    int n = forward_cases(ROOT);
    CHECK(n >= 21, "only %d encoder forward fixtures", n);
    int nd = forward_cases(DEC_ROOT);
    CHECK(nd >= 12, "only %d decoder head forward fixtures", nd);
    n += nd;
    printf("  %d cases: max |logits diff| %.2e, max |hidden diff| %.2e, max |loss diff| %.2e (goal %.0e)\n", n, worst_logits,
           worst_hidden, worst_loss, LOGIT_TOL);
}

/* A SEQ_CLS checkpoint loaded as the bare BertModel gives transformers' hidden states (the classifier
 * is left out), and as BertForTokenClassification (pooler left out) runs its classifier on every token. */
TEST(task_selection_at_load) {
    cp_safetensors st;
    CHECK_OK(cp_st_open(&st, ROOT "/forward/bert_seqcls.safetensors"));
    cp_batch b = fixture_batch(&st);
    b.labels = NULL;
    const float *want_hidden = get(&st, "hidden_states", CP_F32);
    cp_model *m = NULL;
    cp_set_quiet(1);
    CHECK_OK(cp_model_load_task(&m, ROOT "/models/bert_seqcls", CP_LOAD_WEIGHTS, "FEATURE_EXTRACTION"));
    if (m && want_hidden) {
        const int64_t C = cp_model_hidden_size(m), L = cp_model_num_layers(m), n = b.B * b.T * C;
        CHECK(!strcmp(cp_model_task_type(m), "FEATURE_EXTRACTION") && cp_model_num_labels(m) == 0, "task %s", cp_model_task_type(m));
        float *h = malloc((size_t)n * sizeof *h);
        cp_outputs out = {.logits = h};
        CHECK_OK(cp_model_forward(m, &b, &out));
        double d = test_max_abs_diff(h, want_hidden + L * n, (size_t)n);
        printf("  bert_seqcls as BertModel: last hidden state max |diff| %.2e\n", d);
        CHECK(d <= LOGIT_TOL, "last hidden state differs by %.3e", d);
        char *repr = cp_model_repr(m);
        CHECK(repr && !strncmp(repr, "BertModel(", 10) && strstr(repr, "(pooler): BertPooler(") && !strstr(repr, "classifier"),
              "repr: %.200s", repr ? repr : "(null)");
        free(repr);
        free(h);
    }
    cp_model_free(m);
    m = NULL;
    CHECK_OK(cp_model_load_task(&m, ROOT "/models/bert_seqcls", CP_LOAD_WEIGHTS, "TOKEN_CLS"));
    if (m) {
        CHECK(cp_model_num_labels(m) == 3, "num_labels %lld", (long long)cp_model_num_labels(m));
        char *repr = cp_model_repr(m);
        CHECK(repr && !strncmp(repr, "BertForTokenClassification(", 27) && !strstr(repr, "pooler"), "repr: %.200s", repr ? repr : "");
        free(repr);
        float *logits = malloc((size_t)(b.B * b.T * 3) * sizeof *logits);
        cp_outputs out = {.logits = logits};
        CHECK_OK(cp_model_forward(m, &b, &out));
        free(logits);
    }
    cp_set_quiet(0);
    cp_model_free(m);
    cp_st_close(&st);
}

/* A bare base-model checkpoint loaded for SEQ_CLS: the head starts fresh (transformers' init: weight
 * ~ normal(0, initializer_range), zero bias), the same for the same seed, and it runs. */
TEST(fresh_head_from_base_checkpoint) {
    const char *dirs[] = {ROOT "/models/bert_base", ROOT "/models/roberta_base"};
    cp_set_quiet(1);
    for (int d = 0; d < 2; d++) {
        cp_model *m = NULL;
        CHECK_OK(cp_model_load_task(&m, dirs[d], CP_LOAD_WEIGHTS, "SEQ_CLS"));
        if (!m) continue;
        const cp_module *cls = m->head.classifier;
        CHECK(m->n_fresh_head == (d ? 4 : 2), "%s: %d fresh head tensors", dirs[d], m->n_fresh_head);
        double sum = 0, sq = 0, bias = 0;
        const int64_t n = cls->weight->numel;
        for (int64_t i = 0; i < n; i++) { sum += cls->weight->data[i]; sq += (double)cls->weight->data[i] * cls->weight->data[i]; }
        for (int64_t i = 0; i < cls->bias->numel; i++) bias = fmax(bias, fabs(cls->bias->data[i]));
        const double sd = sqrt(sq / (double)n - (sum / (double)n) * (sum / (double)n));
        printf("  %-40s fresh %s: std %.3f (initializer_range %.2f), max |bias| %g\n", dirs[d], cls->path, sd,
               m->config.initializer_range, bias);
        CHECK(fabs(sd - m->config.initializer_range) < 0.3 * m->config.initializer_range && bias == 0, "std %.3f", sd);
        float w0 = cls->weight->data[0];
        CHECK_OK(cp_model_init_head(m, 7));
        float w7 = cls->weight->data[0];
        CHECK_OK(cp_model_init_head(m, 7));
        CHECK(w7 == cls->weight->data[0] && w7 != w0, "seeded redraw: %g %g %g", w0, w7, cls->weight->data[0]);
        int64_t ids[4] = {5, 6, 7, 8}, labels[1] = {1};
        float logits[2];
        cp_outputs out = {.logits = logits};
        CHECK_OK(cp_model_forward(m, &(cp_batch){.B = 1, .T = 4, .input_ids = ids, .labels = labels}, &out));
        CHECK(isfinite(out.loss), "loss %g", out.loss);
        cp_model_free(m);
    }
    cp_model *m = NULL;
    CHECK_OK(cp_model_load_task(&m, ROOT "/models/bert_seqcls", CP_LOAD_WEIGHTS, NULL));
    if (m) CHECK_ERR(cp_model_init_head(m, 1), "nothing to initialise");
    cp_model_free(m);
    cp_set_quiet(0);
}

TEST(encoder_bad_input) {
    cp_model *m = NULL;
    CHECK_ERR(cp_model_load_task(&m, ROOT "/models/bert_seqcls", CP_LOAD_WEIGHTS, "CAUSAL_LM"), "is an encoder");
    CHECK_ERR(cp_model_load_task(&m, ROOT "/models/bert_seqcls", CP_LOAD_WEIGHTS, "QUESTION_ANS"), "QUESTION_ANS");
    CHECK_ERR(cp_model_load_task(&m, "tests/fixtures/models/gpt2_tiny", CP_LOAD_WEIGHTS, "FEATURE_EXTRACTION"), "not built yet for gpt2");
    CHECK_OK(cp_model_load_task(&m, ROOT "/models/bert_seqcls", CP_LOAD_WEIGHTS, NULL));
    if (!m) return;
    int64_t ids[6] = {2, 5, 7, 9, 11, 0}, mask[6] = {1, 1, 1, 1, 1, 0}, tt[6] = {0, 0, 0, 5, 0, 0};
    int64_t labels[2] = {1, 3};
    float values[2] = {0.5f, 1.0f};
    float logits[6];
    cp_outputs out = {.logits = logits};
    cp_batch b = {.B = 2, .T = 3, .input_ids = ids, .attention_mask = mask, .labels = labels};
    CHECK_ERR(cp_model_forward(m, &b, &out), "labels");     /* class 3 of 3 */
    labels[1] = 2;
    b.token_type_ids = tt;
    CHECK_ERR(cp_model_forward(m, &b, &out), "token_type_ids"); /* type 5 of 2 */
    b.token_type_ids = NULL;
    b.label_values = values;
    CHECK_ERR(cp_model_forward(m, &b, &out), "both labels and label_values");
    CHECK_OK(cp_model_forward(m, &(cp_batch){.B = 2, .T = 3, .input_ids = ids, .labels = labels}, &out));
    cp_model_free(m);
    /* a decoder's SEQ_CLS head without pad_token_id takes one row only, as transformers */
    m = NULL;
    CHECK_OK(cp_model_load_task(&m, DEC_ROOT "/models/gpt2_seqcls_nopad", CP_LOAD_WEIGHTS, NULL));
    if (!m) return;
    CHECK_ERR(cp_model_forward(m, &(cp_batch){.B = 2, .T = 3, .input_ids = ids}, &out), "Cannot handle batch sizes > 1");
    CHECK_OK(cp_model_forward(m, &(cp_batch){.B = 1, .T = 3, .input_ids = ids}, &out));
    cp_model_free(m);
}

/* cpeft's save_pretrained of the adapter PEFT wrote holds PEFT's tensor set: the same keys (the head
 * under modules_to_save's key names), shapes, dtypes and values. */
static void same_adapter_file(cp_model *m, const char *peft_dir, const char *name) {
    char tmpl[] = "/tmp/cpeft_enc_XXXXXX", out[300], a[600], b[600];
    if (!mkdtemp(tmpl)) { CHECK(0, "mkdtemp"); return; }
    snprintf(out, sizeof out, "%s/adapter", tmpl);
    CHECK_OK(cp_model_save_adapter(m, "default", out));
    snprintf(a, sizeof a, "%s/adapter_model.safetensors", peft_dir);
    snprintf(b, sizeof b, "%s/adapter_model.safetensors", out);
    cp_safetensors sa, sb;
    CHECK_OK(cp_st_open(&sa, a));
    if (cp_st_open(&sb, b) != CP_OK) { CHECK(0, "%s: cpeft wrote no adapter file", name); cp_st_close(&sa); return; }
    CHECK(sa.n_tensors == sb.n_tensors, "%s: PEFT's file has %d tensors, cpeft's %d", name, sa.n_tensors, sb.n_tensors);
    for (int i = 0; i < sa.n_tensors; i++) {
        const cp_st_tensor *ta = &sa.tensors[i], *tb = cp_st_find(&sb, ta->name);
        int same = tb && tb->dtype == ta->dtype && tb->ndim == ta->ndim && tb->numel == ta->numel;
        for (int d = 0; same && d < ta->ndim; d++) same = ta->shape[d] == tb->shape[d];
        CHECK(same, "%s: %s missing or mis-shaped in cpeft's file", name, ta->name);
        if (same) CHECK(!memcmp(ta->data, tb->data, (size_t)cp_dtype_nbytes(ta->dtype, ta->numel)), "%s: %s values differ", name, ta->name);
    }
    cp_st_close(&sa);
    cp_st_close(&sb);
    snprintf(a, sizeof a, "rm -rf '%s'", tmpl);
    CHECK(system(a) == 0, "cleanup");
}

TEST(encoder_lora_gradients_match_peft) {
    const char *cases[] = {"bert_seqcls_default",    "bert_seqcls_regression", "bert_seqcls_multilabel", "bert_tokcls_dense",
                           "roberta_seqcls_default", "roberta_tokcls_kv",      "xlmr_seqcls_default",    "xlmr_tokcls_default",
                           "distilbert_seqcls_qv",   "distilbert_tokcls_all",  "electra_seqcls_default", "electra_seqcls_proj",
                           "electra_tokcls_default", "layoutlm_seqcls_default", "layoutlm_tokcls_emb",
                           /* decoders: score (SEQ_CLS) / classifier, score (TOKEN_CLS) in modules_to_save */
                           "gpt2_seqcls_default", "gpt2_seqcls_left_default", "gpt_neo_tokcls_default", "llama_seqcls_left_default",
                           "llama_tokcls_left_mlp", "qwen2_seqcls_left_default"};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char dir[256], path[512];
        const char *root = strncmp(cases[c], "gpt", 3) && strncmp(cases[c], "llama", 5) && strncmp(cases[c], "qwen2", 5) ? ROOT : DEC_ROOT;
        snprintf(dir, sizeof dir, "%s/grads/%s", root, cases[c]);
        cJSON *exp = NULL;
        snprintf(path, sizeof path, "%s/expected.json", dir);
        CHECK_OK(cp_json_read_file(path, &exp));
        if (!exp) continue;
        snprintf(path, sizeof path, "%s/%s", root, cJSON_GetObjectItem(exp, "base_dir")->valuestring);
        cp_model *m = NULL;
        CHECK_OK(cp_model_load_task(&m, path, CP_LOAD_WEIGHTS, cJSON_GetObjectItem(exp, "task")->valuestring));
        if (m) CHECK_OK(cp_adapter_load(m, dir, "default", 1, 1));
        cp_safetensors st;
        snprintf(path, sizeof path, "%s/expected.safetensors", dir);
        CHECK_OK(cp_st_open(&st, path));
        cp_param **params = NULL;
        int n = 0;
        if (!m || !m->peft || cp_peft_trainable_params(m, &params, &n) != CP_OK) {
            CHECK(0, "%s: setup", cases[c]);
            cp_model_free(m);
            cJSON_Delete(exp);
            cp_st_close(&st);
            continue;
        }
        cp_batch b = fixture_batch(&st);
        /* logits and loss with the adapter (eval forward) */
        const int64_t nl = logits_numel(m, &b);
        float *logits = malloc((size_t)nl * sizeof *logits);
        cp_outputs out = {.logits = logits};
        CHECK_OK(cp_model_forward(m, &b, &out));
        const int seq = !strcmp(cp_model_task_type(m), "SEQ_CLS");
        const double dl = masked_diff(logits, get(&st, "logits", CP_F32), b.B, seq ? 1 : b.T, nl / b.B / (seq ? 1 : b.T),
                                      seq || m->arch->encoder ? NULL : b.attention_mask);
        const double want_loss = *(const float *)get(&st, "loss", CP_F32);
        CHECK(dl <= LOGIT_TOL, "%s: logits with the adapter differ by %.3e", cases[c], dl);
        CHECK(fabs(out.loss - want_loss) <= LOGIT_TOL, "%s: loss %.7f vs %.7f", cases[c], out.loss, want_loss);
        free(logits);
        /* one backward: the mean loss of the batch */
        double loss_sum;
        int64_t n_items;
        CHECK_OK(cp_model_forward_backward(m, &b, 0.0, 0, &loss_sum, &n_items));
        CHECK(fabs(loss_sum / (double)n_items - want_loss) < LOGIT_TOL, "%s: training loss %.7f vs %.7f", cases[c],
              loss_sum / (double)n_items, want_loss);
        int matched = 0;
        double worst = 0;
        for (int i = 0; i < st.n_tensors; i++) {
            const char *key = st.tensors[i].name;
            if (strncmp(key, "grad.", 5)) continue;
            cp_param *p = cp_adapter_find_param(m, "default", key + 5);
            CHECK(p && p->grad && p->numel == st.tensors[i].numel, "%s: %s has no trained parameter", cases[c], key);
            if (!p || !p->grad) continue;
            double d = rel_diff(p->grad, st.tensors[i].data, p->numel);
            worst = fmax(worst, d);
            CHECK(d <= GRAD_TOL, "%s: %s relative difference %.3e", cases[c], key, d);
            matched++;
        }
        CHECK(matched == n && n > 0, "%s: %d gradients in the fixture, %d trainable tensors here", cases[c], matched, n);
        printf("  %-24s %2d trainable tensors, logits %.2e, loss %.6f, max relative gradient difference %.2e\n", cases[c], n, dl,
               out.loss, worst);
        worst_grad = fmax(worst_grad, worst);
        same_adapter_file(m, dir, cases[c]);
        cp_free(params);
        cp_st_close(&st);
        cp_model_free(m);
        cJSON_Delete(exp);
    }
    printf("  all gradients within %.2e of PEFT's (relative; goal %.0e)\n", worst_grad, GRAD_TOL);
}

/* get_peft_model with task_type and no target_modules: PEFT's default targets for the model type plus the
 * head in modules_to_save give exactly the trainable tensors of the *_default fixtures; DistilBERT has no
 * default ("Please specify `target_modules`"). */
TEST(encoder_default_targets) {
    const char *cases[] = {"bert_seqcls_default", "roberta_seqcls_default", "xlmr_tokcls_default", "electra_seqcls_default",
                           "electra_tokcls_default", "layoutlm_seqcls_default"};
    char cfg[] = "/tmp/cpeft_enc_cfg_XXXXXX";
    int fd = mkstemp(cfg);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    close(fd);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char path[512];
        cJSON *exp = NULL;
        snprintf(path, sizeof path, ROOT "/grads/%s/expected.json", cases[c]);
        CHECK_OK(cp_json_read_file(path, &exp));
        if (!exp) continue;
        const char *task = cJSON_GetObjectItem(exp, "task")->valuestring;
        FILE *f = fopen(cfg, "w");
        fprintf(f, "{\"peft_type\": \"LORA\", \"task_type\": \"%s\", \"r\": 4, \"lora_alpha\": 8}", task);
        fclose(f);
        snprintf(path, sizeof path, ROOT "/%s", cJSON_GetObjectItem(exp, "base_dir")->valuestring);
        cp_model *m = NULL;
        CHECK_OK(cp_model_load_task(&m, path, CP_LOAD_WEIGHTS, task));
        if (m) CHECK_OK(cp_model_add_adapter(m, "default", cfg, 0));
        cp_param **params = NULL;
        int n = 0, found = 0;
        const cJSON *keys = cJSON_GetObjectItem(exp, "trainable"), *k;
        if (m && m->peft && cp_peft_trainable_params(m, &params, &n) == CP_OK)
            cJSON_ArrayForEach(k, keys) {
                const int hit = cp_adapter_find_param(m, "default", k->valuestring) != NULL;
                CHECK(hit, "%s: PEFT trains %s, cpeft has no such tensor", cases[c], k->valuestring);
                found += hit;
            }
        CHECK(n == cJSON_GetArraySize(keys) && found == n, "%s: %d trainable tensors, PEFT %d", cases[c], n, cJSON_GetArraySize(keys));
        printf("  %-24s default targets: %d trainable tensors as PEFT's\n", cases[c], n);
        cp_free(params);
        cp_model_free(m);
        cJSON_Delete(exp);
    }
    cp_model *m = NULL;
    FILE *f = fopen(cfg, "w");
    fputs("{\"peft_type\": \"LORA\", \"task_type\": \"SEQ_CLS\", \"r\": 4, \"lora_alpha\": 8}", f);
    fclose(f);
    CHECK_OK(cp_model_load_task(&m, ROOT "/models/distilbert_seqcls", CP_LOAD_WEIGHTS, NULL));
    if (m) CHECK_ERR(cp_model_add_adapter(m, "default", cfg, 0), "target_modules");
    cp_model_free(m);
    unlink(cfg);
}

/* LayoutLM's boxes: a coordinate, height or width outside the 2-D tables is an error naming the box; the
 * other encoders take no boxes; DistilBERT takes no token types. */
TEST(encoder_box_and_type_errors) {
    cp_model *m = NULL;
    CHECK_OK(cp_model_load_task(&m, ROOT "/models/layoutlm_base", CP_LOAD_WEIGHTS, NULL));
    if (!m) return;
    const int64_t M2 = m->config.max_2d_positions;
    int64_t ids[2] = {5, 6}, box[8] = {0, 0, 1, 1, 2, 3, 4, 5};
    float h[2 * 32];
    cp_outputs out = {.logits = h};
    cp_batch b = {.B = 1, .T = 2, .input_ids = ids, .bbox = box};
    CHECK_OK(cp_model_forward(m, &b, &out));
    b.bbox = NULL; /* no boxes: zeros, as LayoutLMModel makes them */
    CHECK_OK(cp_model_forward(m, &b, &out));
    b.bbox = box;
    box[6] = M2;
    CHECK_ERR(cp_model_forward(m, &b, &out), "bbox[0][1]");
    box[6] = 4;
    box[5] = 6; /* y0 6 above y1 5: a negative height */
    CHECK_ERR(cp_model_forward(m, &b, &out), "height y1 - y0 is -1");
    box[5] = 3;
    box[0] = -1;
    CHECK_ERR(cp_model_forward(m, &b, &out), "x0 is -1");
    cp_model_free(m);
    m = NULL;
    CHECK_OK(cp_model_load_task(&m, ROOT "/models/bert_base", CP_LOAD_WEIGHTS, NULL));
    box[0] = 0;
    if (m) CHECK_ERR(cp_model_forward(m, &b, &out), "takes no boxes");
    cp_model_free(m);
    m = NULL;
    CHECK_OK(cp_model_load_task(&m, ROOT "/models/distilbert_base", CP_LOAD_WEIGHTS, NULL));
    int64_t tt[2] = {0, 1};
    if (m) CHECK_ERR(cp_model_forward(m, &(cp_batch){.B = 1, .T = 2, .input_ids = ids, .token_type_ids = tt}, &out),
                     "no token type embeddings");
    cp_model_free(m);
}

int main(void) {
    RUN(encoder_forward_matches_transformers);
    RUN(task_selection_at_load);
    RUN(fresh_head_from_base_checkpoint);
    RUN(encoder_bad_input);
    RUN(encoder_lora_gradients_match_peft);
    RUN(encoder_default_targets);
    RUN(encoder_box_and_type_errors);
    return test_summary();
}
