/*
 * test_cli.c — the `cpeft` program end to end (run as $CPEFT_BIN, set by tests/run.sh):
 * eval against transformers' loss over the same blocks (token ids, and text through the real GPT-2
 * tokenizer), info's JSON and tree, and the exit status and message for bad input; train's
 * determinism and resume, its stop on SIGINT / SIGTERM / SIGHUP, its output directory (one run at a
 * time, no silent reuse, the final adapter's layout), compressed and binary data, and its checks of
 * the optimizer and schedule numbers.
 */
#include "test.h"
#include "run_cmd.h"
#include "cpeft.h"
#include "core/alloc.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "train/data.h"

#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

static const char *bin(void) {
    const char *b = getenv("CPEFT_BIN");
    return b ? b : "build/cpeft";
}

/* Tests work in a private directory, $CPT (set in main), so that test programs running at once
 * (other checkouts, make -j) never share paths. Shell commands expand $CPT themselves; tp()
 * expands it for the C side. */
static const char *tp(const char *s) {
    static char ring[8][1024];
    static int next;
    char *o = ring[next++ % 8];
    const char *dir = getenv("CPT");
    size_t w = 0;
    for (; *s && w + 1 < sizeof ring[0]; s++) {
        if (!strncmp(s, "$CPT", 4)) {
            w += (size_t)snprintf(o + w, sizeof ring[0] - w, "%s", dir ? dir : "/tmp");
            if (w >= sizeof ring[0]) w = sizeof ring[0] - 1;
            s += 3;
        } else {
            o[w++] = *s;
        }
    }
    o[w] = '\0';
    return o;
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
        int rc = run_cmdf(out, sizeof out, "%s --batch-size %d --json", cmdline, batches[k]);
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

static int write_compressed(const char *src, const char *gz, const char *zst);

TEST(eval_text_through_gpt2_tokenizer_matches_transformers) {
    /* A model directory = the bf16 GPT-2-vocabulary model + the real GPT-2 tokenizer.json. */
    char dir[] = "/tmp/cpeft-eval-XXXXXX", out[4096], cmd[1024];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    const char *tok = "../shared/data/gpt2-tokenizer/tokenizer.json";
    CHECK(access(tok, R_OK) == 0, "%s is missing (the shared data folder beside the repository)", tok);
    CHECK(run_cmdf(out, sizeof out, "cp tests/fixtures/eval/gpt2_vocab/config.json tests/fixtures/eval/gpt2_vocab/model.safetensors %s %s/", tok, dir) == 0, "%s", out);
    snprintf(cmd, sizeof cmd, "%s eval --model %s --data tests/fixtures/eval/shakespeare.txt --seq-len 32", bin(), dir);
    check_eval("tests/fixtures/eval/shakespeare.json", cmd);
    /* the same text gzip- and zstd-compressed gives transformers' loss too; a binary file is refused */
    char gz[128], zst[128];
    snprintf(gz, sizeof gz, "%s/shakespeare.gz", dir);
    snprintf(zst, sizeof zst, "%s/shakespeare.txt.zst", dir);
    CHECK(write_compressed("tests/fixtures/eval/shakespeare.txt", gz, zst), "compressing shakespeare.txt");
    const char *packed[2] = {gz, zst};
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "%s eval --model %s --data %s --seq-len 32", bin(), dir, packed[k]);
        check_eval("tests/fixtures/eval/shakespeare.json", cmd);
    }
    CHECK(run_cmdf(out, sizeof out, "%s eval --model %s --data %s --seq-len 32", bin(), dir, bin()) == 1 &&
              strstr(out, "NUL byte at offset") != NULL,
          "a binary file must be refused with the offset of its NUL byte: %s", out);
    run_cmdf(out, sizeof out, "rm -rf %s", dir);
}

TEST(info_json_and_tree) {
    static char out[65536];
    CHECK(run_cmdf(out, sizeof out, "%s info tests/fixtures/configs/gpt-neo-1.3B --json", bin()) == 0, "%s", out);
    CHECK(json_number(out, "num_parameters") == 1315575808.0, "%s", out);
    CHECK(run_cmdf(out, sizeof out, "%s info tests/fixtures/models/gpt2_tiny_bf16 --json", bin()) == 0, "%s", out);
    CHECK(strstr(out, "\"dtypes\":{\"BF16\":") != NULL, "bf16 weights not reported: %s", out);
    CHECK(run_cmdf(out, sizeof out, "%s info tests/fixtures/configs/gpt2 --tree", bin()) == 0, "%s", out);
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
    CHECK(run_cmdf(out, sizeof out, "%s info tests/fixtures/llama/models/llama_bias --json", bin()) == 0, "%s", out);
    CHECK(json_number(out, "num_parameters") == cJSON_GetObjectItem(want, "num_parameters")->valuedouble, "%s", out);
    CHECK(run_cmdf(out, sizeof out, "%s info tests/fixtures/llama/models/llama_bias --tree", bin()) == 0, "%s", out);
    char expect[16384];
    snprintf(expect, sizeof expect, "%s\n", cJSON_GetObjectItem(want, "repr")->valuestring);
    CHECK(strcmp(out, expect) == 0, "--tree differs from print(model):\n%s", out);
    CHECK(strstr(out, "(o_proj): Linear(in_features=16, out_features=16, bias=True)") != NULL, "%s", out);
    cJSON_Delete(want);
    CHECK(run_cmdf(out, sizeof out, "%s info tests/fixtures/llama/models/qwen2_layer_types --json", bin()) == 0, "%s", out);
    CHECK(strstr(out, "\"window_size\":3,\"attention_layers\":[\"local\",\"global\",\"local\"]") != NULL, "%s", out);
}

