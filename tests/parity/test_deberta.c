/*
 * test_deberta.c — DeBERTa (v1) and DeBERTa-v2 encoders and their task heads against transformers + PEFT
 * (fixtures from tests/reference/make_deberta_model_fixtures.py, under tests/fixtures/deberta_models/):
 *   - forward: logits (B,K) / (B,T,K) / last hidden state, every hidden state, loss, repr and parameter
 *     count, for models covering each config switch (relative_attention, pos_att_type, share_att_key,
 *     position_buckets, clamped spans, norm_rel_ebd, position_biased_input, embed_proj, the v2 ConvLayer),
 *     f32 and 16-bit copies;
 *   - LoRA (SEQ_CLS / TOKEN_CLS, head in modules_to_save): logits and loss with the adapter, the gradient of
 *     every trainable tensor after one backward (LoRA in layer 0 only; rel_embeddings and encoder.LayerNorm
 *     in modules_to_save with LoRA in the top layer only: the backward must still reach the relative
 *     embeddings through every layer), the same with recompute, print(PeftModel) and the trainable counts,
 *     and the adapter file cpeft writes back;
 *   - bad input: the switches cpeft refuses by name.
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

#define ROOT "tests/fixtures/deberta_models"
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
                  .labels = get(st, "labels", CP_I64), .label_values = get(st, "label_values", CP_F32)};
    return b;
}

static int64_t logits_numel(const cp_model *m, const cp_batch *b) {
    const char *task = cp_model_task_type(m);
    if (!strcmp(task, "SEQ_CLS")) return b->B * cp_model_num_labels(m);
    if (!strcmp(task, "TOKEN_CLS")) return b->B * b->T * cp_model_num_labels(m);
    return b->B * b->T * cp_model_hidden_size(m);
}

static void forward_case(const char *file) {
    char path[512], model_dir[512];
    snprintf(path, sizeof path, ROOT "/forward/%s", file);
    cp_safetensors st;
    CHECK_OK(cp_st_open(&st, path));
    const char *name = cp_st_meta(&st, "model"), *task = cp_st_meta(&st, "task");
    snprintf(model_dir, sizeof model_dir, ROOT "/models/%s", name ? name : "?");
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
    const double dl = test_max_abs_diff(logits, want, (size_t)n);
    const double dh = test_max_abs_diff(hidden, want_hidden, (size_t)((L + 1) * b.B * b.T * C));
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

TEST(deberta_forward_matches_transformers) {
    DIR *d = opendir(ROOT "/forward");
    CHECK(d != NULL, "cannot open " ROOT "/forward");
    if (!d) return;
    char *names[64];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 64)
        if (strstr(e->d_name, ".safetensors")) names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, name_cmp);
    for (int i = 0; i < n; i++) { forward_case(names[i]); free(names[i]); }
    CHECK(n >= 10, "only %d forward fixtures", n);
    printf("  %d cases: max |logits diff| %.2e, max |hidden diff| %.2e, max |loss diff| %.2e (goal %.0e)\n", n, worst_logits,
           worst_hidden, worst_loss, LOGIT_TOL);
}

/* cpeft's save_pretrained of the adapter PEFT wrote holds PEFT's tensor set: the same keys (the head
 * under modules_to_save's key names), shapes, dtypes and values. */
static void same_adapter_file(cp_model *m, const char *peft_dir, const char *name) {
    char tmpl[] = "/tmp/cpeft_deb_XXXXXX", out[300], a[600], b[600];
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

TEST(deberta_lora_gradients_match_peft) {
    const char *cases[] = {"debv2_seqcls_default", "debv2_tokcls_all", "debv2_seqcls_layer0", "debv2_seqcls_relemb",
                           "debv2_conv_embproj",   "debv2_conv_default",   "debv2_soft_default",
                           "deb_seqcls_default",   "deb_tokcls_pos",   "deb_seqcls_relemb",   "deb_multilabel_pq"};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char dir[256], path[512];
        snprintf(dir, sizeof dir, ROOT "/grads/%s", cases[c]);
        cJSON *exp = NULL;
        snprintf(path, sizeof path, "%s/expected.json", dir);
        CHECK_OK(cp_json_read_file(path, &exp));
        if (!exp) continue;
        snprintf(path, sizeof path, ROOT "/%s", cJSON_GetObjectItem(exp, "base_dir")->valuestring);
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
        /* print(peft_model) and print_trainable_parameters()'s counts */
        const char *want_repr = cp_st_meta(&st, "repr"), *want_tr = cp_st_meta(&st, "trainable"), *want_all = cp_st_meta(&st, "all");
        char *repr = cp_model_peft_repr(m);
        CHECK(repr && want_repr && !strcmp(repr, want_repr), "%s: PeftModel repr differs:\n%s\n--- PEFT:\n%s", cases[c],
              repr ? repr : "", want_repr ? want_repr : "");
        cp_free(repr);
        int64_t tr = 0, all = 0;
        cp_model_trainable_parameters(m, &tr, &all);
        CHECK(want_tr && want_all && tr == atoll(want_tr) && all == atoll(want_all), "%s: trainable %lld of %lld, PEFT %s of %s",
              cases[c], (long long)tr, (long long)all, want_tr ? want_tr : "?", want_all ? want_all : "?");
        cp_batch b = fixture_batch(&st);
        /* logits and loss with the adapter (eval forward) */
        const int64_t nl = logits_numel(m, &b);
        float *logits = malloc((size_t)nl * sizeof *logits);
        cp_outputs out = {.logits = logits};
        CHECK_OK(cp_model_forward(m, &b, &out));
        const double dl = test_max_abs_diff(logits, get(&st, "logits", CP_F32), (size_t)nl);
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
        /* the same backward with recompute (block inputs only, the rest rerun block by block): the same gradients */
        for (int i = 0; i < n; i++) memset(params[i]->grad, 0, (size_t)params[i]->numel * sizeof *params[i]->grad);
        CHECK_OK(cp_model_forward_backward(m, &b, 0.0, 1, &loss_sum, &n_items));
        double worst_rc = 0;
        for (int i = 0; i < st.n_tensors; i++) {
            if (strncmp(st.tensors[i].name, "grad.", 5)) continue;
            cp_param *p = cp_adapter_find_param(m, "default", st.tensors[i].name + 5);
            if (p && p->grad) worst_rc = fmax(worst_rc, rel_diff(p->grad, st.tensors[i].data, p->numel));
        }
        CHECK(worst_rc <= GRAD_TOL, "%s: with recompute, relative gradient difference %.3e", cases[c], worst_rc);
        worst_grad = fmax(worst_grad, worst_rc);
        same_adapter_file(m, dir, cases[c]);
        cp_free(params);
        cp_st_close(&st);
        cp_model_free(m);
        cJSON_Delete(exp);
    }
    printf("  all gradients within %.2e of PEFT's (relative; goal %.0e)\n", worst_grad, GRAD_TOL);
}

