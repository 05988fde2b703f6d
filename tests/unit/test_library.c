/*
 * test_library.c — the training API of include/cpeft.h as a program uses it, and the threading
 * contract the header states:
 *
 *   - a run reports every step, log, evaluation and save through its callbacks, with the numbers
 *     the history, the info and metrics.jsonl hold, and prints nothing and draws nothing itself;
 *   - cp_trainer_request_stop (from a callback, from a real signal handler, or before the run) ends
 *     the run after the step under way with a checkpoint, and running on — in the same process, or
 *     resumed from that checkpoint in a new trainer — ends on the bytes of a run never stopped;
 *   - driving the loop with cp_trainer_step, with inference on the model between steps, gives the
 *     adapter cp_trainer_run gives;
 *   - a callback's nonzero return ends the run with an error naming it;
 *   - two models trained and run in two threads at once (sharing one tokenizer) give exactly the
 *     numbers the same jobs give one after the other.
 *
 * The model is the tiny GPT-2 of the fixtures (tests/fixtures/eval/gpt2_vocab) with GPT-2's tokenizer,
 * trained on a Shakespeare excerpt.
 */
#include "test.h"
#include "cpeft.h"
#include "core/alloc.h"
#include "io/fsutil.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DATA "tests/fixtures/eval/shakespeare.txt"

static char root[64] = "/tmp/cpeft-library-XXXXXX";

static const char *path(const char *name) {
    static char ring[8][1024];
    static int next;
    char *p = ring[next++ % 8];
    snprintf(p, sizeof ring[0], "%s/%s", root, name);
    return p;
}

static int sh(const char *fmt, const char *arg) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, fmt, arg, arg, arg);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int exists(const char *p) {
    struct stat s;
    return stat(p, &s) == 0;
}

/* Byte-equal files. */
static int same_file(const char *a, const char *b) {
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    int same = cp_read_file(a, &x, &nx) == CP_OK && cp_read_file(b, &y, &ny) == CP_OK && nx == ny && !memcmp(x, y, nx);
    cp_free(x);
    cp_free(y);
    return same;
}

static void base_options(cp_train_options *o) {
    cp_train_options_init(o);
    o->data_path = DATA;
    o->max_seq_length = 32;
    o->per_device_train_batch_size = 2;
    o->max_steps = 6;
    o->learning_rate = 1e-2;
    o->logging_steps = 2;
    o->save_steps = 0;
    o->seed = 7;
    o->lora.dropout = 0.1; /* dropout on: resuming must restore its stream too */
    o->lora.target_modules = "c_attn";
}

/* A model and tokenizer from the fixture directory. */
static int load(cp_model **m, cp_tokenizer **tok) {
    *m = NULL;
    *tok = NULL;
    return cp_model_load(m, path("tm"), CP_LOAD_WEIGHTS) == CP_OK && cp_tokenizer_load_dir(tok, path("tm")) == CP_OK;
}

static cp_model *load_model(void) {
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, path("tm"), CP_LOAD_WEIGHTS));
    return m;
}

/* ---- what the callbacks see --------------------------------------------------------------------- */

typedef struct {
    cp_trainer *t;
    int n_step, n_log, n_eval, n_save;
    int64_t step_at[64], log_at[64], save_at[64];
    double step_loss[64], log_loss[64], eval_loss[64];
    cp_eval_when eval_when[64];
    int64_t eval_at[64];
    cp_save_kind save_kind[64];
    char save_dir[64][256];
    int64_t stop_at;          /* request a stop in on_step at this step (0: never) */
    int raise_at;             /* ... by raising SIGUSR1, whose handler requests it */
    int fail_log_at;          /* on_log returns 7 at this step */
    int bad_order;            /* a callback came out of order */
} seen;

static int rec_step(void *u, const cp_train_progress *p) {
    seen *s = u;
    s->bad_order |= p->step != (s->n_step ? s->step_at[s->n_step - 1] + 1 : p->step);
    s->step_at[s->n_step] = p->step;
    s->step_loss[s->n_step++] = p->loss;
    if (s->stop_at && p->step == s->stop_at) cp_trainer_request_stop(s->t);
    if (s->raise_at && p->step == s->raise_at) raise(SIGUSR1);
    return 0;
}