TEST(bad_input_exit_status_and_message) {
    char out[8192];
    CHECK(run_cmdf(out, sizeof out, "%s info /nonexistent/model", bin()) == 1 && strstr(out, "cpeft info: /nonexistent/model"), "%s", out);
    CHECK(run_cmdf(out, sizeof out, "%s eval --model tests/fixtures/models/gpt2_tiny --data-ids x --seq-len abc", bin()) == 2 &&
          strstr(out, "--seq-len: expected an integer"), "%s", out);
    CHECK(run_cmdf(out, sizeof out, "%s eval --model tests/fixtures/models/gpt2_tiny --data-ids x --seq-len 65", bin()) == 1 ||
          strstr(out, "exceeds"), "%s", out);
    CHECK(run_cmdf(out, sizeof out, "printf '1 2 3\\n4 oops 5\\n' > $CPT/bad-ids && %s eval --model tests/fixtures/models/gpt2_tiny --data-ids $CPT/bad-ids", bin()) == 1 &&
          strstr(out, tp("$CPT/bad-ids:2: \"oops\" is not a token id")), "%s", out);
    CHECK(run_cmdf(out, sizeof out, "printf '1 2 3 97\\n' > $CPT/bad-ids && %s eval --model tests/fixtures/models/gpt2_tiny --data-ids $CPT/bad-ids", bin()) == 1 &&
          strstr(out, "token id 97 is outside the vocabulary [0, 97)"), "%s", out);
    CHECK(run_cmdf(out, sizeof out, "%s frobnicate", bin()) == 2 && strstr(out, "unknown command"), "%s", out);
    CHECK(run_cmdf(out, sizeof out, "%s eval --model tests/fixtures/models/gpt2_tiny", bin()) == 2, "%s", out);
    unlink(tp("$CPT/bad-ids"));
}

static double eval_loss(const char *args) {
    char out[4096];
    int rc = run_cmdf(out, sizeof out, "%s eval --model tests/fixtures/models/gpt_neo_tiny --data-ids tests/fixtures/eval/gpt_neo_tiny.ids.txt "
                 "--seq-len 32 --json %s", bin(), args);
    CHECK(rc == 0, "eval %s: %s", args, out);
    return json_number(out, "loss");
}

