/*
 * test_trainer_state.c — the Trainer's records of a run (src/train/train_log.c, train_report.c):
 *   - _determine_best_metric's rule (greater / less, "eval_" prefixed, a missing metric named)
 *   - rotate_checkpoints' rule: the oldest deleted, never the newest nor the best; a kill in the
 *     middle of a deletion loses no checkpoint that is still listed (the cleanup removes the rest)
 *   - a `cpeft train` run's trainer_state.json against the one transformers' Trainer wrote for the
 *     same settings (tests/fixtures/trainer_state/hf, make_trainer_state_fixtures.py): the same keys
 *     at every level, the same kinds of log_history entries with the same keys, the same types, and
 *     the deterministic values (steps, schedule); load_best_model_at_end's final adapter (with
 *     --greater-is-better on the eval loss, which falls, the best is the first evaluation: a real
 *     reload, not the last step); a resumed
 *     run's state equal to the uninterrupted run's; the Trainer's refusals
 */
#include "test.h"
#include "../run_cmd.h"
#include "train/train_log.h"
#include "core/alloc.h"
#include "io/fsutil.h"
#include "io/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64];

static const char *bin(void) {
    const char *b = getenv("CPEFT_BIN");
    return b ? b : "build/cpeft";
}

static const char *at(const char *name) {
    static char buf[4][512];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, 512, "%s/%s", dir, name);
    return p;
}

TEST(best_metric_rule) {
    cp_train_log l;
    CHECK_OK(cp_train_log_init(&l));
    const double losses[] = {3.0, 2.5, 2.7, 2.5, 2.1};
    int best;
    for (int i = 0; i < 5; i++) {
        cJSON *e = cp_train_log_entry(&l, 2 * (i + 1), 0.1 * i);
        cp_train_log_set(e, "eval_loss", losses[i]);
        cp_train_log_set(e, "eval_accuracy", 0.5 + 0.1 * (i % 3));
        CHECK_OK(cp_train_log_update_best(&l, e, "loss", 0, 2 * (i + 1), &best));
        CHECK(best == (i == 0 || i == 1 || i == 4), "entry %d: best %d (np.less: a tie is not better)", i, best);
    }
    CHECK(l.best_global_step == 10 && l.best_metric == 2.1, "best step %lld metric %g", (long long)l.best_global_step, l.best_metric);
    cp_train_log g;
    CHECK_OK(cp_train_log_init(&g));
    const cJSON *e;
    int64_t step = 0;
    cJSON_ArrayForEach(e, l.history) {
        step += 2;
        CHECK_OK(cp_train_log_update_best(&g, e, "eval_accuracy", 1, step, &best));
    }
    CHECK(g.best_global_step == 6 && fabs(g.best_metric - 0.7) < 1e-12, "accuracy: best step %lld", (long long)g.best_global_step);
    CHECK_ERR(cp_train_log_update_best(&g, l.history->child, "f1", 1, 2, &best), "'eval_f1', which is not among the evaluation metrics");
    CHECK_ERR(cp_train_log_update_best(&g, l.history->child, "f1", 1, 2, &best), "'eval_loss'");
    cp_train_log_free(&l);
    cp_train_log_free(&g);
}

static void make_checkpoints(const char *base, const int *steps, int n) {
    char out[4096];
    run_cmdf(out, sizeof out, "rm -rf %s && mkdir -p %s", base, base);
    for (int i = 0; i < n; i++) run_cmdf(out, sizeof out, "mkdir -p %s/checkpoint-%d && echo %d > %s/checkpoint-%d/f", base, steps[i], steps[i], base, steps[i]);
}

static void left(const char *base, char *buf, size_t n) {
    run_cmdf(buf, n, "cd %s && ls -d checkpoint-* 2>/dev/null | grep -E '^checkpoint-[0-9]+$' | sort -t- -k2 -n | tr '\\n' ' '", base);
}

static int kill_hook(const char *step) {
    if (!strcmp(step, "rotate:moved")) _exit(9);
    return 0;
}

