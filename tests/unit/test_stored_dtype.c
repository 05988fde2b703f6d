/*
 * test_stored_dtype.c — weights keep the dtype they are stored in.
 *
 * A BF16/F16 checkpoint's matrices (Linear, Conv1D, Embedding weights) stay as the mapped 16-bit
 * values (cp_param.stored, no f32 copy); the products and the embedding gather widen them as they
 * read. Checked here, for GPT-2 (Conv1D, tied head), GPT-Neo (Linear) and Llama (Linear, untied
 * head), BF16 and F16:
 *   - which parameters are kept stored and which are widened (vectors, written matrices);
 *   - logits and the chunked loss equal those of the same model with every matrix widened to f32
 *     (cp_param_make_writable), for a few rows (the 16-bit few-row kernels) and for many (the
 *     widened panels), within 1e-5;
 *   - merging an adapter widens only the matrices it writes, and the merged checkpoint holds every
 *     other tensor byte for byte as the input file had it.
 */
#include "test.h"
#include "cpeft.h"
#include "core/alloc.h"
#include "core/rng.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "peft/peft_model.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Writes src_dir's model with every tensor converted to `dtype` into a fresh temporary directory. */
static char *low_copy(const char *src_dir, cp_dtype dtype) {
    char *dir = strdup("/tmp/cpeft-stored-XXXXXX"), path[600], cmd[1400];
    if (!mkdtemp(dir)) { free(dir); return NULL; }
    snprintf(cmd, sizeof cmd, "cp %s/config.json %s/", src_dir, dir);
    CHECK(system(cmd) == 0, "%s", cmd);
    snprintf(path, sizeof path, "%s/model.safetensors", src_dir);
    cp_safetensors st;
    CHECK_OK(cp_st_open(&st, path));
    cp_st_write_tensor *w = calloc((size_t)st.n_tensors, sizeof *w);
    void **bufs = calloc((size_t)st.n_tensors, sizeof *bufs);
    for (int i = 0; i < st.n_tensors; i++) {
        const cp_st_tensor *t = &st.tensors[i];
        float *f = malloc((size_t)t->numel * sizeof *f);
        cp_convert_to_f32(f, t->data, t->dtype, (size_t)t->numel);
        bufs[i] = malloc((size_t)t->numel * 2);
        cp_convert_from_f32(bufs[i], dtype, f, (size_t)t->numel);
        free(f);
        w[i] = (cp_st_write_tensor){.name = t->name, .dtype = dtype, .ndim = t->ndim, .data = bufs[i]};
        for (int d = 0; d < t->ndim; d++) w[i].shape[d] = t->shape[d];
    }
    const char *mk[1] = {"format"}, *mv[1] = {"pt"};
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK_OK(cp_st_write(path, w, st.n_tensors, mk, mv, 1));
    for (int i = 0; i < st.n_tensors; i++) free(bufs[i]);
    free(bufs);
    free(w);
    cp_st_close(&st);
    return dir;
}

static void remove_dir(const char *dir) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "%s", cmd);
}

typedef struct { int stored, widened_vectors, widened_matrices, wrong; int64_t stored_bytes; cp_dtype want; } census;

static int count_param(cp_module *mod, void *vctx) {
    census *c = vctx;
    cp_param *ps[2] = {mod->weight, mod->bias};
    for (int i = 0; i < 2; i++) {
        cp_param *p = ps[i];
        if (!p || p->tied_to) continue;
        if (p->stored) {
            c->stored++;
            c->stored_bytes += p->numel * 2;
            c->wrong += p->data != NULL || p->ndim != 2 || p->source_dtype != c->want;
        } else {
            if (p->ndim == 2) c->widened_matrices++;
            else c->widened_vectors++;
            c->wrong += p->data == NULL;
        }
    }
    return 0;
}

static census take_census(cp_model *m, cp_dtype want) {
    census c = {0};
    c.want = want;
    cp_module_visit(m->root, count_param, &c);
    return c;
}

static int widen_matrix(cp_module *mod, void *vctx) {
    cp_model *m = vctx;
    if (mod->weight && mod->weight->stored && cp_param_make_writable(m, mod->weight) != CP_OK) return 1;
    return 0;
}