static int rec_log(void *u, const cp_train_progress *p) {
    seen *s = u;
    s->log_at[s->n_log] = p->step;
    s->log_loss[s->n_log++] = p->loss;
    return s->fail_log_at && p->step == s->fail_log_at ? 7 : 0;
}

static int rec_eval(void *u, const cp_train_eval *e) {
    seen *s = u;
    s->eval_at[s->n_eval] = e->step;
    s->eval_when[s->n_eval] = e->when;
    s->eval_loss[s->n_eval++] = e->loss;
    return 0;
}

static int rec_save(void *u, const cp_train_save *v) {
    seen *s = u;
    s->save_at[s->n_save] = v->step;
    s->save_kind[s->n_save] = v->kind;
    snprintf(s->save_dir[s->n_save++], sizeof s->save_dir[0], "%s", v->dir);
    CHECK(exists(v->dir), "on_save: %s is not there", v->dir);
    return 0;
}

static void watch(cp_train_options *o, seen *s) {
    memset(s, 0, sizeof *s);
    o->callbacks = (cp_train_callbacks){.on_step = rec_step, .on_log = rec_log, .on_evaluate = rec_eval, .on_save = rec_save, .user = s};
}

/* ---- tests -------------------------------------------------------------------------------------- */

TEST(trainer_reports_through_callbacks_and_prints_nothing) {
    cp_model *m;
    cp_tokenizer *tok;
    CHECK(load(&m, &tok), "load: %s", cp_last_error());
    cp_train_options o;
    base_options(&o);
    o.validation_split = 0.2;
    o.eval_steps = 3;
    o.save_steps = 2;
    o.output_dir = path("run");
    seen s;
    watch(&o, &s);
    /* stdout goes to a file for the whole setup and run: the library must write nothing there */
    fflush(stdout);
    int saved = dup(1), fd = open(path("stdout.txt"), O_CREAT | O_TRUNC | O_WRONLY, 0644);
    dup2(fd, 1);
    close(fd);
    cp_train_memory_plan plan;
    cp_status created = cp_trainer_create(&s.t, m, tok, &o), planned = created == CP_OK ? cp_trainer_memory_plan(s.t, &plan) : CP_ERR,
              ran = planned == CP_OK ? cp_trainer_run(s.t) : CP_ERR;
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    CHECK(created == CP_OK && planned == CP_OK && ran == CP_OK, "create %d, plan %d, run %d: %s", created, planned, ran, cp_last_error());
    struct stat st;
    CHECK(stat(path("stdout.txt"), &st) == 0 && st.st_size == 0, "the library wrote %lld bytes to stdout", (long long)st.st_size);
    CHECK(!exists(path("run/loss.png")), "the library drew loss.png (drawing is the program's)");
    if (ran != CP_OK) goto done;
    printf("  plan: %.0f bytes in all (activations %.0f) for batch %lld x %lld\n", plan.total_bytes, plan.activation_bytes,
           (long long)plan.batch_size, (long long)plan.seq_len);
    CHECK(plan.activation_bytes > 0 && plan.trainable_values > 0 && plan.total_bytes >= plan.frozen_bytes + plan.activation_bytes,
          "memory plan");
    /* steps 1..6; logs at 2, 4, 6, each the mean of its steps' losses */
    CHECK(s.n_step == 6 && !s.bad_order && s.step_at[0] == 1, "%d on_step calls", s.n_step);
    CHECK(s.n_log == 3 && s.log_at[0] == 2 && s.log_at[1] == 4 && s.log_at[2] == 6, "%d on_log calls", s.n_log);
    for (int i = 0; i < s.n_log && i < 3; i++) {
        double mean = (s.step_loss[2 * i] + s.step_loss[2 * i + 1]) / 2;
        CHECK(fabs(s.log_loss[i] - mean) < 1e-12, "log %d: loss %.9f, mean of its steps %.9f", i, s.log_loss[i], mean);
    }
    /* evaluations before, at 3, at 6 */
    CHECK(s.n_eval == 3 && s.eval_when[0] == CP_EVAL_BEFORE_TRAINING && s.eval_at[0] == 0 && s.eval_when[1] == CP_EVAL_DURING &&
              s.eval_at[1] == 3 && s.eval_at[2] == 6,
          "%d evaluations", s.n_eval);
    /* checkpoints at 2 and 4 (not at the last step), then the final adapter */
    CHECK(s.n_save == 3 && s.save_kind[0] == CP_SAVE_CHECKPOINT && s.save_at[0] == 2 && s.save_at[1] == 4 &&
              s.save_kind[2] == CP_SAVE_FINAL && s.save_at[2] == 6 && strstr(s.save_dir[2], "/adapter-step-6"),
          "%d saves; the last %s", s.n_save, s.save_dir[2]);
    CHECK(exists(path("run/checkpoint-2/optimizer.safetensors")) && exists(path("run/checkpoint-4/trainer_state.json")) &&
              exists(path("run/adapter_model.safetensors")) && exists(path("run/metrics.jsonl")),
          "output files");
    /* history and info say the same */
    cp_train_history h;
    cp_trainer_history(s.t, &h);
    CHECK(h.n_train == 3 && h.n_eval == 3, "history: %lld train, %lld eval", (long long)h.n_train, (long long)h.n_eval);
    for (int i = 0; i < h.n_train && i < 3; i++) CHECK(h.train_step[i] == (double)s.log_at[i] && h.train_loss[i] == s.log_loss[i], "history %d", i);
    for (int i = 0; i < h.n_eval && i < 3; i++) CHECK(h.eval_loss[i] == s.eval_loss[i], "eval history %d", i);
    cp_trainer_info in;
    cp_trainer_get_info(s.t, &in);
    CHECK(in.step == 6 && in.total_steps == 6 && !in.stopped && in.last_checkpoint == 4 && in.eval_examples > 0 && in.max_seq_length == 32,
          "info: step %lld of %lld, checkpoint %lld", (long long)in.step, (long long)in.total_steps, (long long)in.last_checkpoint);
    /* the last evaluation is the model as it stands */
    double again;
    CHECK_OK(cp_trainer_evaluate(s.t, &again));
    CHECK(again == s.eval_loss[2], "evaluate %.9f after the run, %.9f at its end", again, s.eval_loss[2]);
    printf("  6 steps: loss %.4f -> %.4f, eval loss %.4f -> %.4f\n", s.step_loss[0], s.step_loss[5], s.eval_loss[0], s.eval_loss[2]);
    /* a finished run takes no more steps */
    CHECK_ERR(cp_trainer_step(s.t, NULL), "the run is complete (6 of 6 steps)");
    CHECK_ERR(cp_trainer_run(s.t), "the run is complete");
done:
    cp_trainer_free(s.t);
    cp_tokenizer_free(tok);
    cp_model_free(m);
}