TEST(rotation_rule) {
    const int steps[] = {10, 2, 4, 6, 8};
    char got[512];
    int n;
    const char *base = at("rot");
    make_checkpoints(base, steps, 5);
    CHECK_OK(cp_checkpoints_rotate(base, 2, "checkpoint-4", &n));
    left(base, got, sizeof got);
    CHECK(n == 3 && !strcmp(got, "checkpoint-4 checkpoint-10 "), "limit 2, best 4: left %s (%d removed)", got, n);
    make_checkpoints(base, steps, 5);
    CHECK_OK(cp_checkpoints_rotate(base, 1, "checkpoint-4", &n));
    left(base, got, sizeof got);
    CHECK(!strcmp(got, "checkpoint-4 checkpoint-10 "), "limit 1 keeps the best and the newest: %s", got);
    make_checkpoints(base, steps, 5);
    CHECK_OK(cp_checkpoints_rotate(base, 3, NULL, &n));
    left(base, got, sizeof got);
    CHECK(!strcmp(got, "checkpoint-6 checkpoint-8 checkpoint-10 "), "limit 3: %s", got);
    make_checkpoints(base, steps, 5);
    CHECK_OK(cp_checkpoints_rotate(base, 0, NULL, &n));
    left(base, got, sizeof got);
    CHECK(n == 0 && !strcmp(got, "checkpoint-2 checkpoint-4 checkpoint-6 checkpoint-8 checkpoint-10 "), "limit 0 keeps all: %s", got);
    /* killed after moving checkpoint-2 aside: every name still listed is a complete checkpoint, and the
     * next run's cleanup removes what was moved aside */
    make_checkpoints(base, steps, 5);
    pid_t pid = fork();
    if (pid == 0) {
        cp_fs_set_hook(kill_hook);
        cp_checkpoints_rotate(base, 2, NULL, &n);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 9, "the child was killed in the rotation");
    left(base, got, sizeof got);
    CHECK(!strcmp(got, "checkpoint-4 checkpoint-6 checkpoint-8 checkpoint-10 "), "after the kill: %s", got);
    for (int s = 4; s <= 10; s += 2) {
        char f[600], *text = NULL;
        size_t len;
        snprintf(f, sizeof f, "%s/checkpoint-%d/f", base, s);
        CHECK(cp_read_file(f, &text, &len) == CP_OK && atoi(text) == s, "checkpoint-%d intact", s);
        cp_free(text);
    }
    int cleaned = 0;
    CHECK_OK(cp_dir_clean_stale(base, &cleaned));
    run_cmdf(got, sizeof got, "ls -a %s | grep -c partial", base);
    CHECK(cleaned == 1 && atoi(got) == 0, "the cleanup removed the half-deleted checkpoint (%d cleaned)", cleaned);
}

/* ---- against the Trainer ----------------------------------------------------------------------------- */

static const char *json_kind(const cJSON *v) {
    return cJSON_IsNull(v) ? "null" : cJSON_IsBool(v) ? "bool" : cJSON_IsNumber(v) ? "number" : cJSON_IsString(v) ? "string"
         : cJSON_IsArray(v) ? "list" : "object";
}

/* Same keys at every level of two objects (log_history compared separately); types equal where both
 * are not null. */
static void same_shape(const cJSON *a, const cJSON *b, const char *where) {
    const cJSON *it;
    cJSON_ArrayForEach(it, a) {
        const cJSON *o = cJSON_GetObjectItem(b, it->string);
        CHECK(o != NULL, "%s: cpeft has \"%s\", the Trainer's has not", where, it->string);
        if (!o || !strcmp(it->string, "log_history")) continue;
        if (!cJSON_IsNull(it) && !cJSON_IsNull(o))
            CHECK(!strcmp(json_kind(it), json_kind(o)), "%s.%s: %s, the Trainer's %s", where, it->string, json_kind(it), json_kind(o));
        if (cJSON_IsObject(it) && cJSON_IsObject(o)) {
            char w[256];
            snprintf(w, sizeof w, "%s.%s", where, it->string);
            same_shape(it, o, w);
        }
    }
    cJSON_ArrayForEach(it, b) CHECK(cJSON_GetObjectItem(a, it->string) != NULL, "%s: the Trainer's has \"%s\", cpeft's has not", where, it->string);
}

/* "eval", "train" or "summary", as make_trainer_state_fixtures.py sorts entries. */
static const char *entry_kind(const cJSON *e) {
    return cJSON_GetObjectItem(e, "eval_loss") ? "eval" : cJSON_GetObjectItem(e, "loss") ? "train" : "summary";
}

static void same_entry_keys(const cJSON *history, const cJSON *kinds, int *n_seen) {
    const cJSON *e, *k;
    cJSON_ArrayForEach(e, history) {
        const cJSON *want = cJSON_GetObjectItem(kinds, entry_kind(e));
        int n = 0;
        cJSON_ArrayForEach(k, e) n++;
        CHECK(want && n == cJSON_GetArraySize(want), "%s entry: %d keys, the Trainer's %d", entry_kind(e), n, want ? cJSON_GetArraySize(want) : -1);
        cJSON_ArrayForEach(k, want) CHECK(cJSON_GetObjectItem(e, k->valuestring) != NULL, "%s entry lacks \"%s\"", entry_kind(e), k->valuestring);
        n_seen[!strcmp(entry_kind(e), "eval") ? 0 : !strcmp(entry_kind(e), "train") ? 1 : 2]++;
    }
}