/* logits (B,T,V) and the chunked loss of m on a fixed random batch */
static void run_model(cp_model *m, int64_t B, int64_t T, float *logits, double *loss) {
    const int64_t V = cp_model_vocab_size(m), N = B * T;
    int64_t *ids = malloc((size_t)N * sizeof *ids);
    cp_rng rng;
    cp_rng_seed(&rng, 7);
    for (int64_t i = 0; i < N; i++) ids[i] = (int64_t)(cp_rng_uniform(&rng) * (double)V) % V;
    cp_batch b = {.B = B, .T = T, .input_ids = ids};
    cp_outputs out = {.logits = logits};
    CHECK_OK(cp_model_forward(m, &b, &out));
    b.labels = ids;
    cp_outputs lo = {0};
    CHECK_OK(cp_model_forward(m, &b, &lo));
    *loss = lo.loss;
    free(ids);
}

static void stored_equals_widened(const char *dir, cp_dtype dtype, const char *label) {
    cp_model *a = NULL, *b = NULL;
    CHECK_OK(cp_model_load(&a, dir, CP_LOAD_WEIGHTS));
    CHECK_OK(cp_model_load(&b, dir, CP_LOAD_WEIGHTS));
    if (!a || !b) { cp_model_free(a); cp_model_free(b); return; }
    census ca = take_census(a, dtype);
    CHECK(ca.stored > 0 && ca.wrong == 0 && ca.widened_matrices == 0, "%s: %d stored, %d wrong, %d matrices widened",
          label, ca.stored, ca.wrong, ca.widened_matrices);
    CHECK(cp_module_visit(b->root, widen_matrix, b) == 0, "%s: widening", label);
    census cb = take_census(b, dtype);
    CHECK(cb.stored == 0 && cb.widened_matrices == ca.stored, "%s: %d left stored after widening", label, cb.stored);
    const int64_t V = cp_model_vocab_size(a);
    const int64_t shapes[][2] = {{1, 3}, {2, 40}}; /* 3 rows: few-row kernels; 80: widened panels */
    double worst = 0, worst_loss = 0;
    for (int s = 0; s < 2; s++) {
        const int64_t B = shapes[s][0], T = shapes[s][1];
        float *la = malloc((size_t)(B * T * V) * sizeof *la), *lb = malloc((size_t)(B * T * V) * sizeof *lb);
        double loss_a = 0, loss_b = 0;
        run_model(a, B, T, la, &loss_a);
        run_model(b, B, T, lb, &loss_b);
        worst = fmax(worst, test_max_abs_diff(la, lb, (size_t)(B * T * V)));
        worst_loss = fmax(worst_loss, fabs(loss_a - loss_b));
        free(la);
        free(lb);
    }
    printf("    %-26s %2d matrices kept %s (%lld bytes), %2d vectors widened; logits vs widened %.1e, loss %.1e\n", label,
           ca.stored, cp_dtype_name(dtype), (long long)ca.stored_bytes, ca.widened_vectors, worst, worst_loss);
    CHECK(worst <= 1e-5 && worst_loss <= 1e-5, "%s: logits differ by %g, loss by %g", label, worst, worst_loss);
    cp_model_free(a);
    cp_model_free(b);
}

TEST(matrices_stay_stored_and_compute_as_widened) {
    stored_equals_widened("tests/fixtures/models/gpt2_tiny_bf16", CP_BF16, "gpt2_tiny_bf16 (file)");
    stored_equals_widened("tests/fixtures/models/gpt_neo_tiny_f16", CP_F16, "gpt_neo_tiny_f16 (file)");
    const struct { const char *dir; cp_dtype dtype; const char *label; } copies[] = {
        {"tests/fixtures/models/gpt2_untied", CP_F16, "gpt2_untied as F16"},
        {"tests/fixtures/models/gpt_neo_tiny", CP_BF16, "gpt_neo_tiny as BF16"},
        {"tests/fixtures/llama/models/llama_tiny", CP_BF16, "llama_tiny as BF16"},
        {"tests/fixtures/llama/models/qwen2_tiny", CP_F16, "qwen2_tiny as F16"},
    };
    for (size_t i = 0; i < sizeof copies / sizeof *copies; i++) {
        char *dir = low_copy(copies[i].dir, copies[i].dtype);
        CHECK(dir != NULL, "copy of %s", copies[i].dir);
        if (!dir) continue;
        stored_equals_widened(dir, copies[i].dtype, copies[i].label);
        remove_dir(dir);
        free(dir);
    }
}