static cp_trainer *signalled;
static void on_usr1(int sig) {
    (void)sig;
    cp_trainer_request_stop(signalled);
}

/* The uninterrupted run, then: stopped from on_step and run on in-process; stopped by a signal and
 * resumed from its checkpoint by a new trainer on a new model. All three final adapters are equal. */
TEST(stopping_then_going_on_ends_on_the_same_bytes) {
    cp_model *m;
    cp_tokenizer *tok;
    cp_train_options o;
    seen s;
    cp_trainer_info in;
    /* 1: never stopped */
    CHECK(load(&m, &tok), "load: %s", cp_last_error());
    base_options(&o);
    o.output_dir = path("whole");
    watch(&o, &s);
    CHECK_OK(cp_trainer_create(&s.t, m, tok, &o));
    if (s.t) CHECK_OK(cp_trainer_run(s.t));
    cp_trainer_free(s.t);
    cp_model_free(m);
    /* 2: a request from on_step at step 3: checkpoint-3, then the same trainer runs on */
    m = load_model();
    o.output_dir = path("stopped");
    watch(&o, &s);
    s.stop_at = 3;
    CHECK_OK(cp_trainer_create(&s.t, m, tok, &o));
    if (s.t) {
        CHECK_OK(cp_trainer_run(s.t));
        cp_trainer_get_info(s.t, &in);
        CHECK(in.stopped && in.step == 3 && in.last_checkpoint == 3 && s.n_save == 1 && s.save_at[0] == 3 &&
                  exists(path("stopped/checkpoint-3/optimizer.safetensors")) && !exists(path("stopped/adapter_model.safetensors")),
              "stopped at %lld (checkpoint %lld, %d saves)", (long long)in.step, (long long)in.last_checkpoint, s.n_save);
        s.stop_at = 0;
        CHECK_OK(cp_trainer_run(s.t));
        cp_trainer_get_info(s.t, &in);
        CHECK(!in.stopped && in.step == 6 && s.n_step == 6, "ran on to %lld (%d steps seen)", (long long)in.step, s.n_step);
    }
    cp_trainer_free(s.t);
    cp_model_free(m);
    CHECK(same_file(path("whole/adapter_model.safetensors"), path("stopped/adapter_model.safetensors")),
          "stopped and run on in-process: the adapter differs from the run never stopped");
    /* 3: SIGUSR1 at step 2, its handler requesting the stop; a new trainer resumes from checkpoint-2 */
    m = load_model();
    o.output_dir = path("signalled");
    watch(&o, &s);
    s.raise_at = 2;
    CHECK_OK(cp_trainer_create(&s.t, m, tok, &o));
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    signalled = s.t;
    sigaction(SIGUSR1, &sa, &old);
    if (s.t) CHECK_OK(cp_trainer_run(s.t));
    sigaction(SIGUSR1, &old, NULL);
    if (s.t) cp_trainer_get_info(s.t, &in);
    CHECK(s.t && in.stopped && in.step == 2 && exists(path("signalled/checkpoint-2/trainer_state.json")), "signal: stopped at %lld",
          (long long)in.step);
    cp_trainer_free(s.t);
    cp_model_free(m);
    m = load_model();
    o.output_dir = path("resumed");
    o.resume_from = path("signalled/checkpoint-2");
    watch(&o, &s);
    CHECK_OK(cp_trainer_create(&s.t, m, tok, &o));
    if (s.t) {
        cp_trainer_get_info(s.t, &in);
        CHECK(in.start_step == 2 && in.step == 2 && in.last_checkpoint == 2, "resumed at %lld", (long long)in.start_step);
        CHECK_OK(cp_trainer_run(s.t));
        CHECK(s.n_step == 4 && s.step_at[0] == 3, "%d steps after resuming, the first %lld", s.n_step, (long long)s.step_at[0]);
    }
    cp_trainer_free(s.t);
    cp_model_free(m);
    CHECK(same_file(path("whole/adapter_model.safetensors"), path("resumed/adapter_model.safetensors")),
          "resumed from checkpoint-2: the adapter differs from the run never stopped");
    /* 4: a request before the run: no step at all */
    m = load_model();
    o.output_dir = NULL;
    o.resume_from = NULL;
    watch(&o, &s);
    CHECK_OK(cp_trainer_create(&s.t, m, tok, &o));
    if (s.t) {
        cp_trainer_request_stop(s.t);
        CHECK_OK(cp_trainer_run(s.t));
        cp_trainer_get_info(s.t, &in);
        CHECK(in.stopped && in.step == 0 && s.n_step == 0, "stopped before the start: %lld steps", (long long)in.step);
    }
    cp_trainer_free(s.t);
    cp_tokenizer_free(tok);
    cp_model_free(m);
}

