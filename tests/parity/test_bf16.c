/*
 * test_bf16.c — --bf16 (models/bf16.h) against PyTorch on the fixtures of
 * tests/reference/make_bf16_fixtures.py (tests/fixtures/bf16/<case>/, on the LoRA gradient cases of
 * train/grads and llama/grads: GPT-2 Conv1D all-linear, GPT-Neo q/k/v/out/MLP, Llama all-linear):
 *   - against cpeft's definition written out in f32 PyTorch (frozen products bf16(x)·bf16(W), input
 *     gradients bf16(dY)·bf16(W), all else f32): logits, loss and every LoRA gradient, tight (the
 *     only differences: f32 sums in another order, and the bf16 rounding of an input that lands on
 *     the other side of a rounding boundary because of them: see TOL_EMU_*);
 *   - against torch.autocast("cpu", bfloat16) itself, within bf16 tolerances: autocast also rounds
 *     every Linear output, LoRA's products and attention's to bf16, which cpeft keeps in f32, so the
 *     two differ by bf16's rounding (2^-9 relative per value, carried through the layers); the
 *     bounds are 2× the difference autocast has from the emulation in the fixture's own numbers;
 *   - the fallback: the same run in a child process with CPEFT_ISA=base (the emulated products of
 *     the portable variant) prints the notice and gives the same values within the tight bounds;
 *   - the frozen f32 weights were narrowed to BF16 and the LoRA tensors stayed f32.
 * Prints the largest differences.
 */
#include "test.h"
#include "cpeft.h"
#include "core/alloc.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "kernels/gemm_bf16.h"
#include "models/bf16.h"
#include "models/model.h"
#include "peft/adapter_io.h"
#include "peft/peft_model.h"
#include "train/data.h"
#include "train/step.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const cases[] = {"gpt2_odd_all_linear", "neo_qkv", "llama_all_linear"};
#define N_CASES 3

/* vs the emulation: logits |diff|, loss |diff|, gradients |g - e| / |e| per tensor (Frobenius); each
 * raised to 2× the emulation's own sensitivity (expected.json: how far it moves when every value it
 * rounds moves by 2 f32 ulps, which flips the values next to a bf16 rounding boundary; GPT-2 and
 * GPT-Neo with their unscaled / large attention logits: ~1e-2; Llama ~1e-4) */
#define TOL_EMU_LOGITS 1e-4
#define TOL_EMU_LOSS 1e-5
#define TOL_EMU_GRAD 1e-3

typedef struct {
    double logits, loss, grad; /* against the emulation */
    double a_logits, a_loss, a_grad; /* against autocast */
    double bound_logits, bound_loss, bound_grad; /* 2 × autocast vs emulation, from expected.json */
    double tol_logits, tol_loss, tol_grad;       /* vs the emulation (TOL_EMU_*, sensitivity) */
    int64_t narrowed;
    int n_grads, f32_lora;
} case_result;

static double frob_rel(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num) / fmax(sqrt(den), 1e-30);
}

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return v ? v->valuedouble : NAN;
}

