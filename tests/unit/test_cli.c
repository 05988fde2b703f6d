/*
 * test_cli.c — the `cpeft` program end to end (run as $CPEFT_BIN, set by tests/run.sh):
 * eval against transformers' loss over the same blocks (token ids, and text through the real GPT-2
 * tokenizer), info's JSON and tree, and the exit status and message for bad input.
 */
#include "test.h"
#include "io/json.h"

#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *bin(void) {
    const char *b = getenv("CPEFT_BIN");
    return b ? b : "build/cpeft";
}

/* Runs a shell command line; returns its exit status and captures stdout+stderr into out. */
static int run(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run(char *out, size_t cap, const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static double json_number(const char *text, const char *key) {
    cJSON *j = cJSON_Parse(text);
    const cJSON *v = j ? cJSON_GetObjectItem(j, key) : NULL;
    double d = v && cJSON_IsNumber(v) ? v->valuedouble : NAN;
    cJSON_Delete(j);
    return d;
}

static void check_eval(const char *want_json, const char *cmdline) {
    cJSON *want;
    CHECK_OK(cp_json_read_file(want_json, &want));
    if (!want) return;
    double want_loss = cJSON_GetObjectItem(want, "loss")->valuedouble;
    double want_tokens = cJSON_GetObjectItem(want, "tokens")->valuedouble;
    const int batches[] = {1, 3};
    for (int k = 0; k < 2; k++) {
        char out[4096];
        int rc = run(out, sizeof out, "%s --batch-size %d --json", cmdline, batches[k]);
        CHECK(rc == 0, "%s exited %d: %s", cmdline, rc, out);
        double loss = json_number(out, "loss"), tokens = json_number(out, "tokens");
        printf("  %s (batch %d): loss %.6f, transformers %.6f, |diff| %.1e, %g tokens\n", want_json, batches[k], loss,
               want_loss, fabs(loss - want_loss), tokens);
        CHECK(fabs(loss - want_loss) < 1e-5, "loss %.8f vs %.8f", loss, want_loss);
        CHECK(tokens == want_tokens, "tokens %g vs %g", tokens, want_tokens);
        CHECK(fabs(json_number(out, "perplexity") - exp(want_loss)) < 1e-4 * exp(want_loss), "perplexity");
    }
    cJSON_Delete(want);
}

TEST(eval_token_ids_matches_transformers) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s eval --model tests/fixtures/models/gpt_neo_tiny --data-ids tests/fixtures/eval/gpt_neo_tiny.ids.txt --seq-len 32", bin());
    check_eval("tests/fixtures/eval/gpt_neo_tiny.ids.json", cmd);
}

TEST(eval_text_through_gpt2_tokenizer_matches_transformers) {
    /* A model directory = the bf16 GPT-2-vocabulary model + the real GPT-2 tokenizer.json. */
    char dir[] = "/tmp/cpeft-eval-XXXXXX", out[4096], cmd[1024];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    const char *tok = "../shared/data/gpt2-tokenizer/tokenizer.json";
    CHECK(access(tok, R_OK) == 0, "%s is missing (the shared data folder beside the repository)", tok);
    CHECK(run(out, sizeof out, "cp tests/fixtures/eval/gpt2_vocab/config.json tests/fixtures/eval/gpt2_vocab/model.safetensors %s %s/", tok, dir) == 0, "%s", out);
    snprintf(cmd, sizeof cmd, "%s eval --model %s --data tests/fixtures/eval/shakespeare.txt --seq-len 32", bin(), dir);
    check_eval("tests/fixtures/eval/shakespeare.json", cmd);
    run(out, sizeof out, "rm -rf %s", dir);
}

TEST(info_json_and_tree) {
    static char out[65536];
    CHECK(run(out, sizeof out, "%s info tests/fixtures/configs/gpt-neo-1.3B --json", bin()) == 0, "%s", out);
    CHECK(json_number(out, "num_parameters") == 1315575808.0, "%s", out);
    CHECK(run(out, sizeof out, "%s info tests/fixtures/models/gpt2_tiny_bf16 --json", bin()) == 0, "%s", out);
    CHECK(strstr(out, "\"dtypes\":{\"BF16\":") != NULL, "bf16 weights not reported: %s", out);
    CHECK(run(out, sizeof out, "%s info tests/fixtures/configs/gpt2 --tree", bin()) == 0, "%s", out);
    cJSON *want;
    CHECK_OK(cp_json_read_file("tests/fixtures/info/gpt2.json", &want));
    if (want) {
        char expect[16384];
        snprintf(expect, sizeof expect, "%s\n", cJSON_GetObjectItem(want, "repr")->valuestring);
        CHECK(strcmp(out, expect) == 0, "--tree differs from print(model):\n%s", out);
        cJSON_Delete(want);
    }
}

/* Llama with attention_bias and mlp_bias: the count and the tree are PyTorch's (o_proj has a bias too);
 * Qwen2's sliding layers show per layer. */
TEST(info_llama_biases_and_sliding_layers) {
    static char out[65536];
    cJSON *want;
    CHECK_OK(cp_json_read_file("tests/fixtures/llama/info/llama_bias.json", &want));
    if (!want) return;
    CHECK(run(out, sizeof out, "%s info tests/fixtures/llama/models/llama_bias --json", bin()) == 0, "%s", out);
    CHECK(json_number(out, "num_parameters") == cJSON_GetObjectItem(want, "num_parameters")->valuedouble, "%s", out);
    CHECK(run(out, sizeof out, "%s info tests/fixtures/llama/models/llama_bias --tree", bin()) == 0, "%s", out);
    char expect[16384];
    snprintf(expect, sizeof expect, "%s\n", cJSON_GetObjectItem(want, "repr")->valuestring);
    CHECK(strcmp(out, expect) == 0, "--tree differs from print(model):\n%s", out);
    CHECK(strstr(out, "(o_proj): Linear(in_features=16, out_features=16, bias=True)") != NULL, "%s", out);
    cJSON_Delete(want);
    CHECK(run(out, sizeof out, "%s info tests/fixtures/llama/models/qwen2_layer_types --json", bin()) == 0, "%s", out);
    CHECK(strstr(out, "\"window_size\":3,\"attention_layers\":[\"local\",\"global\",\"local\"]") != NULL, "%s", out);
}

TEST(bad_input_exit_status_and_message) {
    char out[8192];
    CHECK(run(out, sizeof out, "%s info /nonexistent/model", bin()) == 1 && strstr(out, "cpeft info: /nonexistent/model"), "%s", out);
    CHECK(run(out, sizeof out, "%s eval --model tests/fixtures/models/gpt2_tiny --data-ids x --seq-len abc", bin()) == 2 &&
          strstr(out, "--seq-len: expected an integer"), "%s", out);
    CHECK(run(out, sizeof out, "%s eval --model tests/fixtures/models/gpt2_tiny --data-ids x --seq-len 65", bin()) == 1 ||
          strstr(out, "exceeds"), "%s", out);
    CHECK(run(out, sizeof out, "printf '1 2 3\\n4 oops 5\\n' > /tmp/cpeft-bad-ids && %s eval --model tests/fixtures/models/gpt2_tiny --data-ids /tmp/cpeft-bad-ids", bin()) == 1 &&
          strstr(out, "/tmp/cpeft-bad-ids:2: \"oops\" is not a token id"), "%s", out);
    CHECK(run(out, sizeof out, "printf '1 2 3 97\\n' > /tmp/cpeft-bad-ids && %s eval --model tests/fixtures/models/gpt2_tiny --data-ids /tmp/cpeft-bad-ids", bin()) == 1 &&
          strstr(out, "token id 97 is outside the vocabulary [0, 97)"), "%s", out);
    CHECK(run(out, sizeof out, "%s frobnicate", bin()) == 2 && strstr(out, "unknown command"), "%s", out);
    CHECK(run(out, sizeof out, "%s eval --model tests/fixtures/models/gpt2_tiny", bin()) == 2, "%s", out);
    unlink("/tmp/cpeft-bad-ids");
}

static double eval_loss(const char *args) {
    char out[4096];
    int rc = run(out, sizeof out, "%s eval --model tests/fixtures/models/gpt_neo_tiny --data-ids tests/fixtures/eval/gpt_neo_tiny.ids.txt "
                 "--seq-len 32 --json %s", bin(), args);
    CHECK(rc == 0, "eval %s: %s", args, out);
    return json_number(out, "loss");
}

TEST(lora_commands) {
    static char out[65536];
    /* the notebook: print_trainable_parameters() from GPT-Neo-1.3B's config.json alone */
    FILE *f = fopen("/tmp/cpeft-nb.json", "w");
    fputs("{\"peft_type\": \"LORA\", \"task_type\": \"CAUSAL_LM\", \"r\": 8, \"lora_alpha\": 16, \"lora_dropout\": 0.1, "
          "\"target_modules\": [\"q_proj\", \"k_proj\", \"v_proj\"]}", f);
    fclose(f);
    CHECK(run(out, sizeof out, "%s info tests/fixtures/configs/gpt-neo-1.3B --peft-config /tmp/cpeft-nb.json", bin()) == 0 &&
          strstr(out, "\ntrainable params: 2359296 || all params: 1317935104 || trainable%: 0.17901458067543818\n"), "%s", out);
    unlink("/tmp/cpeft-nb.json");
    /* --tree with an adapter: PEFT's repr */
    CHECK(run(out, sizeof out, "%s info tests/fixtures/models/gpt_neo_tiny --adapter tests/fixtures/lora/neo_notebook --tree", bin()) == 0, "%s", out);
    cJSON *exp;
    CHECK_OK(cp_json_read_file("tests/fixtures/lora/neo_notebook/expected.json", &exp));
    if (exp) {
        const char *repr = cJSON_GetObjectItem(exp, "repr")->valuestring;
        CHECK(!strncmp(out, repr, strlen(repr)), "info --tree --adapter differs from PEFT's repr:\n%s", out);
        cJSON_Delete(exp);
    }
    /* eval with an adapter equals eval of the merged checkpoint */
    double base = eval_loss(""), adapted = eval_loss("--adapter tests/fixtures/lora/neo_notebook");
    CHECK(fabs(base - adapted) > 1e-3, "the adapter changes nothing (%f vs %f)", base, adapted);
    CHECK(run(out, sizeof out, "rm -rf /tmp/cpeft-cli-merged && %s merge --model tests/fixtures/models/gpt_neo_tiny --adapter "
              "tests/fixtures/lora/neo_notebook --out /tmp/cpeft-cli-merged", bin()) == 0, "%s", out);
    CHECK(run(out, sizeof out, "%s eval --model /tmp/cpeft-cli-merged --data-ids tests/fixtures/eval/gpt_neo_tiny.ids.txt --seq-len 32 --json", bin()) == 0, "%s", out);
    double merged = json_number(out, "loss");
    printf("  eval: base %.6f, with adapter %.6f, merged checkpoint %.6f\n", base, adapted, merged);
    CHECK(fabs(merged - adapted) < 1e-5, "merged %f vs unmerged %f", merged, adapted);
    CHECK(run(out, sizeof out, "%s merge --model tests/fixtures/models/gpt_neo_tiny --adapter tests/fixtures/lora/neo_notebook --out /tmp/cpeft-cli-merged", bin()) == 1 &&
          strstr(out, "already exists"), "%s", out);
    /* combine cat (0.7, 0.3) equals both adapters active with those weights */
    CHECK(run(out, sizeof out, "rm -rf /tmp/cpeft-cli-cat && %s adapter combine --model tests/fixtures/models/gpt_neo_tiny "
              "--adapter tests/fixtures/lora/neo_multi/adapters/a:a --adapter tests/fixtures/lora/neo_multi/adapters/b:b "
              "--weights 0.7,0.3 --combination cat --out /tmp/cpeft-cli-cat", bin()) == 0, "%s", out);
    double cat = eval_loss("--adapter /tmp/cpeft-cli-cat");
    double weighted = eval_loss("--adapter tests/fixtures/lora/neo_multi/adapters/a:a:0.7 --adapter tests/fixtures/lora/neo_multi/adapters/b:b:0.3");
    CHECK(fabs(cat - weighted) < 1e-5, "combine cat %f vs weighted adapters %f", cat, weighted);
    /* adapter init: a default-initialised adapter is an exact no-op */
    f = fopen("/tmp/cpeft-init.json", "w");
    fputs("{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8}", f);
    fclose(f);
    CHECK(run(out, sizeof out, "rm -rf /tmp/cpeft-cli-init && %s adapter init --model tests/fixtures/models/gpt_neo_tiny "
              "--peft-config /tmp/cpeft-init.json --out /tmp/cpeft-cli-init", bin()) == 0 && strstr(out, "trainable params: 1536 ||"), "%s", out);
    CHECK(fabs(eval_loss("--adapter /tmp/cpeft-cli-init") - base) < 1e-6, "fresh adapter is not a no-op");
    CHECK(run(out, sizeof out, "%s eval --model tests/fixtures/models/gpt_neo_odd --data-ids tests/fixtures/eval/gpt_neo_tiny.ids.txt "
              "--adapter tests/fixtures/lora/neo_notebook", bin()) == 1 && strstr(out, "has shape [8, 32] but the model needs [8, 36]"), "%s", out);
    run(out, sizeof out, "rm -rf /tmp/cpeft-cli-init /tmp/cpeft-cli-cat /tmp/cpeft-cli-merged /tmp/cpeft-init.json");
}

/* A model directory with a real vocabulary: the bf16 GPT-2-vocabulary model + GPT-2's tokenizer. */
static int make_train_model(const char *dir) {
    char out[2048];
    return run(out, sizeof out, "rm -rf %s && mkdir -p %s && cp tests/fixtures/eval/gpt2_vocab/config.json "
               "tests/fixtures/eval/gpt2_vocab/model.safetensors ../shared/data/gpt2-tokenizer/tokenizer.json %s/", dir, dir, dir) == 0;
}

#define TRAIN_ARGS "--data ../shared/data/alpaca-subset/alpaca_tiny.json --max-steps 8 --per-device-train-batch-size 2 " \
                   "--gradient-accumulation-steps 2 --learning-rate 1e-2 --logging-steps 4 --save-steps 4 --max-seq-length 64 " \
                   "--lora-dropout 0.1 --seed 3 --target-modules c_attn --progress lines"

TEST(train_is_deterministic_and_resumes_exactly) {
    static char out[65536];
    CHECK(make_train_model("/tmp/cpeft-tm"), "model dir");
    CHECK(run(out, sizeof out, "rm -rf /tmp/cpeft-t1 /tmp/cpeft-t2 /tmp/cpeft-t3 && %s train --model /tmp/cpeft-tm " TRAIN_ARGS
              " --output-dir /tmp/cpeft-t1 --validation-split 0.1 --eval-steps 4", bin()) == 0, "%s", out);
    CHECK(strstr(out, "memory plan") && strstr(out, "trainable params: ") && strstr(out, "step 8/8 | loss ") &&
          strstr(out, "eval loss") && strstr(out, "saved checkpoint-4"), "train output:\n%s", out);
    CHECK(run(out, sizeof out, "ls /tmp/cpeft-t1/adapter_config.json /tmp/cpeft-t1/adapter_model.safetensors /tmp/cpeft-t1/loss.png "
              "/tmp/cpeft-t1/metrics.jsonl /tmp/cpeft-t1/checkpoint-4/optimizer.safetensors /tmp/cpeft-t1/checkpoint-4/trainer_state.json") == 0,
          "missing outputs: %s", out);
    CHECK(run(out, sizeof out, "grep -c '\"loss\"' /tmp/cpeft-t1/metrics.jsonl") == 0 && atoi(out) == 2, "metrics.jsonl: %s", out);
    /* the same run again is bitwise the same (dropout included) */
    CHECK(run(out, sizeof out, "%s train --model /tmp/cpeft-tm " TRAIN_ARGS " --output-dir /tmp/cpeft-t2 --validation-split 0.1 --eval-steps 4 "
              "&& cmp /tmp/cpeft-t1/adapter_model.safetensors /tmp/cpeft-t2/adapter_model.safetensors", bin()) == 0,
          "two runs with the same seed differ: %s", out);
    /* resuming from checkpoint-4 ends on the same bytes */
    CHECK(run(out, sizeof out, "%s train --model /tmp/cpeft-tm " TRAIN_ARGS " --output-dir /tmp/cpeft-t3 --validation-split 0.1 --eval-steps 4 "
              "--resume-from-checkpoint /tmp/cpeft-t1/checkpoint-4 && cmp /tmp/cpeft-t1/adapter_model.safetensors "
              "/tmp/cpeft-t3/adapter_model.safetensors", bin()) == 0, "resume differs: %s", out);
    /* the trained adapter loads and lowers the eval loss of the data it saw */
    run(out, sizeof out, "rm -rf /tmp/cpeft-t2 /tmp/cpeft-t3");
}

TEST(train_stops_cleanly) {
    static char out[65536];
    CHECK(make_train_model("/tmp/cpeft-tm"), "model dir");
    /* a NaN loss stops before the step is applied and names the last good checkpoint */
    int rc = run(out, sizeof out, "rm -rf /tmp/cpeft-t4 && %s train --model /tmp/cpeft-tm " TRAIN_ARGS " --save-steps 1 "
                 "--output-dir /tmp/cpeft-t4 --learning-rate 1e30", bin());
    CHECK(rc == 1 && strstr(out, "the loss is NaN; stopping without applying this step (the last good checkpoint is /tmp/cpeft-t4/checkpoint-1)"),
          "rc %d: %s", rc, out);
    /* SIGINT saves a checkpoint and exits 130 */
    rc = run(out, sizeof out, "rm -rf /tmp/cpeft-t5 && timeout --preserve-status -s INT 4 %s train --model /tmp/cpeft-tm " TRAIN_ARGS
             " --max-steps 100000 --save-steps 0 --output-dir /tmp/cpeft-t5", bin());
    CHECK(rc == 130 && strstr(out, "interrupted: saved /tmp/cpeft-t5/checkpoint-"), "rc %d: %s", rc, out);
    /* bad input: each a clear message, nothing written */
    CHECK(run(out, sizeof out, "%s train --model /tmp/cpeft-tm " TRAIN_ARGS " --output-dir /tmp/cpeft-t6 --learning-rate fast", bin()) == 2 &&
          strstr(out, "--learning-rate: expected a number, got \"fast\""), "%s", out);
    CHECK(run(out, sizeof out, "%s train --model /tmp/cpeft-tm " TRAIN_ARGS " --output-dir /proc/cpeft-out", bin()) == 1 &&
          strstr(out, "/proc/cpeft-out"), "%s", out);
    CHECK(run(out, sizeof out, ": > /tmp/cpeft-empty.txt && %s train --model /tmp/cpeft-tm --data /tmp/cpeft-empty.txt --output-dir /tmp/cpeft-t7",
              bin()) == 1 && strstr(out, "/tmp/cpeft-empty.txt"), "%s", out);
    CHECK(run(out, sizeof out, "%s train --model /tmp/cpeft-tm " TRAIN_ARGS " --output-dir /tmp/cpeft-t8 --max-seq-length 16", bin()) == 1 &&
          strstr(out, "no response tokens left after truncating to 16 tokens"), "%s", out);
    CHECK(run(out, sizeof out, "%s train --model /tmp/cpeft-tm " TRAIN_ARGS " --output-dir /tmp/cpeft-t8 --max-seq-length 4096", bin()) == 1 &&
          strstr(out, "exceeds the model's 64 positions"), "%s", out);
    run(out, sizeof out, "rm -rf /tmp/cpeft-t1 /tmp/cpeft-t4 /tmp/cpeft-t5 /tmp/cpeft-t6 /tmp/cpeft-t7 /tmp/cpeft-t8 /tmp/cpeft-tm /tmp/cpeft-empty.txt");
}

int main(void) {
    RUN(eval_token_ids_matches_transformers);
    RUN(eval_text_through_gpt2_tokenizer_matches_transformers);
    RUN(info_json_and_tree);
    RUN(info_llama_biases_and_sliding_layers);
    RUN(bad_input_exit_status_and_message);
    RUN(lora_commands);
    RUN(train_is_deterministic_and_resumes_exactly);
    RUN(train_stops_cleanly);
    return test_summary();
}