TEST(lora_commands) {
    static char out[65536];
    /* the notebook: print_trainable_parameters() from GPT-Neo-1.3B's config.json alone */
    FILE *f = fopen(tp("$CPT/nb.json"), "w");
    fputs("{\"peft_type\": \"LORA\", \"task_type\": \"CAUSAL_LM\", \"r\": 8, \"lora_alpha\": 16, \"lora_dropout\": 0.1, "
          "\"target_modules\": [\"q_proj\", \"k_proj\", \"v_proj\"]}", f);
    fclose(f);
    CHECK(run_cmdf(out, sizeof out, "%s info tests/fixtures/configs/gpt-neo-1.3B --peft-config $CPT/nb.json", bin()) == 0 &&
          strstr(out, "\ntrainable params: 2359296 || all params: 1317935104 || trainable%: 0.17901458067543818\n"), "%s", out);
    unlink(tp("$CPT/nb.json"));
    /* --tree with an adapter: PEFT's repr */
    CHECK(run_cmdf(out, sizeof out, "%s info tests/fixtures/models/gpt_neo_tiny --adapter tests/fixtures/lora/neo_notebook --tree", bin()) == 0, "%s", out);
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
    CHECK(run_cmdf(out, sizeof out, "rm -rf $CPT/cli-merged && %s merge --model tests/fixtures/models/gpt_neo_tiny --adapter "
              "tests/fixtures/lora/neo_notebook --out $CPT/cli-merged", bin()) == 0, "%s", out);
    CHECK(run_cmdf(out, sizeof out, "%s eval --model $CPT/cli-merged --data-ids tests/fixtures/eval/gpt_neo_tiny.ids.txt --seq-len 32 --json", bin()) == 0, "%s", out);
    double merged = json_number(out, "loss");
    printf("  eval: base %.6f, with adapter %.6f, merged checkpoint %.6f\n", base, adapted, merged);
    CHECK(fabs(merged - adapted) < 1e-5, "merged %f vs unmerged %f", merged, adapted);
    CHECK(run_cmdf(out, sizeof out, "%s merge --model tests/fixtures/models/gpt_neo_tiny --adapter tests/fixtures/lora/neo_notebook --out $CPT/cli-merged", bin()) == 1 &&
          strstr(out, "already exists"), "%s", out);
    /* combine cat (0.7, 0.3) equals both adapters active with those weights */
    CHECK(run_cmdf(out, sizeof out, "rm -rf $CPT/cli-cat && %s adapter combine --model tests/fixtures/models/gpt_neo_tiny "
              "--adapter tests/fixtures/lora/neo_multi/adapters/a:a --adapter tests/fixtures/lora/neo_multi/adapters/b:b "
              "--weights 0.7,0.3 --combination cat --out $CPT/cli-cat", bin()) == 0, "%s", out);
    double cat = eval_loss("--adapter $CPT/cli-cat");
    double weighted = eval_loss("--adapter tests/fixtures/lora/neo_multi/adapters/a:a:0.7 --adapter tests/fixtures/lora/neo_multi/adapters/b:b:0.3");
    CHECK(fabs(cat - weighted) < 1e-5, "combine cat %f vs weighted adapters %f", cat, weighted);
    /* adapter init: a default-initialised adapter is an exact no-op */
    f = fopen(tp("$CPT/init.json"), "w");
    fputs("{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8}", f);
    fclose(f);
    CHECK(run_cmdf(out, sizeof out, "rm -rf $CPT/cli-init && %s adapter init --model tests/fixtures/models/gpt_neo_tiny "
              "--peft-config $CPT/init.json --out $CPT/cli-init", bin()) == 0 && strstr(out, "trainable params: 1536 ||"), "%s", out);
    CHECK(fabs(eval_loss("--adapter $CPT/cli-init") - base) < 1e-6, "fresh adapter is not a no-op");
    CHECK(run_cmdf(out, sizeof out, "%s eval --model tests/fixtures/models/gpt_neo_odd --data-ids tests/fixtures/eval/gpt_neo_tiny.ids.txt "
              "--adapter tests/fixtures/lora/neo_notebook", bin()) == 1 && strstr(out, "has shape [8, 32] but the model needs [8, 36]"), "%s", out);
    run_cmdf(out, sizeof out, "rm -rf $CPT/cli-init $CPT/cli-cat $CPT/cli-merged $CPT/init.json");
}

/* A model directory with a real vocabulary: the bf16 GPT-2-vocabulary model + GPT-2's tokenizer. */
static int make_train_model(const char *dir) {
    char out[2048];
    return run_cmdf(out, sizeof out, "rm -rf %s && mkdir -p %s && cp tests/fixtures/eval/gpt2_vocab/config.json "
               "tests/fixtures/eval/gpt2_vocab/model.safetensors ../shared/data/gpt2-tokenizer/tokenizer.json %s/", dir, dir, dir) == 0;
}

#define TRAIN_ARGS "--data ../shared/data/alpaca-subset/alpaca_tiny.json --max-steps 8 --per-device-train-batch-size 2 " \
                   "--gradient-accumulation-steps 2 --learning-rate 1e-2 --logging-steps 4 --save-steps 4 --max-seq-length 64 " \
                   "--lora-dropout 0.1 --seed 3 --target-modules c_attn --progress lines"

TEST(train_is_deterministic_and_resumes_exactly) {
    static char out[65536];
    CHECK(make_train_model("$CPT/tm"), "model dir");
    CHECK(run_cmdf(out, sizeof out, "rm -rf $CPT/t1 $CPT/t2 $CPT/t3 && %s train --model $CPT/tm " TRAIN_ARGS
              " --output-dir $CPT/t1 --validation-split 0.1 --eval-steps 4", bin()) == 0, "%s", out);
    CHECK(strstr(out, "memory plan") && strstr(out, "trainable params: ") && strstr(out, "step 8/8 | loss ") &&
          strstr(out, "eval loss") && strstr(out, "saved checkpoint-4"), "train output:\n%s", out);
    CHECK(run_cmdf(out, sizeof out, "ls $CPT/t1/adapter_config.json $CPT/t1/adapter_model.safetensors $CPT/t1/loss_curve.png $CPT/t1/loss_curve.svg $CPT/t1/trainer_state.json "
              "$CPT/t1/metrics.jsonl $CPT/t1/checkpoint-4/optimizer.safetensors $CPT/t1/checkpoint-4/trainer_state.json") == 0,
          "missing outputs: %s", out);
    CHECK(run_cmdf(out, sizeof out, "grep -c '\"loss\"' $CPT/t1/metrics.jsonl") == 0 && atoi(out) == 2, "metrics.jsonl: %s", out);
    /* the same run again is bitwise the same (dropout included) */
    CHECK(run_cmdf(out, sizeof out, "%s train --model $CPT/tm " TRAIN_ARGS " --output-dir $CPT/t2 --validation-split 0.1 --eval-steps 4 "
              "&& cmp $CPT/t1/adapter_model.safetensors $CPT/t2/adapter_model.safetensors", bin()) == 0,
          "two runs with the same seed differ: %s", out);
    /* resuming from checkpoint-4 ends on the same bytes */
    CHECK(run_cmdf(out, sizeof out, "%s train --model $CPT/tm " TRAIN_ARGS " --output-dir $CPT/t3 --validation-split 0.1 --eval-steps 4 "
              "--resume-from-checkpoint $CPT/t1/checkpoint-4 && cmp $CPT/t1/adapter_model.safetensors "
              "$CPT/t3/adapter_model.safetensors", bin()) == 0, "resume differs: %s", out);
    /* the trained adapter loads and lowers the eval loss of the data it saw */
    run_cmdf(out, sizeof out, "rm -rf $CPT/t2 $CPT/t3");
}