TEST(stepping_by_hand_gives_the_run_adapter) {
    cp_model *m[2];
    cp_tokenizer *tok[2];
    cp_train_options o;
    base_options(&o);
    for (int k = 0; k < 2; k++) {
        CHECK(load(&m[k], &tok[k]), "load: %s", cp_last_error());
        cp_trainer *t = NULL;
        CHECK_OK(cp_trainer_create(&t, m[k], tok[k], &o));
        if (!t) continue;
        if (k == 0) CHECK_OK(cp_trainer_run(t));
        else {
            cp_train_progress p;
            int n = 0;
            int64_t ids[8] = {464, 3290, 373, 257, 1110, 13, 383, 318};
            cp_batch b = {.B = 1, .T = 8, .input_ids = ids, .labels = ids};
            while (cp_trainer_step(t, &p) == CP_OK) {
                CHECK(p.step == ++n && p.total_steps == 6 && isfinite(p.loss), "step %d", n);
                cp_outputs out = {0}; /* inference between steps, as the header allows: training must not notice */
                CHECK(cp_model_forward(m[k], &b, &out) == CP_OK && isfinite(out.loss), "forward between steps: %s", cp_last_error());
            }
            CHECK(n == 6 && strstr(cp_last_error(), "the run is complete"), "%d steps, then: %s", n, cp_last_error());
        }
        cp_trainer_free(t);
        CHECK_OK(cp_model_save_adapter(m[k], "default", path(k ? "by-hand" : "by-run")));
        cp_tokenizer_free(tok[k]);
        cp_model_free(m[k]);
    }
    CHECK(same_file(path("by-run/adapter_model.safetensors"), path("by-hand/adapter_model.safetensors")),
          "cp_trainer_step x 6 and cp_trainer_run trained different adapters");
}

