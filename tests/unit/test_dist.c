/*
 * test_dist.c — data-parallel training (src/train/dist.h, docs/distributed.md).
 *
 * Everywhere: each rank's share of an epoch against a line-by-line transcription of accelerate's
 * BatchSamplerShard._iter_with_no_split (even_batches, the Hugging Face Trainer's default under DDP),
 * uneven last batches included, and the configuration hash.
 *
 * With 2 ranks under mpirun (skipped, and counted so, when the build has no MPI or mpirun is absent):
 * 2 ranks × batch 2 give the loss curve and the adapter of 1 process × batch 4 (within float
 * summation order: the two shards' gradients are summed after their own products, so the values
 * differ in the last bits; tolerance 1e-5 relative on each logged loss, 1e-4 of the tensor's largest
 * value on the adapter), and so does SEQ_CLS with rank 0's metrics; a 2-rank run is reproducible bit
 * for bit; a rank that dies ends the job with
 * mpirun's message and the run resumes from the last checkpoint on the same bytes; a rank that hangs
 * makes the other stop after CPEFT_DIST_TIMEOUT with a message naming the operation; SIGTERM to one
 * rank stops every rank after the step with a checkpoint that resumes exactly; ranks started
 * with different arguments are refused at the start; an uneven last global batch is filled as
 * accelerate fills it; a rank that cannot read the data file, and an output directory that another
 * rank does not see, are refused by name.
 */
#include "test.h"
#include "run_cmd.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "train/dist.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* ---- the shard of each rank, against accelerate ------------------------------------------------------ */

/* accelerate's _iter_with_no_split for process r of N over BatchSampler(range(n), b, drop_last=False),
 * even_batches=True: rank r's batches, flattened into out (b values each); returns how many. */
static int accelerate_batches(int n, int N, int b, int r, int *out) {
    static int initial[1 << 14];
    int ni = 0, nb = (n + b - 1) / b, yielded = 0, have = 0, ty = 0, idx = 0, batch[256], blen = 0;
    for (idx = 0; idx < nb; idx++) {
        const int start = idx * b, len = n - start < b ? n - start : b;
        if (idx < N) for (int q = 0; q < len; q++) initial[ni++] = start + q;
        if (idx % N == r) { ty = start; have = 1; }
        if (idx % N == N - 1 && len == b) {
            for (int q = 0; q < b; q++) out[yielded * b + q] = ty + q;
            yielded++;
            have = 0;
        }
        blen = len;
        for (int q = 0; q < len; q++) batch[q] = start + q;
    }
    idx = nb - 1; /* Python's loop variable keeps its last value */
    if (have && n - ty >= b) { for (int q = 0; q < b; q++) out[yielded * b + q] = ty + q; yielded++; }
    while (ni < N * b) { memcpy(initial + ni, initial, (size_t)ni * sizeof *initial); ni *= 2; }
    if (blen == b) { blen = 0; idx++; }
    for (int cycle = 0; idx % N != 0 || blen > 0;) {
        const int end = cycle + b - blen;
        for (int c = cycle; c < end; c++) batch[blen++] = initial[c];
        if (idx % N == r) { memcpy(out + yielded * b, batch, (size_t)b * sizeof *batch); yielded++; }
        cycle = end;
        blen = 0;
        idx++;
    }
    return yielded;
}

TEST(shards_match_accelerate_even_batches) {
    static int want[1 << 14];
    int cases = 0, bad = 0;
    for (int N = 2; N <= 5; N++)
        for (int b = 1; b <= 5; b++)
            for (int n = 1; n <= 40; n++)
                for (int r = 0; r < N; r++) {
                    const int k = accelerate_batches(n, N, b, r, want);
                    cases++;
                    if (k != cp_dist_batches_per_rank(n, N, b)) { bad++; continue; }
                    for (int j = 0; j < k; j++)
                        for (int q = 0; q < b; q++)
                            if (cp_dist_stream_index((int64_t)(j * N + r) * b + q, n, N, b) != want[j * b + q]) bad++;
                }
    CHECK(bad == 0, "%d mismatches over %d (n, N, b, rank) cases", bad, cases);
    /* 7 examples, 2 ranks × batch 2: rank 1's second batch is example 6 and the epoch's first */
    CHECK(cp_dist_stream_index(6, 7, 2, 2) == 6 && cp_dist_stream_index(7, 7, 2, 2) == 0, "the uneven tail");
    printf("  %d cases of accelerate's even_batches sharding reproduced\n", cases);
}