/* On a bf16 model the adapter files keep the bias="all" biases and the modules_to_save copies in
 * BF16, as PEFT saves them; the checkpoint's optimizer.safetensors keeps their f32 values, so that
 * resuming still ends on the same bytes as the run that was not interrupted. */
TEST(train_resumes_exactly_with_bf16_biases_and_copies) {
    static char out[65536];
    CHECK(make_train_model("$CPT/tm"), "model dir");
    CHECK(run_cmdf(out, sizeof out, "rm -rf $CPT/b1 $CPT/b2 && %s train --model $CPT/tm " TRAIN_ARGS " --bias all --modules-to-save ln_f "
              "--output-dir $CPT/b1 && %s train --model $CPT/tm " TRAIN_ARGS " --bias all --modules-to-save ln_f --output-dir $CPT/b2 "
              "--resume-from-checkpoint $CPT/b1/checkpoint-4 && cmp $CPT/b1/adapter_model.safetensors $CPT/b2/adapter_model.safetensors",
              bin(), bin()) == 0, "resume differs: %s", out);
    cp_safetensors st;
    CHECK_OK(cp_st_open(&st, tp("$CPT/b1/adapter_model.safetensors")));
    if (st.tensors) {
        const cp_st_tensor *copy = cp_st_find(&st, "base_model.model.transformer.ln_f.weight"),
                           *bias = cp_st_find(&st, "base_model.model.transformer.h.0.mlp.c_fc.bias"),
                           *lora = cp_st_find(&st, "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight");
        CHECK(copy && bias && lora && copy->dtype == CP_BF16 && bias->dtype == CP_BF16 && lora->dtype == CP_F32,
              "adapter dtypes: copy %s, bias %s, lora_A %s", copy ? cp_dtype_name(copy->dtype) : "-",
              bias ? cp_dtype_name(bias->dtype) : "-", lora ? cp_dtype_name(lora->dtype) : "-");
        cp_st_close(&st);
    }
    run_cmdf(out, sizeof out, "rm -rf $CPT/b1 $CPT/b2");
}

TEST(train_stops_cleanly) {
    static char out[65536];
    CHECK(make_train_model("$CPT/tm"), "model dir");
    /* a NaN loss stops before the step is applied and names the last good checkpoint */
    int rc = run_cmdf(out, sizeof out, "rm -rf $CPT/t4 && %s train --model $CPT/tm " TRAIN_ARGS " --save-steps 1 "
                 "--output-dir $CPT/t4 --learning-rate 1e30", bin());
    CHECK(rc == 1 && strstr(out, tp("the loss is NaN; stopping without applying this step (the last good checkpoint is $CPT/t4/checkpoint-1)")),
          "rc %d: %s", rc, out);
    /* SIGINT saves a checkpoint and exits 130 */
    rc = run_cmdf(out, sizeof out, "rm -rf $CPT/t5 && timeout --preserve-status -s INT 4 %s train --model $CPT/tm " TRAIN_ARGS
             " --max-steps 100000 --save-steps 0 --output-dir $CPT/t5", bin());
    CHECK(rc == 130 && strstr(out, tp("interrupted (SIGINT): saved $CPT/t5/checkpoint-")), "rc %d: %s", rc, out);
    /* bad input: each a clear message, nothing written */
    CHECK(run_cmdf(out, sizeof out, "%s train --model $CPT/tm " TRAIN_ARGS " --output-dir $CPT/t6 --learning-rate fast", bin()) == 2 &&
          strstr(out, "--learning-rate: expected a number, got \"fast\""), "%s", out);
    CHECK(run_cmdf(out, sizeof out, "%s train --model $CPT/tm " TRAIN_ARGS " --output-dir /proc/cpeft-out", bin()) == 1 &&
          strstr(out, "/proc/cpeft-out"), "%s", out);
    CHECK(run_cmdf(out, sizeof out, ": > $CPT/empty.txt && %s train --model $CPT/tm --data $CPT/empty.txt --output-dir $CPT/t7",
              bin()) == 1 && strstr(out, tp("$CPT/empty.txt")), "%s", out);
    CHECK(run_cmdf(out, sizeof out, "%s train --model $CPT/tm " TRAIN_ARGS " --output-dir $CPT/t8 --max-seq-length 16", bin()) == 1 &&
          strstr(out, "no response tokens left after truncating to 16 tokens"), "%s", out);
    CHECK(run_cmdf(out, sizeof out, "%s train --model $CPT/tm " TRAIN_ARGS " --output-dir $CPT/t8 --max-seq-length 4096", bin()) == 1 &&
          strstr(out, "exceeds the model's 64 positions"), "%s", out);
    /* a tokenizer whose pad token is no token of the model: refused by name before training */
    CHECK(run_cmdf(out, sizeof out, "cp -r $CPT/tm $CPT/tp && perl -0pi -e 's/\"added_tokens\": \\[/\"added_tokens\": [{\"id\": 50257, "
              "\"content\": \"<pad>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
              "\"special\": true},/' $CPT/tp/tokenizer.json && echo '{\"pad_token\": \"<pad>\"}' > $CPT/tp/tokenizer_config.json && "
              "%s train --model $CPT/tp " TRAIN_ARGS " --output-dir $CPT/t8", bin()) == 1 &&
          strstr(out, "the pad token id 50257 (the tokenizer's pad token) is outside the model's vocabulary [0, 50257) (vocab_size)"),
          "%s", out);
    run_cmdf(out, sizeof out, "rm -rf $CPT/t1 $CPT/t4 $CPT/t5 $CPT/t6 $CPT/t7 $CPT/t8 $CPT/tm $CPT/tp $CPT/empty.txt");
}