TEST(errors_are_reported_not_printed) {
    cp_model *m;
    cp_tokenizer *tok;
    CHECK(load(&m, &tok), "load: %s", cp_last_error());
    cp_train_options o;
    base_options(&o);
    seen s;
    watch(&o, &s);
    s.fail_log_at = 2;
    CHECK_OK(cp_trainer_create(&s.t, m, tok, &o));
    if (s.t) CHECK_ERR(cp_trainer_run(s.t), "stopped by the on_log callback (it returned 7) at step 2");
    cp_trainer_free(s.t);
    cp_trainer *t = NULL;
    o.learning_rate = -1;
    CHECK_ERR(cp_trainer_create(&t, m, tok, &o), "--learning-rate must be a positive number, got -1.0");
    CHECK(t == NULL, "a failed create returned a trainer");
    base_options(&o);
    o.data_path = NULL;
    CHECK_ERR(cp_train_options_check(&o), "no training data");
    /* the adapter already there is trained as it is: a frozen one is refused */
    FILE *f = fopen(path("frozen.json"), "w");
    if (f) {
        fputs("{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"target_modules\": [\"c_attn\"], \"inference_mode\": true}", f);
        fclose(f);
    }
    base_options(&o);
    o.adapter_name = "frozen";
    CHECK_OK(cp_model_add_adapter(m, "frozen", path("frozen.json"), 1));
    CHECK_ERR(cp_trainer_create(&t, m, tok, &o), "adapter \"frozen\" is frozen");
    cp_lr_scheduler sched;
    CHECK_ERR(cp_lr_scheduler_parse("triangle", &sched), "\"triangle\" is not one of linear, cosine, constant, constant_with_warmup");
    CHECK(cp_lr_scheduler_parse("cosine", &sched) == CP_OK && sched == CP_LR_COSINE && !strcmp(cp_lr_scheduler_name(sched), "cosine"),
          "cosine");
    cp_tokenizer_free(tok);
    cp_model_free(m);
}

/* ---- threads ------------------------------------------------------------------------------------ */

typedef struct {
    const cp_tokenizer *tok;  /* shared by both jobs */
    uint64_t seed;
    double loss;              /* a fixed batch's loss after training */
    double eval;              /* the trainer's last held-out loss */
    int32_t tokens[8];        /* a greedy continuation */
    int ok;
} job;

static int job_eval(void *u, const cp_train_eval *e) {
    ((job *)u)->eval = e->loss;
    return 0;
}