/* Runs one case with --bf16 and compares; 0 on a setup failure. */
static int run_case(const char *name, case_result *r) {
    memset(r, 0, sizeof *r);
    char dir[256], path[512];
    snprintf(dir, sizeof dir, "tests/fixtures/bf16/%s", name);
    cJSON *exp = NULL;
    snprintf(path, sizeof path, "%s/expected.json", dir);
    CHECK_OK(cp_json_read_file(path, &exp));
    if (!exp) return 0;
    const char *case_dir = cJSON_GetObjectItem(exp, "case_dir")->valuestring;
    const char *root = strncmp(case_dir, "llama/", 6) ? "tests/fixtures" : "tests/fixtures/llama";
    const cJSON *d = cJSON_GetObjectItem(exp, "differences");
    r->bound_logits = 2 * num(d, "logits autocast vs emulated");
    r->bound_loss = 2 * num(d, "loss autocast vs emulated");
    r->bound_grad = 2 * num(d, "grads autocast vs emulated (rel)");
    r->tol_logits = fmax(TOL_EMU_LOGITS, 2 * num(d, "logits emulated sensitivity"));
    r->tol_loss = fmax(TOL_EMU_LOSS, 2 * num(d, "loss emulated sensitivity"));
    r->tol_grad = fmax(TOL_EMU_GRAD, 2 * num(d, "grads emulated sensitivity (rel)"));
    /* the bounds must leave the test able to fail: f32 products are farther from the emulation */
    CHECK(r->tol_logits < 0.5 * num(d, "logits emulated vs f32") && r->tol_grad < 0.5 * num(d, "grads emulated vs f32 (rel)"),
          "%s: bf16 rounding is not distinguishable from f32 at these tolerances", name);
    snprintf(path, sizeof path, "%s/%s", root, cJSON_GetObjectItem(exp, "base_dir")->valuestring);
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, path, CP_LOAD_WEIGHTS));
    snprintf(path, sizeof path, "tests/fixtures/%s", case_dir);
    if (m) CHECK_OK(cp_adapter_load(m, path, "default", 1, 1));
    cp_param **params = NULL;
    int n = 0;
    cp_safetensors st;
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    CHECK_OK(cp_st_open(&st, path));
    if (!m || cp_peft_trainable_params(m, &params, &n) != CP_OK) { cp_model_free(m); cJSON_Delete(exp); return 0; }
    CHECK_OK(cp_model_use_bf16(m, params, n, &r->narrowed));
    for (int i = 0; i < n; i++) r->f32_lora += params[i]->data != NULL && !params[i]->round_bf16;

    const cp_st_tensor *ids = cp_st_find(&st, "input_ids");
    cp_batch b = {.B = ids->shape[0], .T = ids->shape[1], .input_ids = ids->data,
                  .attention_mask = cp_st_find(&st, "attention_mask")->data, .labels = cp_st_find(&st, "labels")->data};
    double loss_sum;
    int64_t n_targets;
    CHECK_OK(cp_model_forward_backward(m, &b, (double)cp_batch_targets(&b), 0, &loss_sum, &n_targets));
    const double loss = loss_sum / (double)n_targets;
    r->loss = fabs(loss - *(const float *)cp_st_find(&st, "loss_emulated")->data);
    r->a_loss = fabs(loss - *(const float *)cp_st_find(&st, "loss_autocast")->data);
    for (int i = 0; i < st.n_tensors; i++) {
        const char *key = st.tensors[i].name;
        const int emu = !strncmp(key, "grad_emulated.", 14), ac = !strncmp(key, "grad_autocast.", 14);
        if (!emu && !ac) continue;
        cp_param *p = cp_adapter_find_param(m, "default", key + 14);
        CHECK(p && p->grad && p->numel == st.tensors[i].numel, "%s: %s has no trained parameter", name, key);
        if (!p || !p->grad) continue;
        const double g = frob_rel(p->grad, st.tensors[i].data, p->numel);
        if (emu) r->grad = fmax(r->grad, g), r->n_grads++;
        else r->a_grad = fmax(r->a_grad, g);
    }
    const int64_t V = cp_model_vocab_size(m), N = b.B * b.T;
    float *logits = malloc((size_t)(N * V) * sizeof *logits);
    cp_outputs out = {.logits = logits};
    CHECK_OK(cp_model_forward(m, &b, &out));
    const float *le = cp_st_find(&st, "logits_emulated")->data, *la = cp_st_find(&st, "logits_autocast")->data;
    for (int64_t row = 0; row < N; row++) {
        if (!b.attention_mask[row]) continue;
        r->logits = fmax(r->logits, test_max_abs_diff(logits + row * V, le + row * V, (size_t)V));
        r->a_logits = fmax(r->a_logits, test_max_abs_diff(logits + row * V, la + row * V, (size_t)V));
    }
    CHECK(r->n_grads == n, "%s: %d gradients in the fixture, %d trainable tensors", name, r->n_grads, n);
    free(logits);
    cp_free(params);
    cp_st_close(&st);
    cp_model_free(m);
    cJSON_Delete(exp);
    return 1;
}