TEST(configuration_hash) {
    CHECK(cp_dist_hash_str(CP_DIST_HASH0, NULL) != cp_dist_hash_str(CP_DIST_HASH0, ""), "NULL and \"\" differ");
    CHECK(cp_dist_hash_str(cp_dist_hash_str(CP_DIST_HASH0, "ab"), "c") != cp_dist_hash_str(cp_dist_hash_str(CP_DIST_HASH0, "a"), "bc"),
          "field boundaries count");
    double a = 1e-3, b = 2e-3;
    CHECK(cp_dist_hash(CP_DIST_HASH0, &a, sizeof a) != cp_dist_hash(CP_DIST_HASH0, &b, sizeof b), "values differ");
    CHECK(cp_dist_size() == 1 && cp_dist_rank() == 0, "not launched: one process");
}

/* ---- 2 ranks under mpirun ---------------------------------------------------------------------------- */

static const char *bin(void) {
    const char *b = getenv("CPEFT_BIN");
    return b ? b : "build/cpeft";
}

static char mpirun[512];

/* run_cmdf for a whole command line (a && b && c): stdout and stderr of every command in out. */
static int run_all(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run_all(char *out, size_t cap, const char *fmt, ...) {
    static char line[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    return run_cmdf(out, cap, "( %s )", line);
}

/* The repository root (tests run from it), for a rank that changes directory. */
static const char *cwd(void) {
    static char dir[4096];
    if (!dir[0] && !getcwd(dir, sizeof dir)) strcpy(dir, ".");
    return dir;
}

/* NULL when the 2-rank tests can run, else why not. */
static const char *mpi_missing(void) {
    char out[1024];
    if (!strcmp(cp_dist_backend(), "none")) return "cpeft was built without MPI (make MPI=0, or Open MPI not installed)";
    if (run_cmd(out, sizeof out, "command -v mpirun") != 0) return "mpirun is not on PATH (apt-get install openmpi-bin)";
    /* --oversubscribe: 2 ranks on however few cores; as root (CI), mpirun wants to be told */
    /* under ASan (make test-asan) LeakSanitizer reports what Open MPI keeps until exit: suppressed for
     * Open MPI's libraries only (tests/lsan-mpi.supp), never for cpeft, with whole stacks (slow
     * unwinding; components not unloaded) so that the suppression sees who allocated */
    const char *lsan = getenv("LSAN_OPTIONS"), *asan = getenv("ASAN_OPTIONS");
    snprintf(mpirun, sizeof mpirun, "OMP_NUM_THREADS=1 LSAN_OPTIONS='%s%ssuppressions=%s/tests/lsan-mpi.supp' "
             "ASAN_OPTIONS='%s%sfast_unwind_on_malloc=0' OMPI_MCA_mca_base_component_disable_dlclose=1 PMIX_MCA_mca_base_component_disable_dlclose=1 "
             "mpirun --oversubscribe --bind-to none %s", lsan ? lsan : "", lsan ? ":" : "", cwd(), asan ? asan : "", asan ? ":" : "",
             geteuid() == 0 ? "--allow-run-as-root" : "");
    return NULL;
}

/* The bf16 GPT-2-vocabulary model of test_cli.c and a copy of the Alpaca records. */
#define MODEL_SETUP "rm -rf $CPT/tm && mkdir -p $CPT/tm && cp tests/fixtures/eval/gpt2_vocab/config.json " \
    "tests/fixtures/eval/gpt2_vocab/model.safetensors ../shared/data/gpt2-tokenizer/tokenizer.json $CPT/tm/"
/* The same model with every dropout of its config at 0.2 (the fixture's are 0), for the equivalence with
 * dropout on. */
#define DROP_SETUP MODEL_SETUP " && rm -rf $CPT/tmd && cp -r $CPT/tm $CPT/tmd && sed -i -E " \
    "'s/\"(attn|embd|resid)_pdrop\": 0.0/\"\\1_pdrop\": 0.2/' $CPT/tmd/config.json && grep -c 'pdrop\": 0.2' $CPT/tmd/config.json"
#define ARGS "--model $CPT/tm " RUN_ARGS
#define RUN_ARGS "--data ../shared/data/alpaca-subset/alpaca_tiny.json --max-steps 6 --gradient-accumulation-steps 2 " \
    "--learning-rate 1e-2 --logging-steps 1 --save-steps 2 --max-seq-length 64 --seed 3 --target-modules c_attn --progress lines"

/* The largest |a - b| over the tensors of two adapter files, and the largest |a| (0 / -1 on error). */
static double adapter_diff(const char *pa, const char *pb, double *scale) {
    cp_safetensors a, b;
    double m = -1;
    *scale = 0;
    if (cp_st_open(&a, pa) != CP_OK) return -1;
    if (cp_st_open(&b, pb) != CP_OK) { cp_st_close(&a); return -1; }
    m = 0;
    for (int i = 0; i < a.n_tensors; i++) {
        const cp_st_tensor *x = &a.tensors[i], *y = cp_st_find(&b, x->name);
        if (!y || y->numel != x->numel || x->dtype != CP_F32) { m = -1; break; }
        m = fmax(m, test_max_abs_diff(x->data, y->data, (size_t)x->numel));
        for (int64_t k = 0; k < x->numel; k++) *scale = fmax(*scale, fabs(((const float *)x->data)[k]));
    }
    cp_st_close(&a);
    cp_st_close(&b);
    return m;
}

/* The "loss" of each line of a metrics.jsonl that has one, into l; returns how many. */
static int losses(const char *path, double *l, int cap) {
    FILE *f = fopen(path, "r");
    char line[1024];
    int n = 0;
    while (f && n < cap && fgets(line, sizeof line, f)) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *v = j ? cJSON_GetObjectItem(j, "loss") : NULL;
        if (v) l[n++] = v->valuedouble;
        cJSON_Delete(j);
    }
    if (f) fclose(f);
    return n;
}

TEST(two_ranks_equal_one_process_with_twice_the_batch) {
    const char *why = mpi_missing();
    if (why) SKIP("%s", why);
    static char out[65536];
    char tmp[2][1024];
    /* dropout on (LoRA's 0.1, the model's embd / attn / resid 0.2): every rank keys its masks by the rows
     * of the global batch, so the two ranks draw the masks of the one process */
    CHECK(run_all(out, sizeof out, DROP_SETUP " && rm -rf $CPT/one $CPT/two && OMP_NUM_THREADS=2 %s train --model $CPT/tmd " RUN_ARGS
              " --lora-dropout 0.1 --per-device-train-batch-size 4 --output-dir $CPT/one", bin()) == 0 &&
          strstr(out, "processes: 1 x 2 threads") && strstr(out, "3\n"), "%s", out);
    CHECK(run_all(out, sizeof out, "%s -np 2 %s train --model $CPT/tmd " RUN_ARGS " --lora-dropout 0.1 --per-device-train-batch-size 2 "
              "--output-dir $CPT/two", mpirun, bin()) == 0, "%s", out);
    CHECK(strstr(out, "processes: 2 ranks x 1 thread (Open MPI") && strstr(out, "global batch 2 x 2 x 2 accumulation = 8 sequences") &&
          strstr(out, "step 6/6 | loss") && strstr(out, "all-reduce: 6 steps"), "%s", out);
    double l1[16], l2[16], worst = 0, scale;
    snprintf(tmp[0], sizeof tmp[0], "%s/one/metrics.jsonl", getenv("CPT"));
    snprintf(tmp[1], sizeof tmp[1], "%s/two/metrics.jsonl", getenv("CPT"));
    int n1 = losses(tmp[0], l1, 16), n2 = losses(tmp[1], l2, 16);
    CHECK(n1 == 6 && n2 == 6, "logged losses: %d and %d", n1, n2);
    for (int i = 0; i < n1 && i < n2; i++) worst = fmax(worst, fabs(l1[i] - l2[i]) / fabs(l1[i]));
    CHECK(worst <= 1e-5, "loss curves differ by %.3g relative", worst);
    snprintf(tmp[0], sizeof tmp[0], "%s/one/adapter_model.safetensors", getenv("CPT"));
    snprintf(tmp[1], sizeof tmp[1], "%s/two/adapter_model.safetensors", getenv("CPT"));
    double d = adapter_diff(tmp[0], tmp[1], &scale);
    CHECK(d >= 0 && d <= 1e-4 * scale, "adapters differ by %.3g (largest value %.3g)", d, scale);
    printf("  1 x batch 4 vs 2 ranks x batch 2: losses %.2g relative, adapter %.2g (of %.3g)\n", worst, d, scale);
}

/* SEQ_CLS and TOKEN_CLS on the tiny BERT with its dropouts at 0.2 and LoRA's at 0.1: the batches
 * sharded the same way, the same masks; the evaluation sharded too (rank r runs eval batches r, r + N,
 * ...; loss sums and predictions reduced) gives the single process's loss, accuracy, macro-F1 and
 * seqeval precision / recall / F1 */
TEST(classification_two_ranks_equal_one_process) {
    const char *why = mpi_missing();
    if (why) SKIP("%s", why);
    static char out[65536];
    CHECK(run_all(out, sizeof out, "rm -rf $CPT/tb && cp -r tests/fixtures/clstrain/tiny_bert $CPT/tb && sed -i -E "
              "'s/\"(hidden_dropout_prob|attention_probs_dropout_prob)\": 0.0/\"\\1\": 0.2/' $CPT/tb/config.json && "
              "grep -c '_prob\": 0.2' $CPT/tb/config.json") == 0 && atoi(out) == 2, "%s", out);
    /* TOKEN_CLS: 2 steps, within the first epoch (its last global batch is uneven: completed from the
     * epoch's start as accelerate does, so it is not the single process's) */
    const char *tasks[2][4] = {{"SEQ_CLS", "seq_train.tsv", "seq_eval.tsv", "4"}, {"TOKEN_CLS", "tok_train.conll", "tok_eval.conll", "2"}};
    for (int k = 0; k < 2; k++) {
#define CLS "--model $CPT/tb --task-type %s --data tests/fixtures/clstrain/data/%s --eval-data tests/fixtures/clstrain/data/%s " \
    "--max-steps %s --learning-rate 1e-2 --logging-steps 1 --save-steps 2 --eval-steps %s --lora-dropout 0.1 --seed 3 --progress lines"
        CHECK(run_all(out, sizeof out, "rm -rf $CPT/c1 $CPT/c2 && OMP_NUM_THREADS=2 %s train " CLS " --per-device-train-batch-size 4 "
                  "--output-dir $CPT/c1 && %s -np 2 %s train " CLS " --per-device-train-batch-size 2 --output-dir $CPT/c2", bin(),
                  tasks[k][0], tasks[k][1], tasks[k][2], tasks[k][3], k ? "1" : "2", mpirun, bin(), tasks[k][0], tasks[k][1],
                  tasks[k][2], tasks[k][3], k ? "1" : "2") == 0 && strstr(out, "| eval loss") && strstr(out, k ? "F1" : "accuracy"), "%s", out);
#undef CLS
        char p1[1024], p2[1024];
        double l1[16], l2[16], worst = 0, scale;
        snprintf(p1, sizeof p1, "%s/c1/metrics.jsonl", getenv("CPT"));
        snprintf(p2, sizeof p2, "%s/c2/metrics.jsonl", getenv("CPT"));
        int n1 = losses(p1, l1, 16), n2 = losses(p2, l2, 16);
        CHECK(n1 == atoi(tasks[k][3]) && n2 == n1, "%s: logged losses: %d and %d", tasks[k][0], n1, n2);
        for (int i = 0; i < n1 && i < n2; i++) worst = fmax(worst, fabs(l1[i] - l2[i]) / fabs(l1[i]));
        CHECK(worst <= 1e-5, "%s: loss curves differ by %.3g relative", tasks[k][0], worst);
        /* the evaluations (loss and metrics as metrics.jsonl prints them, 6 decimals) are the same lines */
        CHECK(run_all(out, sizeof out, "bash -c 'diff <(grep eval_ $CPT/c1/metrics.jsonl) <(grep eval_ $CPT/c2/metrics.jsonl) && "
                      "grep -c eval_%s $CPT/c2/metrics.jsonl'", k ? "f1" : "macro_f1") == 0 && atoi(out) == 3,
              "%s: evaluations differ: %s", tasks[k][0], out);
        snprintf(p1, sizeof p1, "%s/c1/adapter_model.safetensors", getenv("CPT"));
        snprintf(p2, sizeof p2, "%s/c2/adapter_model.safetensors", getenv("CPT"));
        double d = adapter_diff(p1, p2, &scale);
        CHECK(d >= 0 && d <= 1e-4 * scale, "%s: adapters differ by %.3g (largest value %.3g)", tasks[k][0], d, scale);
        printf("  %s 1 x batch 4 vs 2 ranks x batch 2 (dropout on; evaluation sharded): losses %.2g relative, adapter %.2g (of "
               "%.3g), the 3 evaluation lines equal\n", tasks[k][0], worst, d, scale);
    }
}

TEST(two_ranks_reproducible_and_resume_after_a_rank_dies) {
    const char *why = mpi_missing();
    if (why) SKIP("%s", why);
    static char out[65536];
    CHECK(run_all(out, sizeof out, MODEL_SETUP " && rm -rf $CPT/r1 $CPT/r2 $CPT/r3 && %s -np 2 %s train " ARGS
              " --per-device-train-batch-size 2 --output-dir $CPT/r1 && %s -np 2 %s train " ARGS
              " --per-device-train-batch-size 2 --output-dir $CPT/r2 && cmp $CPT/r1/adapter_model.safetensors "
              "$CPT/r2/adapter_model.safetensors", mpirun, bin(), mpirun, bin()) == 0, "two 2-rank runs differ: %s", out);
    /* rank 1 exits (as a crash) in step 5, after checkpoint-4: the job ends instead of hanging */
    time_t t0 = time(NULL);
    int rc = run_all(out, sizeof out, "CPEFT_TEST_DIST_FAIL=1:5:die %s -np 2 %s train " ARGS " --per-device-train-batch-size 2 "
                      "--output-dir $CPT/r3", mpirun, bin());
    CHECK(rc != 0 && time(NULL) - t0 < 120 && strstr(out, "saved checkpoint-4") && !strstr(out, "step 5/6") &&
          strstr(out, "exited"), "rc %d after %lds: %s", rc, (long)(time(NULL) - t0), out);
    printf("  a rank died: exit %d after %ld s\n", rc, (long)(time(NULL) - t0));
    /* resuming the killed run with 2 ranks ends on the bytes of the run that was not interrupted */
    CHECK(run_all(out, sizeof out, "%s -np 2 %s train " ARGS " --per-device-train-batch-size 2 --output-dir $CPT/r3 "
              "--resume-from-checkpoint $CPT/r3/checkpoint-4 && cmp $CPT/r1/adapter_model.safetensors $CPT/r3/adapter_model.safetensors",
              mpirun, bin()) == 0 && strstr(out, "resumed from"), "resume differs: %s", out);
    /* SIGTERM to one rank (as Slurm sends it): every rank stops after the step, rank 0 saves checkpoint-3 */
    CHECK(run_all(out, sizeof out, "rm -rf $CPT/r4 && CPEFT_TEST_DIST_FAIL=1:3:term %s -np 2 %s train " ARGS
              " --per-device-train-batch-size 2 --output-dir $CPT/r4", mpirun, bin()) != 0 &&
          strstr(out, "interrupted (a signal to another rank): saved") && strstr(out, "checkpoint-3;") && !strstr(out, "step 4/6"),
          "%s", out);
    CHECK(run_all(out, sizeof out, "%s -np 2 %s train " ARGS " --per-device-train-batch-size 2 --output-dir $CPT/r4 "
              "--resume-from-checkpoint $CPT/r4/checkpoint-3 && cmp $CPT/r1/adapter_model.safetensors $CPT/r4/adapter_model.safetensors",
              mpirun, bin()) == 0, "resume after SIGTERM differs: %s", out);
    /* with another number of ranks the order differs: refused by name */
    CHECK(run_all(out, sizeof out, "%s train " ARGS " --per-device-train-batch-size 2 --output-dir $CPT/r3 "
              "--resume-from-checkpoint $CPT/r3/checkpoint-4", bin()) == 1 && strstr(out, "made by 2 processes (MPI ranks)"), "%s", out);
}

TEST(a_rank_that_hangs_times_out) {
    const char *why = mpi_missing();
    if (why) SKIP("%s", why);
    static char out[65536];
    time_t t0 = time(NULL);
    int rc = run_all(out, sizeof out, MODEL_SETUP " && rm -rf $CPT/h && CPEFT_DIST_TIMEOUT=3 CPEFT_TEST_DIST_FAIL=1:2:hang "
                      "%s -np 2 %s train " ARGS
                      " --per-device-train-batch-size 2 --output-dir $CPT/h", mpirun, bin());
    CHECK(rc != 0 && time(NULL) - t0 < 120 && strstr(out, "rank 0 of 2") &&
          strstr(out, "no answer from the other ranks for 3 s in the gradient all-reduce"), "rc %d: %s", rc, out);
    printf("  a rank hung: exit %d after %ld s\n", rc, (long)(time(NULL) - t0));
}

TEST(bad_setups_are_refused_by_name) {
    const char *why = mpi_missing();
    if (why) SKIP("%s", why);
    static char out[65536];
    /* ranks started with different arguments (mpirun's MPMD form) */
    CHECK(run_all(out, sizeof out, MODEL_SETUP " && rm -rf $CPT/m && %s -np 1 %s train " ARGS " --per-device-train-batch-size 2 "
              "--output-dir $CPT/m : -np 1 %s train " ARGS " --per-device-train-batch-size 2 --learning-rate 2e-2 --output-dir $CPT/m",
              mpirun, bin(), bin()) == 1 && strstr(out, "different training options (the command line): rank 1 differs from rank 0"),
          "%s", out);
    /* a rank whose directory has no data file: each rank runs in its own directory $CPT/wN */
    CHECK(run_all(out, sizeof out, "rm -rf $CPT/w0 $CPT/w1 && mkdir -p $CPT/w0 $CPT/w1 && cp ../shared/data/alpaca-subset/alpaca_tiny.json "
              "$CPT/w0/data.json && %s -np 2 sh -c 'cd $CPT/w$OMPI_COMM_WORLD_RANK && exec \"$0\" \"$@\"' %s/%s train --model $CPT/tm "
              "--data data.json --max-steps 2 --output-dir $CPT/w0/out", mpirun, cwd(), bin()) == 1 &&
          strstr(out, "rank 1 (") && strstr(out, "data.json"), "%s", out);
    CHECK(run_all(out, sizeof out, "test -e $CPT/w0/out/metrics.jsonl") != 0, "rank 0 left metrics.jsonl: a rerun would be refused");
    /* an output directory that is not the same directory on every rank (a local path on each host) */
    CHECK(run_all(out, sizeof out, "rm -rf $CPT/w0/out && %s -np 2 sh -c 'cd $CPT/w$OMPI_COMM_WORLD_RANK && exec \"$0\" \"$@\"' %s/%s "
              "train --model $CPT/tm --data $CPT/w0/data.json --max-steps 2 --output-dir out", mpirun, cwd(), bin()) == 1 &&
          strstr(out, "--output-dir out is not the directory rank 0") && strstr(out, "could not resume"), "%s", out);
}

TEST(uneven_last_batch_as_accelerate) {
    const char *why = mpi_missing();
    if (why) SKIP("%s", why);
    static char out[65536];
    /* 7 records, 2 ranks x batch 2: 2 steps per epoch, the second global batch is examples 4, 5 | 6, 0 */
    CHECK(run_all(out, sizeof out, MODEL_SETUP " && rm -rf $CPT/u && for i in 1 2 3 4 5 6 7; do echo \"{\\\"text\\\": \\\"record $i "
              "of the uneven set, with a few words\\\"}\"; done > $CPT/seven.jsonl && %s -np 2 %s train --model $CPT/tm --data "
              "$CPT/seven.jsonl --num-train-epochs 2 --per-device-train-batch-size 2 --logging-steps 1 --output-dir $CPT/u --progress lines",
              mpirun, bin()) == 0 && strstr(out, "training: 4 steps (2 per epoch") && strstr(out, "step 4/4 | loss"), "%s", out);
}

int main(void) {
    char tmp[] = "/tmp/cpeft-dist-XXXXXX";
    if (!mkdtemp(tmp)) { perror("mkdtemp"); return 1; }
    setenv("CPT", tmp, 1);
    RUN(shards_match_accelerate_even_batches);
    RUN(configuration_hash);
    RUN(two_ranks_equal_one_process_with_twice_the_batch);
    RUN(classification_two_ranks_equal_one_process);
    RUN(two_ranks_reproducible_and_resume_after_a_rank_dies);
    RUN(a_rank_that_hangs_times_out);
    RUN(bad_setups_are_refused_by_name);
    RUN(uneven_last_batch_as_accelerate);
    char out[256];
    run_all(out, sizeof out, "rm -rf %s", tmp);
    return test_summary();
}