/* F32 checkpoints are used in place as before: nothing is stored 16-bit, nothing owned. */
TEST(f32_checkpoint_unchanged) {
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, "tests/fixtures/models/gpt2_tiny", CP_LOAD_WEIGHTS));
    if (!m) return;
    census c = take_census(m, CP_F32);
    CHECK(c.stored == 0 && c.wrong == 0, "%d stored, %d wrong", c.stored, c.wrong);
    cp_model_free(m);
}

/* Merging a LoRA adapter into a BF16 model widens only the matrices it writes (c_attn); the merged
 * checkpoint holds every other tensor exactly as the input file did. */
TEST(merge_widens_only_what_it_writes) {
    const char *model = "tests/fixtures/models/gpt2_tiny_bf16";
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, model, CP_LOAD_WEIGHTS));
    if (!m) return;
    CHECK_OK(cp_model_load_adapter(m, "tests/fixtures/lora/gpt2_bf16_mts_bias", "default", 0));
    CHECK_OK(cp_model_merge_adapters(m));
    census c = take_census(m, CP_BF16);
    /* c_attn of both blocks written, lm_head's slot holds its f32 modules_to_save copy; wte, wpe,
     * c_proj, c_fc, mlp.c_proj of both blocks untouched */
    CHECK(c.widened_matrices == 3 && c.stored == 8 && c.wrong == 0, "after merge: %d widened, %d stored, %d wrong",
          c.widened_matrices, c.stored, c.wrong);
    char tmp[] = "/tmp/cpeft-merged-XXXXXX", dir[100], path[600];
    CHECK(mkdtemp(tmp) != NULL, "mkdtemp");
    snprintf(dir, sizeof dir, "%s/merged", tmp);
    CHECK_OK(cp_model_save_merged(m, dir));
    cp_model_free(m);
    cp_safetensors in, out;
    snprintf(path, sizeof path, "%s/model.safetensors", model);
    CHECK_OK(cp_st_open(&in, path));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK_OK(cp_st_open(&out, path));
    int same = 0, changed = 0, bad = 0;
    for (int i = 0; in.tensors && out.tensors && i < in.n_tensors; i++) {
        const cp_st_tensor *a = &in.tensors[i], *b = cp_st_find(&out, a->name);
        if (!b || b->dtype != CP_BF16 || b->numel != a->numel) { bad++; continue; }
        const int eq = memcmp(a->data, b->data, (size_t)a->numel * 2) == 0;
        const int merged_target = strstr(a->name, "c_attn.weight") != NULL;
        const int trained = strstr(a->name, ".bias") || strstr(a->name, "ln_f"); /* bias="all", modules_to_save */
        if (eq) same++;
        else changed++;
        if (merged_target ? eq : !eq && !trained) { bad++; fprintf(stderr, "  %s: %s\n", a->name, eq ? "unchanged" : "changed"); }
    }
    printf("    merged gpt2_tiny_bf16: %d tensors byte-identical to the input, %d changed (the merged c_attn and the "
           "adapter's trained tensors)\n", same, changed);
    CHECK(bad == 0 && same > 0, "%d tensors not as expected", bad);
    cp_st_close(&in);
    cp_st_close(&out);
    /* the merged checkpoint loads, its matrices again kept BF16: the ten of the input and lm_head,
     * which the modules_to_save copy untied from wte (saved on its own, as PEFT's merge does) */
    cp_model *back = NULL;
    CHECK_OK(cp_model_load(&back, dir, CP_LOAD_WEIGHTS));
    if (back) {
        census cb = take_census(back, CP_BF16);
        CHECK(cb.stored == 11 && cb.widened_matrices == 0 && cb.wrong == 0, "reloaded: %d stored", cb.stored);
    }
    cp_model_free(back);
    remove_dir(tmp);
}

int main(void) {
    cp_set_quiet(1);
    RUN(matrices_stay_stored_and_compute_as_widened);
    RUN(f32_checkpoint_unchanged);
    RUN(merge_widens_only_what_it_writes);
    return test_summary();
}