/* Writes dir/config.json = the JSON text given. */
static void write_config(const char *dir, const char *json) {
    char path[300];
    snprintf(path, sizeof path, "mkdir -p '%s'", dir);
    CHECK(system(path) == 0, "mkdir");
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) { CHECK(0, "cannot write %s", path); return; }
    fputs(json, f);
    fclose(f);
}

TEST(deberta_refuses_by_name) {
    char tmpl[] = "/tmp/cpeft_debcfg_XXXXXX";
    if (!mkdtemp(tmpl)) { CHECK(0, "mkdtemp"); return; }
    struct { const char *json, *want; } cases[] = {
        {"{\"model_type\": \"deberta\", \"hidden_size\": 32, \"num_hidden_layers\": 1, \"num_attention_heads\": 4, "
         "\"intermediate_size\": 8, \"vocab_size\": 10, \"talking_head\": true}", "talking_head"},
        {"{\"model_type\": \"deberta-v2\", \"hidden_size\": 32, \"num_hidden_layers\": 1, \"num_attention_heads\": 4, "
         "\"intermediate_size\": 8, \"vocab_size\": 10, \"conv_kernel_size\": 4}", "conv_kernel_size"},
        {"{\"model_type\": \"deberta-v2\", \"hidden_size\": 32, \"num_hidden_layers\": 1, \"num_attention_heads\": 4, "
         "\"intermediate_size\": 8, \"vocab_size\": 10, \"relative_attention\": true, \"position_buckets\": 1}", "position_buckets"},
        {"{\"model_type\": \"deberta-v2\", \"hidden_size\": 32, \"num_hidden_layers\": 1, \"num_attention_heads\": 4, "
         "\"intermediate_size\": 8, \"vocab_size\": 10, \"pos_att_type\": [\"c2p\", \"x2y\"]}", "pos_att_type"},
        {"{\"model_type\": \"deberta-v2\", \"hidden_size\": 32, \"num_hidden_layers\": 1, \"num_attention_heads\": 4, "
         "\"intermediate_size\": 8, \"vocab_size\": 10, \"attention_head_size\": 16}", "attention_head_size"},
    };
    cp_set_quiet(1);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_config(tmpl, cases[i].json);
        cp_model *m = NULL;
        CHECK_ERR(cp_model_load_task(&m, tmpl, 0, "FEATURE_EXTRACTION"), cases[i].want);
        cp_model_free(m);
    }
    cp_set_quiet(0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
    CHECK(system(cmd) == 0, "cleanup");
}

/* The SEQ_CLS checkpoint loaded as the bare DebertaV2Model gives transformers' last hidden state (the
 * pooler and classifier are left out with a warning). */
TEST(deberta_task_selection_at_load) {
    cp_safetensors st;
    CHECK_OK(cp_st_open(&st, ROOT "/forward/debv2_seqcls.safetensors"));
    cp_batch b = fixture_batch(&st);
    b.labels = NULL;
    const float *want_hidden = get(&st, "hidden_states", CP_F32);
    cp_model *m = NULL;
    cp_set_quiet(1);
    CHECK_OK(cp_model_load_task(&m, ROOT "/models/debv2_seqcls", CP_LOAD_WEIGHTS, "FEATURE_EXTRACTION"));
    cp_set_quiet(0);
    if (m && want_hidden) {
        const int64_t C = cp_model_hidden_size(m), L = cp_model_num_layers(m), n = b.B * b.T * C;
        float *h = malloc((size_t)n * sizeof *h);
        cp_outputs out = {.logits = h};
        CHECK_OK(cp_model_forward(m, &b, &out));
        const double d = test_max_abs_diff(h, want_hidden + L * n, (size_t)n);
        printf("  debv2_seqcls as DebertaV2Model: last hidden state max |diff| %.2e\n", d);
        CHECK(d <= LOGIT_TOL, "last hidden state differs by %.3e", d);
        char *repr = cp_model_repr(m);
        CHECK(repr && !strncmp(repr, "DebertaV2Model(", 15) && !strstr(repr, "pooler") && !strstr(repr, "classifier"), "repr: %.200s",
              repr ? repr : "");
        free(repr);
        free(h);
    }
    cp_model_free(m);
    cp_st_close(&st);
}

int main(void) {
    RUN(deberta_forward_matches_transformers);
    RUN(deberta_task_selection_at_load);
    RUN(deberta_refuses_by_name);
    RUN(deberta_lora_gradients_match_peft);
    return test_summary();
}