static void check_tight(const char *name, const char *how, const case_result *r) {
    CHECK(r->logits <= r->tol_logits, "%s %s: logits differ from the emulation by %.3e (tolerance %.2e)", name, how, r->logits,
          r->tol_logits);
    CHECK(r->loss <= r->tol_loss, "%s %s: loss differs from the emulation by %.3e (tolerance %.2e)", name, how, r->loss,
          r->tol_loss);
    CHECK(r->grad <= r->tol_grad, "%s %s: gradients differ from the emulation by %.3e (tolerance %.2e)", name, how, r->grad,
          r->tol_grad);
}

TEST(fallback_portable_variant_notice_and_values) {
    /* runs first: the child must choose its kernel variant (CPEFT_ISA=base) before this process does */
    for (int c = 0; c < N_CASES; c++) {
        int fd[2];
        CHECK(pipe(fd) == 0, "pipe");
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            test_checks_failed_in_current = 0;
            setenv("CPEFT_ISA", "base", 1);
            dup2(fd[1], 2); /* the notice */
            close(fd[0]);
            case_result r;
            if (!run_case(cases[c], &r)) _exit(3);
            check_tight(cases[c], "(CPEFT_ISA=base)", &r);
            printf("  %-20s CPEFT_ISA=base (emulated): vs emulation logits %.2e, loss %.2e, grads %.2e\n", cases[c], r.logits,
                   r.loss, r.grad);
            fflush(stdout);
            _exit(test_checks_failed_in_current ? 1 : 0);
        }
        close(fd[1]);
        char buf[4096] = {0};
        size_t got = 0;
        ssize_t k;
        while (got < sizeof buf - 1 && (k = read(fd[0], buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)k;
        close(fd[0]);
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "%s: the CPEFT_ISA=base run failed (status %d): %s", cases[c], status, buf);
        CHECK(strstr(buf, "--bf16: no AVX-512 BF16") != NULL, "%s: no fallback notice on stderr: \"%s\"", cases[c], buf);
    }
}

TEST(bf16_matches_emulation_and_autocast) {
    printf("  products: %s\n", cp_gemm_bf16_native() ? "AVX-512 BF16 (vdpbf16ps)" : "emulated (no AVX-512 BF16 here)");
    for (int c = 0; c < N_CASES; c++) {
        case_result r;
        if (!run_case(cases[c], &r)) { CHECK(0, "%s: setup", cases[c]); continue; }
        check_tight(cases[c], "", &r);
        CHECK(r.a_logits <= r.bound_logits, "%s: logits differ from autocast by %.3e (bound %.3e)", cases[c], r.a_logits,
              r.bound_logits);
        CHECK(r.a_loss <= r.bound_loss, "%s: loss differs from autocast by %.3e (bound %.3e)", cases[c], r.a_loss, r.bound_loss);
        CHECK(r.a_grad <= r.bound_grad, "%s: gradients differ from autocast by %.3e (bound %.3e)", cases[c], r.a_grad,
              r.bound_grad);
        CHECK(r.narrowed > 0 && r.f32_lora == r.n_grads, "%s: %lld bytes narrowed, %d of %d LoRA tensors f32", cases[c],
              (long long)r.narrowed, r.f32_lora, r.n_grads);
        printf("  %-20s vs emulation: logits %.2e (tol %.1e), loss %.2e (%.1e), grads %.2e (%.1e; %d tensors) | vs autocast: logits %.2e (bound "
               "%.2e), loss %.2e (%.2e), grads %.2e (%.2e) | %lld bytes freed\n",
               cases[c], r.logits, r.tol_logits, r.loss, r.tol_loss, r.grad, r.tol_grad, r.n_grads, r.a_logits, r.bound_logits, r.a_loss, r.bound_loss, r.a_grad,
               r.bound_grad, (long long)r.narrowed);
    }
}

int main(void) {
    RUN(fallback_portable_variant_notice_and_values);
    RUN(bf16_matches_emulation_and_autocast);
    return test_summary();
}