#define RUN_ARGS "--data ../shared/data/alpaca-subset/alpaca_tiny.json --max-steps 8 --per-device-train-batch-size 2 --learning-rate 1e-2 " \
                 "--logging-steps 2 --eval-steps 2 --save-steps 2 --max-seq-length 64 --seed 3 --target-modules c_attn --progress lines " \
                 "--validation-split 0.1 --save-total-limit 2"

static cJSON *read_json(const char *path) {
    cJSON *j = NULL;
    CHECK(cp_json_read_file(path, &j) == CP_OK, "%s: %s", path, cp_last_error());
    return j;
}

TEST(trainer_state_like_the_trainer) {
    static char out[65536];
    CHECK(run_cmdf(out, sizeof out, "mkdir -p %s/tm && cp tests/fixtures/eval/gpt2_vocab/config.json tests/fixtures/eval/gpt2_vocab/model.safetensors "
                   "../shared/data/gpt2-tokenizer/tokenizer.json %s/tm/ && %s train --model %s/tm " RUN_ARGS " --load-best-model-at-end --greater-is-better "
                   "--output-dir %s/o1", dir, dir, bin(), dir, dir) == 0, "%s", out);
    cJSON *hf = read_json("tests/fixtures/trainer_state/hf/trainer_state.json"), *hf_ck = read_json("tests/fixtures/trainer_state/hf/checkpoint_state.json"),
          *run = read_json("tests/fixtures/trainer_state/hf/run.json");
    cJSON *mine = read_json(at("o1/trainer_state.json")), *mine_ck = read_json(at("o1/checkpoint-6/trainer_state.json"));
    if (!hf || !hf_ck || !run || !mine || !mine_ck) goto done;
    same_shape(mine, hf, "trainer_state.json");
    same_shape(mine_ck, hf_ck, "checkpoint-6/trainer_state.json");
    int seen[3] = {0}, seen_ck[3] = {0};
    const cJSON *kinds = cJSON_GetObjectItem(run, "log_history_keys");
    same_entry_keys(cJSON_GetObjectItem(mine, "log_history"), kinds, seen);
    same_entry_keys(cJSON_GetObjectItem(mine_ck, "log_history"), kinds, seen_ck);
    printf("  log_history: %d eval, %d train, %d summary entries (checkpoint-6: %d, %d, %d)\n", seen[0], seen[1], seen[2], seen_ck[0], seen_ck[1],
           seen_ck[2]);
    CHECK(seen[0] == 5 && seen[1] == 4 && seen[2] == 1, "entries: eval before training + 4, 4 logs, the summary");
    CHECK(seen_ck[2] == 0 && seen_ck[1] == 3, "a checkpoint's history has no summary");
    /* deterministic values */
    const char *ints[] = {"global_step", "max_steps", "logging_steps", "eval_steps", "save_steps", "train_batch_size", "num_train_epochs"};
    const double want[] = {8, 8, 2, 2, 2, 2, 1};
    for (int i = 0; i < 7; i++) {
        const cJSON *v = cJSON_GetObjectItem(mine, ints[i]);
        CHECK(v && v->valuedouble == want[i], "%s: %g, expected %g", ints[i], v ? v->valuedouble : NAN, want[i]);
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(mine, "log_history")) { /* the rate of the logged step, as the Trainer logs it */
        const cJSON *lr = cJSON_GetObjectItem(e, "learning_rate"), *s = cJSON_GetObjectItem(e, "step");
        if (lr) CHECK(fabs(lr->valuedouble - 1e-2 * (1 - (s->valuedouble - 1) / 8)) < 1e-17, "step %g: learning_rate %.17g", s->valuedouble, lr->valuedouble);
    }
    /* the best: recorded, its checkpoint kept by the rotation beside the newest, the final adapter its copy */
    const cJSON *bs = cJSON_GetObjectItem(mine, "best_global_step"), *bc = cJSON_GetObjectItem(mine, "best_model_checkpoint");
    CHECK(cJSON_IsNumber(bs) && cJSON_IsString(bc), "best_global_step and best_model_checkpoint set");
    CHECK(cJSON_IsNumber(bs) && bs->valuedouble < 8, "the best (the highest eval loss) should be an early step, got %g", bs ? bs->valuedouble : NAN);
    char got[512], want_left[128];
    left(at("o1"), got, sizeof got);
    if (cJSON_IsNumber(bs) && bs->valuedouble < 6) snprintf(want_left, sizeof want_left, "checkpoint-%d checkpoint-6 ", (int)bs->valuedouble);
    else snprintf(want_left, sizeof want_left, "checkpoint-4 checkpoint-6 ");
    printf("  best step %g (%s); checkpoints left: %s\n", bs ? bs->valuedouble : NAN, bc && bc->valuestring ? bc->valuestring : "-", got);
    CHECK(!strcmp(got, want_left), "checkpoints left %s, expected %s", got, want_left);
    if (cJSON_IsNumber(bs) && bs->valuedouble < 8 && cJSON_IsString(bc)) {
        CHECK(run_cmdf(out, sizeof out, "cmp %s/adapter_model.safetensors %s/o1/adapter_model.safetensors", bc->valuestring, dir) == 0,
              "the final adapter is not the best checkpoint's: %s", out);
    } else if (cJSON_IsString(bc)) {
        CHECK(!strcmp(bc->valuestring, at("o1")), "the best is the last step: best_model_checkpoint names the output dir, got %s", bc->valuestring);
    }
    /* resumed from checkpoint-6: the same history and best (runtimes aside) and the same final adapter */
    CHECK(run_cmdf(out, sizeof out, "cp -r %s/o1 %s/o2 && rm -f %s/o2/.cpeft-lock && %s train --model %s/tm " RUN_ARGS
                   " --load-best-model-at-end --greater-is-better --output-dir %s/o2 --resume-from-checkpoint %s/o2/checkpoint-6 && "
                   "cmp %s/o1/adapter_model.safetensors %s/o2/adapter_model.safetensors", dir, dir, dir, bin(), dir, dir, dir, dir, dir) == 0,
          "resume: %s", out);
    cJSON *resumed = read_json(at("o2/trainer_state.json"));
    if (resumed) {
        const cJSON *a = cJSON_GetObjectItem(mine, "log_history")->child, *b = cJSON_GetObjectItem(resumed, "log_history")->child;
        int n = 0;
        for (; a && b; a = a->next, b = b->next, n++) {
            const char *keys[] = {"loss", "eval_loss", "grad_norm", "learning_rate", "step", "epoch"};
            for (int k = 0; k < 6; k++) {
                const cJSON *x = cJSON_GetObjectItem(a, keys[k]), *y = cJSON_GetObjectItem(b, keys[k]);
                CHECK(!x == !y && (!x || x->valuedouble == y->valuedouble), "entry %d: %s differs after resuming", n, keys[k]);
            }
        }
        CHECK(!a && !b, "the resumed history has another length");
        const cJSON *rb = cJSON_GetObjectItem(resumed, "best_global_step");
        CHECK(rb && bs && rb->valuedouble == bs->valuedouble, "best_global_step after resuming");
    }
    cJSON_Delete(resumed);
done:
    cJSON_Delete(hf);
    cJSON_Delete(hf_ck);
    cJSON_Delete(run);
    cJSON_Delete(mine);
    cJSON_Delete(mine_ck);
}