/* A config saying "inference_mode": true (every saved adapter_config.json does) freezes the adapter
 * under get_peft_model, and PEFT's Trainer then fails ("element 0 of tensors does not require
 * grad"); cpeft train says so and trains it, and saves inference_mode true as save_pretrained does. */
TEST(train_peft_config_in_inference_mode_trains) {
    static char out[65536];
    CHECK(make_train_model("$CPT/tm"), "model dir");
    FILE *f = fopen(tp("$CPT/inf.json"), "w");
    fputs("{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"target_modules\": [\"c_attn\"], \"inference_mode\": true}", f);
    fclose(f);
    CHECK(run_cmdf(out, sizeof out, "rm -rf $CPT/ti && %s train --model $CPT/tm --data ../shared/data/alpaca-subset/alpaca_tiny.json "
              "--max-steps 2 --per-device-train-batch-size 2 --learning-rate 1e-2 --logging-steps 1 --save-steps 0 "
              "--max-seq-length 64 --seed 3 --progress lines --peft-config $CPT/inf.json --output-dir $CPT/ti", bin()) == 0 &&
          strstr(out, "says \"inference_mode\": true (as every saved adapter_config.json does); training the adapter anyway") &&
          strstr(out, "trainable params: 64 ||") && strstr(out, "step 2/2 | loss "), "%s", out);
    CHECK(run_cmdf(out, sizeof out, "grep -c '\"inference_mode\": true' $CPT/ti/adapter_config.json") == 0 && atoi(out) == 1,
          "saved config: %s", out);
    /* the trained adapter is not the no-op it started as: lora_B moved off zero */
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, tp("$CPT/tm"), CP_LOAD_WEIGHTS));
    if (m) {
        int64_t ids[6] = {10, 20, 30, 40, 50, 60};
        cp_batch b = {.B = 1, .T = 6, .input_ids = ids, .labels = ids};
        cp_outputs base = {0}, adapted = {0};
        CHECK_OK(cp_model_forward(m, &b, &base));
        CHECK_OK(cp_model_load_adapter(m, tp("$CPT/ti"), "default", 0));
        CHECK_OK(cp_model_forward(m, &b, &adapted));
        printf("  trained in inference_mode: loss on a fixed batch %.6f without the adapter, %.6f with it\n", base.loss, adapted.loss);
        CHECK(fabs(base.loss - adapted.loss) > 1e-5, "the trained adapter changes nothing (%f vs %f)", base.loss, adapted.loss);
        cp_model_free(m);
    }
    run_cmdf(out, sizeof out, "rm -rf $CPT/ti $CPT/tm $CPT/inf.json");
}

/* ---- runs in the background, signals, the output directory ---------------------------------------- */

/* Starts `cpeft train ARGS` with stdout and stderr in `log`; returns its pid (exec'd by the shell). */
static pid_t spawn_train(const char *log, const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "exec %s train %s > %s 2>&1", bin(), args, log);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int file_contains(const char *path, const char *needle, char *buf, size_t cap) {
    FILE *f = fopen(path, "r");
    buf[0] = '\0';
    if (!f) return 0;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strstr(buf, needle) != NULL;
}