/* Load, attach LoRA, train 4 steps, evaluate a fixed batch, generate: all on this job's own model. */
static void *run_job(void *arg) {
    job *j = arg;
    cp_model *m = NULL;
    cp_trainer *t = NULL;
    cp_train_options o;
    base_options(&o);
    o.max_steps = 4;
    o.validation_split = 0.2;
    o.seed = (int64_t)j->seed;
    o.callbacks.on_evaluate = job_eval;
    o.callbacks.user = j;
    cp_lora_options lora;
    cp_lora_options_init(&lora);
    lora.r = 4;
    lora.target_modules = "c_attn,c_proj";
    int64_t ids[16];
    for (int i = 0; i < 16; i++) ids[i] = 100 + 37 * i;
    cp_batch b = {.B = 1, .T = 16, .input_ids = ids, .labels = ids};
    cp_outputs out = {0};
    int32_t prompt[4] = {464, 3290, 373, 257};
    const int32_t *prompts[1] = {prompt};
    const int64_t lens[1] = {4};
    cp_generate_options g;
    cp_generation gen = {0};
    j->ok = cp_model_load(&m, path("tm"), CP_LOAD_WEIGHTS) == CP_OK && cp_model_add_lora_adapter(m, "default", &lora, j->seed) == CP_OK &&
            cp_trainer_create(&t, m, j->tok, &o) == CP_OK && cp_trainer_run(t) == CP_OK && cp_model_forward(m, &b, &out) == CP_OK &&
            cp_generate_options_init(m, &g) == CP_OK;
    g.max_new_tokens = 8;
    j->ok = j->ok && cp_model_generate(m, prompts, lens, 1, &g, &gen) == CP_OK && gen.n_tokens[0] == 8;
    if (!j->ok) fprintf(stderr, "  job %llu: %s\n", (unsigned long long)j->seed, cp_last_error());
    j->loss = out.loss;
    if (j->ok) memcpy(j->tokens, gen.tokens[0], sizeof j->tokens);
    cp_generation_free(&gen);
    cp_trainer_free(t);
    cp_model_free(m);
    return NULL;
}

TEST(separate_models_run_in_threads_as_they_run_alone) {
    cp_tokenizer *tok = NULL;
    CHECK_OK(cp_tokenizer_load_dir(&tok, path("tm")));
    if (!tok) return;
    job alone[2] = {{.tok = tok, .seed = 11}, {.tok = tok, .seed = 12}}, together[2] = {{.tok = tok, .seed = 11}, {.tok = tok, .seed = 12}};
    for (int k = 0; k < 2; k++) run_job(&alone[k]);
    pthread_t th[2];
    for (int k = 0; k < 2; k++) CHECK(pthread_create(&th[k], NULL, run_job, &together[k]) == 0, "pthread_create");
    for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
    for (int k = 0; k < 2; k++) {
        CHECK(alone[k].ok && together[k].ok, "job %d failed (alone %d, in a thread %d)", k, alone[k].ok, together[k].ok);
        printf("  job %d: loss %.6f alone, %.6f in a thread (|diff| %.1e); eval %.6f / %.6f\n", k, alone[k].loss, together[k].loss,
               fabs(alone[k].loss - together[k].loss), alone[k].eval, together[k].eval);
        CHECK(alone[k].loss == together[k].loss && alone[k].eval == together[k].eval, "job %d: numbers differ in a thread", k);
        CHECK(!memcmp(alone[k].tokens, together[k].tokens, sizeof alone[k].tokens), "job %d: generation differs in a thread", k);
    }
    CHECK(alone[0].loss != alone[1].loss, "the two jobs (different seeds) should differ: the check would be blind");
    cp_tokenizer_free(tok);
}

int main(void) {
    CHECK(mkdtemp(root) != NULL, "mkdtemp");
    CHECK(sh("mkdir -p %s/tm && cp tests/fixtures/eval/gpt2_vocab/config.json tests/fixtures/eval/gpt2_vocab/model.safetensors "
             "tests/fixtures/eval/gpt2_vocab/generation_config.json ../shared/data/gpt2-tokenizer/tokenizer.json %s/tm/", root) == 0,
          "model directory");
    cp_set_quiet(1); /* process-wide: before any thread starts */
    RUN(trainer_reports_through_callbacks_and_prints_nothing);
    RUN(stopping_then_going_on_ends_on_the_same_bytes);
    RUN(stepping_by_hand_gives_the_run_adapter);
    RUN(errors_are_reported_not_printed);
    RUN(separate_models_run_in_threads_as_they_run_alone);
    sh("rm -rf %s", root);
    return test_summary();
}