TEST(the_trainer_refusals) {
    static char out[16384];
    struct { const char *flags, *want; } cases[] = {
        {"--load-best-model-at-end --eval-steps 2 --save-steps 3", "requires the saving steps to be a round multiple of the evaluation steps, but found 3, which is not a round multiple of 2."},
        {"--load-best-model-at-end --eval-steps 0 --save-steps 2", "requires the save and eval strategy to match"},
        {"--load-best-model-at-end --eval-steps 2 --save-steps 2 --validation-split 0", "needs evaluation data"},
        {"--metric-for-best-model accuracy --eval-steps 2 --validation-split 0.1", "'eval_accuracy', which is not among the evaluation metrics"},
        {"--report-to wandb", "--report-to: \"wandb\" is not an integration cpeft has"},
        {"--save-total-limit -1", "--save-total-limit"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int rc = run_cmdf(out, sizeof out, "rm -rf %s/bad && %s train --model %s/tm --data ../shared/data/alpaca-subset/alpaca_tiny.json --max-steps 2 "
                          "--per-device-train-batch-size 2 --max-seq-length 64 --target-modules c_attn --progress lines %s --output-dir %s/bad",
                          dir, bin(), dir, cases[i].flags, dir);
        CHECK(rc != 0 && strstr(out, cases[i].want), "%s: exit %d, expected \"%s\":\n%s", cases[i].flags, rc, cases[i].want, out);
    }
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/cpeft-trainer-state-XXXXXX");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    RUN(best_metric_rule);
    RUN(rotation_rule);
    RUN(trainer_state_like_the_trainer);
    RUN(the_trainer_refusals);
    char out[256];
    run_cmdf(out, sizeof out, "rm -rf %s", dir);
    return test_summary();
}