/* Waits (at most 60 s) until `path` contains `needle`. */
static int wait_for(const char *path, const char *needle) {
    static char buf[65536];
    for (int i = 0; i < 3000; i++) {
        if (file_contains(path, needle, buf, sizeof buf)) return 1;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* Exit status of pid, or -1 when a signal ended it (what a caught SIGTERM must not look like). */
static int wait_exit(pid_t pid, int *signaled) {
    int status = 0;
    waitpid(pid, &status, 0);
    *signaled = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#define LONG_RUN "--model $CPT/tm " TRAIN_ARGS " --max-steps 100000 --save-steps 0 --logging-steps 1"

TEST(train_stops_on_sigterm_and_sighup) {
    static char out[65536];
    CHECK(make_train_model("$CPT/tm"), "model dir");
    const int sigs[2] = {SIGTERM, SIGHUP};
    const char *names[2] = {"SIGTERM", "SIGHUP"};
    for (int k = 0; k < 2; k++) {
        run_cmdf(out, sizeof out, "rm -rf $CPT/ts");
        pid_t pid = spawn_train("$CPT/ts.log", LONG_RUN " --output-dir $CPT/ts");
        CHECK(wait_for(tp("$CPT/ts/metrics.jsonl"), "\"loss\""), "%s: the run never logged a step", names[k]);
        kill(pid, sigs[k]);
        int sig, rc = wait_exit(pid, &sig);
        char log[8192], want[128];
        snprintf(want, sizeof want, "interrupted (%s): saved %s/checkpoint-", names[k], tp("$CPT/ts"));
        int said = file_contains(tp("$CPT/ts.log"), want, log, sizeof log);
        printf("  %s: exit status %d%s\n", names[k], rc, sig ? " (killed by the signal)" : "");
        CHECK(rc == 128 + sigs[k] && !sig, "%s: exit status %d, killed by signal %d; expected exit %d", names[k], rc, sig, 128 + sigs[k]);
        CHECK(said, "%s: no checkpoint reported:\n%s", names[k], log);
        /* the checkpoint it names is complete and records its step */
        const char *at = strstr(log, want);
        long long step = at ? atoll(at + strlen(want)) : 0;
        char path[256];
        snprintf(path, sizeof path, "%s/checkpoint-%lld/trainer_state.json", tp("$CPT/ts"), step);
        cJSON *state = NULL;
        CHECK(step > 0 && cp_json_read_file(path, &state) == CP_OK, "%s: %s unreadable", names[k], path);
        const cJSON *gs = state ? cJSON_GetObjectItem(state, "global_step") : NULL;
        CHECK(gs && gs->valuedouble == (double)step, "%s: trainer_state.json global_step differs from %lld", names[k], step);
        cJSON_Delete(state);
        CHECK(run_cmdf(out, sizeof out, "ls $CPT/ts/checkpoint-%lld/adapter_model.safetensors $CPT/ts/checkpoint-%lld/adapter_config.json "
                  "$CPT/ts/checkpoint-%lld/optimizer.safetensors", step, step, step) == 0, "%s: %s", names[k], out);
    }
    run_cmdf(out, sizeof out, "rm -rf $CPT/ts $CPT/ts.log");
}

TEST(train_output_dir_one_run_no_silent_reuse) {
    static char out[65536], before[65536], after[65536];
    CHECK(make_train_model("$CPT/tm"), "model dir");
    run_cmdf(out, sizeof out, "rm -rf $CPT/to");
    /* a second run on a directory in use is refused by the first one's name, and harms nothing */
    pid_t first = spawn_train("$CPT/to.log", LONG_RUN " --output-dir $CPT/to");
    CHECK(wait_for(tp("$CPT/to/metrics.jsonl"), "\"loss\""), "the first run never logged a step");
    char holder[64];
    snprintf(holder, sizeof holder, "%s is in use by cpeft train (pid %d)", tp("$CPT/to"), (int)first);
    for (int k = 0; k < 2; k++) { /* with and without --overwrite-output-dir: the lock is checked first */
        int rc = run_cmdf(out, sizeof out, "%s train --model $CPT/tm " TRAIN_ARGS " --output-dir $CPT/to%s", bin(), k ? " --overwrite-output-dir" : "");
        CHECK(rc == 1 && strstr(out, holder), "second run: rc %d: %s", rc, out);
    }
    kill(first, SIGINT);
    int sig;
    int rc = wait_exit(first, &sig);
    CHECK(rc == 130 && file_contains(tp("$CPT/to.log"), "interrupted (SIGINT): saved", out, sizeof out), "first run: rc %d\n%s", rc, out);
    CHECK(file_contains(tp("$CPT/to/metrics.jsonl"), "{\"step\": 1,", before, sizeof before), "first run's metrics.jsonl lost: %s", before);
    /* now idle, but not empty: refused without --overwrite-output-dir, and nothing changes */
    rc = run_cmdf(out, sizeof out, "%s train --model $CPT/tm " TRAIN_ARGS " --output-dir $CPT/to", bin());
    CHECK(rc == 1 && strstr(out, tp("$CPT/to: the output directory exists and is not empty")) &&
          strstr(out, "give --overwrite-output-dir or --resume-from-checkpoint"), "rc %d: %s", rc, out);
    file_contains(tp("$CPT/to/metrics.jsonl"), "", after, sizeof after);
    CHECK(!strcmp(before, after), "a refused run changed metrics.jsonl");
    /* with --overwrite-output-dir it runs; the final adapter is a link into a complete directory */
    rc = run_cmdf(out, sizeof out, "%s train --model $CPT/tm " TRAIN_ARGS " --max-steps 2 --output-dir $CPT/to --overwrite-output-dir", bin());
    CHECK(rc == 0, "overwrite: rc %d: %s", rc, out);
    CHECK(run_cmdf(out, sizeof out, "readlink $CPT/to/adapter $CPT/to/adapter_config.json $CPT/to/adapter_model.safetensors") == 0 &&
          !strcmp(out, "adapter-step-2\nadapter/adapter_config.json\nadapter/adapter_model.safetensors\n"), "layout: %s", out);
    /* a second overwrite commits a new directory and removes the old one */
    CHECK(run_cmdf(out, sizeof out, "cp $CPT/to/adapter_model.safetensors $CPT/to.first && %s train --model $CPT/tm " TRAIN_ARGS
              " --max-steps 2 --output-dir $CPT/to --overwrite-output-dir --seed 4", bin()) == 0, "%s", out);
    CHECK(run_cmdf(out, sizeof out, "readlink $CPT/to/adapter; ls -d $CPT/to/adapter-step-*") == 0 &&
          !strcmp(out, tp("adapter-step-2-2\n$CPT/to/adapter-step-2-2\n")), "after a second run: %s", out);
    CHECK(run_cmdf(out, sizeof out, "cmp -s $CPT/to.first $CPT/to/adapter_model.safetensors") == 1, "the second run's adapter is not in place");
    run_cmdf(out, sizeof out, "rm -rf $CPT/to $CPT/to.log $CPT/to.first");
}

/* ---- data ------------------------------------------------------------------------------------------- */

static int write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t w = fwrite(p, 1, n, f);
    return fclose(f) == 0 && w == n;
}

/* gzip of src in two members (as `cat a.gz b.gz` makes), and zstd, written with zlib and libzstd. */
static int write_compressed(const char *src, const char *gz, const char *zst) {
    char *data;
    size_t n;
    if (cp_read_file(src, &data, &n) != CP_OK) return 0;
    size_t cap = n + n / 2 + 4096, len = 0;
    unsigned char *buf = malloc(cap);
    for (int m = 0; m < 2; m++) {
        z_stream z;
        memset(&z, 0, sizeof z);
        deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
        size_t half = m ? n - n / 2 : n / 2;
        z.next_in = (unsigned char *)data + (m ? n / 2 : 0);
        z.avail_in = (uInt)half;
        z.next_out = buf + len;
        z.avail_out = (uInt)(cap - len);
        deflate(&z, Z_FINISH);
        len = cap - z.avail_out;
        deflateEnd(&z);
    }
    int ok = write_bytes(gz, buf, len);
    size_t zn = ZSTD_compress(buf, cap, data, n, 3);
    ok = ok && !ZSTD_isError(zn) && write_bytes(zst, buf, zn);
    free(buf);
    cp_free(data);
    return ok;
}

TEST(train_reads_compressed_data_and_refuses_binary) {
    static char out[65536];
    CHECK(make_train_model("$CPT/tm"), "model dir");
    const char *alpaca = "../shared/data/alpaca-subset/alpaca_tiny.json";
    /* gz (named .json: found by its magic number) and zst train to the same bytes as the plain file */
    CHECK(write_compressed(alpaca, tp("$CPT/alpaca-gz.json"), tp("$CPT/alpaca.json.zst")), "compressing %s", alpaca);
    const char *data[3] = {alpaca, "$CPT/alpaca-gz.json", "$CPT/alpaca.json.zst"};
    for (int k = 0; k < 3; k++) {
        int rc = run_cmdf(out, sizeof out, "rm -rf $CPT/tz%d && %s train --model $CPT/tm --data %s --max-steps 2 --per-device-train-batch-size 2 "
                     "--max-seq-length 64 --target-modules c_attn --seed 3 --progress lines --output-dir $CPT/tz%d", k, bin(), data[k], k);
        CHECK(rc == 0, "%s: rc %d: %s", data[k], rc, out);
        if (k) CHECK(run_cmdf(out, sizeof out, "cmp $CPT/tz0/adapter_model.safetensors $CPT/tz%d/adapter_model.safetensors", k) == 0,
                     "%s trains differently from the plain file: %s", data[k], out);
    }
    /* the count of truncated records is printed, and equals what a load without truncation shows */
    cp_tokenizer *tok = NULL;
    CHECK_OK(cp_tokenizer_load_file(&tok, "../shared/data/gpt2-tokenizer/tokenizer.json"));
    cp_dataset ds;
    cp_data_options opt = {.path = alpaca, .max_seq_length = 1024};
    int64_t longer = 0;
    cp_set_quiet(1);
    if (tok && cp_dataset_load(&ds, tok, &opt) == CP_OK) {
        for (int64_t i = 0; i < ds.n; i++) {
            int64_t prompt = 0;
            for (int64_t t = 0; t < ds.examples[i].len; t++) prompt += ds.examples[i].labels[t] == -100;
            longer += ds.examples[i].len > 64 && prompt < 64; /* cut, yet with response tokens left */
        }
        cp_dataset_free(&ds);
    }
    cp_set_quiet(0);
    cp_tokenizer_free(tok);
    char want[96];
    snprintf(want, sizeof want, ", %lld truncated to --max-seq-length 64", (long long)longer);
    CHECK(run_cmdf(out, sizeof out, "rm -rf $CPT/tz0 && %s train --model $CPT/tm --data %s --max-steps 1 --max-seq-length 64 "
              "--output-dir $CPT/tz0", bin(), alpaca) == 0 && longer > 0 && strstr(out, want), "expected \"%s\":\n%s", want, out);
    printf("  %lld of the records are truncated to 64 tokens; train says so\n", (long long)longer);
    /* a binary file: refused with the offset of its first NUL byte */
    char *elf;
    size_t n, bad = 0;
    CHECK_OK(cp_read_file(bin(), &elf, &n));
    while (bad < n && elf[bad] && (unsigned char)elf[bad] < 0x80) bad++;
    CHECK(bad < n && elf[bad] == 0, "the program has no NUL byte before its first non-ASCII byte");
    cp_free(elf);
    snprintf(want, sizeof want, "binary data, not text: a NUL byte at offset %zu (line 1)", bad);
    int rc = run_cmdf(out, sizeof out, "rm -rf $CPT/tz1 && %s train --model $CPT/tm --data %s --output-dir $CPT/tz1 --max-steps 1 --max-seq-length 64",
                 bin(), bin());
    CHECK(rc == 1 && strstr(out, want), "rc %d, expected \"%s\": %s", rc, want, out);
    rc = run_cmdf(out, sizeof out, "rm -rf $CPT/tz1 && xz -c %s > $CPT/alpaca.xz && %s train --model $CPT/tm --data $CPT/alpaca.xz "
             "--output-dir $CPT/tz1 --max-steps 1 --max-seq-length 64", alpaca, bin());
    CHECK(rc == 1 && strstr(out, tp("$CPT/alpaca.xz: xz-compressed data, not text")), "rc %d: %s", rc, out);
    run_cmdf(out, sizeof out, "rm -rf $CPT/tz0 $CPT/tz1 $CPT/tz2 $CPT/alpaca-gz.json $CPT/alpaca.json.zst $CPT/alpaca.xz");
}

/* ---- numbers ---------------------------------------------------------------------------------------- */

TEST(train_rejects_what_adamw_and_training_arguments_reject) {
    static char out[65536];
    static const char *const cases[][2] = {
        {"--adam-beta1 2", "--adam-beta1 must be in [0, 1) (torch.optim.AdamW), got 2.0"},
        {"--adam-beta1 -0.1", "--adam-beta1 must be in [0, 1) (torch.optim.AdamW), got -0.1"},
        {"--adam-beta2 1", "--adam-beta2 must be in [0, 1) (torch.optim.AdamW), got 1.0"},
        {"--adam-epsilon -1", "--adam-epsilon must be >= 0 (torch.optim.AdamW), got -1.0"},
        {"--weight-decay -0.01", "--weight-decay must be >= 0 (torch.optim.AdamW), got -0.01"},
        {"--learning-rate -1e-3", "--learning-rate must be a positive number, got -0.001"},
        {"--warmup-ratio 1.5", "--warmup-ratio must be in [0, 1], got 1.5"},
        {"--num-train-epochs -2 --max-steps 4", "--num-train-epochs must be >= 0, got -2.0"},
        {"--lora-dropout 1", "--lora-dropout must be in [0, 1), got 1.0"},
        {"--validation-split 1", "--validation-split must be in [0, 1), got 1.0"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int rc = run_cmdf(out, sizeof out, "%s train --model $CPT/none --data $CPT/none.json --output-dir $CPT/tn %s", bin(), cases[k][0]);
        CHECK(rc == 2 && strstr(out, cases[k][1]), "%s: rc %d, expected \"%s\": %s", cases[k][0], rc, cases[k][1], out);
    }
    CHECK(run_cmdf(out, sizeof out, "ls -d $CPT/tn") != 0, "a rejected run created its output directory");
}

int main(void) {
    char tmp[] = "/tmp/cpeft-cli-XXXXXX";
    if (!mkdtemp(tmp)) { perror("mkdtemp"); return 1; }
    setenv("CPT", tmp, 1);
    RUN(eval_token_ids_matches_transformers);
    RUN(eval_text_through_gpt2_tokenizer_matches_transformers);
    RUN(info_json_and_tree);
    RUN(info_llama_biases_and_sliding_layers);
    RUN(bad_input_exit_status_and_message);
    RUN(lora_commands);
    RUN(train_is_deterministic_and_resumes_exactly);
    RUN(train_resumes_exactly_with_bf16_biases_and_copies);
    RUN(train_stops_cleanly);
    RUN(train_peft_config_in_inference_mode_trains);
    RUN(train_stops_on_sigterm_and_sighup);
    RUN(train_output_dir_one_run_no_silent_reuse);
    RUN(train_reads_compressed_data_and_refuses_binary);
    RUN(train_rejects_what_adamw_and_training_arguments_reject);
    char out[256];
    run_cmdf(out, sizeof out, "rm -rf %s", tmp);
    return test_summary();
}
