/*
 * test_prompt_cli.c — prompt tuning, p-tuning and prefix tuning through the `cpeft` program (run as
 * $CPEFT_BIN) and their bad input:
 *   - `cpeft train --peft-type ...` with the config flags trains and saves a PEFT adapter that eval,
 *     generate and info read; TEXT init reads the model's tokenizer; a run resumed from a checkpoint
 *     ends with the same adapter, byte for byte (the encoder's parameters travel in the checkpoint);
 *   - SEQ_CLS training with prefix tuning, and `cpeft predict` with the adapter it saved;
 *   - prefix tuning with --gradient-checkpointing is refused with PEFT's reason, and merging a prompt
 *     adapter is refused;
 *   - flags of another method, a missing --num-virtual-tokens, num_virtual_tokens <= 0, TEXT init
 *     without a tokenizer or with an empty text, adapter files whose virtual-token count or width
 *     disagrees with their config, two prompt adapters active at once, a prompt adapter beside a
 *     LoRA one, and a prompt adapter loaded trainable: errors naming the field or tensor and the values.
 */
#include "test.h"
#include "run_cmd.h"
#include "cpeft.h"
#include "core/alloc.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "models/model.h"
#include "peft/adapter_io.h"
#include "peft/peft_config.h"
#include "peft/peft_model.h"

#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *bin(void) {
    const char *b = getenv("CPEFT_BIN");
    return b ? b : "build/cpeft";
}

static char out[1 << 16];

#define run(...) run_cmdf(out, sizeof out, __VA_ARGS__)

static char tmp[64], model[128], data[128];

/* A training model directory: gpt2_tiny with the character tokenizer of its 97 ids, and a text file. */
static void setup(void) {
    snprintf(tmp, sizeof tmp, "/tmp/cpeft-prompt-cli-XXXXXX");
    CHECK(mkdtemp(tmp) != NULL, "mkdtemp");
    snprintf(model, sizeof model, "%s/model", tmp);
    snprintf(data, sizeof data, "%s/data.txt", tmp);
    CHECK(run("mkdir -p %s && cp tests/fixtures/models/gpt2_tiny/* tests/fixtures/generate/char_tokenizer/* %s", model, model) == 0,
          "copy: %s", out);
    FILE *f = fopen(data, "w");
    const char *lines[] = {"the cat sat on the mat", "a dog ran in the park", "birds sing at dawn", "rain falls on the roof"};
    for (int i = 0; f && i < 160; i++) fprintf(f, "%s\n", lines[(i * 7 + i / 3) % 4]);
    if (f) fclose(f);
}

#define TRAIN "%s train --model %s --data %s --max-steps 4 --per-device-train-batch-size 4 --learning-rate 0.01 --progress lines"

TEST(train_eval_generate_prompt_tuning_text) {
    char dir[200];
    snprintf(dir, sizeof dir, "%s/pt", tmp);
    int rc = run(TRAIN " --output-dir %s --peft-type PROMPT_TUNING --num-virtual-tokens 5 --prompt-tuning-init TEXT "
                       "--prompt-tuning-init-text \"the cat\"", bin(), model, data, dir);
    CHECK(rc == 0, "train: exit %d:\n%s", rc, out);
    CHECK(strstr(out, "trainable params: 160 ||"), "train prints PEFT's count (5 x 32):\n%s", out);
    char path[300];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    cJSON *cfg = NULL;
    CHECK_OK(cp_json_read_file(path, &cfg));
    if (cfg) {
        CHECK(!strcmp(cJSON_GetObjectItem(cfg, "peft_type")->valuestring, "PROMPT_TUNING") &&
                  !strcmp(cJSON_GetObjectItem(cfg, "prompt_tuning_init")->valuestring, "TEXT") &&
                  !strcmp(cJSON_GetObjectItem(cfg, "tokenizer_name_or_path")->valuestring, model) &&
                  cJSON_GetObjectItem(cfg, "num_virtual_tokens")->valuedouble == 5,
              "saved config:\n%s", cJSON_Print(cfg));
        cJSON_Delete(cfg);
    }
    rc = run("%s eval --model %s --adapter %s --data %s", bin(), model, dir, data);
    CHECK(rc == 0 && strstr(out, "loss:"), "eval with the adapter: exit %d:\n%s", rc, out);
    rc = run("%s generate --model %s --adapter %s --prompt \"the cat\" --prompt \"a\" --max-new-tokens 5", bin(), model, dir);
    CHECK(rc == 0, "generate with the adapter: exit %d:\n%s", rc, out);
    rc = run("%s info %s --adapter %s --peft-format current", bin(), model, dir);
    CHECK(rc == 0 && strstr(out, "trainable params: 160 || all params: 30,784"), "info --adapter: exit %d:\n%s", rc, out);
    rc = run("%s merge --model %s --adapter %s --out %s/merged", bin(), model, dir, tmp);
    CHECK(rc != 0 && strstr(out, "cannot be merged"), "merge of a prompt adapter: exit %d:\n%s", rc, out);
}

TEST(p_tuning_lstm_resumes_exactly) {
    char a[200], b[200], pa[300], pb[300];
    snprintf(a, sizeof a, "%s/lstm_a", tmp);
    snprintf(b, sizeof b, "%s/lstm_b", tmp);
    const char *flags = "--peft-type P_TUNING --num-virtual-tokens 3 --encoder-reparameterization-type LSTM "
                        "--encoder-hidden-size 8 --save-steps 2";
    int rc = run(TRAIN " --output-dir %s %s", bin(), model, data, a, flags);
    CHECK(rc == 0, "train: exit %d:\n%s", rc, out);
    CHECK(strstr(out, "trainable params: 5264 ||"), "LSTM encoder counted:\n%s", out);
    /* the same run stopped after its checkpoint-2 and resumed from it */
    rc = run("%s train --model %s --data %s --max-steps 2 --per-device-train-batch-size 4 --learning-rate 0.01 --progress lines "
             "--output-dir %s %s && rm -f %s/adapter %s/adapter_config.json %s/adapter_model.safetensors && rm -rf %s/adapter-step-2",
             bin(), model, data, b, flags, b, b, b, b);
    CHECK(rc == 0, "short run: exit %d:\n%s", rc, out);
    rc = run(TRAIN " --output-dir %s %s --resume-from-checkpoint %s/checkpoint-2 --overwrite-output-dir", bin(), model, data, b, flags, a);
    CHECK(rc == 0 && strstr(out, "resumed from"), "resume: exit %d:\n%s", rc, out);
    snprintf(pa, sizeof pa, "%s/adapter_model.safetensors", a);
    snprintf(pb, sizeof pb, "%s/adapter_model.safetensors", b);
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    CHECK_OK(cp_read_file(pa, &x, &nx));
    CHECK_OK(cp_read_file(pb, &y, &ny));
    CHECK(x && y && nx == ny && !memcmp(x, y, nx), "the resumed run's adapter differs from the uninterrupted run's");
    cp_free(x);
    cp_free(y);
}

TEST(refusals_and_usage_errors) {
    char dir[200];
    snprintf(dir, sizeof dir, "%s/bad", tmp);
    int rc = run(TRAIN " --output-dir %s --peft-type PREFIX_TUNING --num-virtual-tokens 3 --gradient-checkpointing", bin(), model, data, dir);
    CHECK(rc == 1 && strstr(out, "PREFIX_TUNING does not work with gradient checkpointing") && strstr(out, "past_key_values"),
          "prefix tuning with gradient checkpointing: exit %d:\n%s", rc, out);
    struct { const char *flags, *error; int rc; } cases[] = {
        {"--peft-type PROMPT_TUNING", "--peft-type PROMPT_TUNING needs --num-virtual-tokens N", 2},
        {"--peft-type PROMPT_TUNING --num-virtual-tokens 3 --prefix-projection", "--prefix-projection does not apply to --peft-type PROMPT_TUNING", 2},
        {"--peft-type P_TUNING --num-virtual-tokens 3 --prompt-tuning-init TEXT", "--prompt-tuning-init does not apply to --peft-type P_TUNING", 2},
        {"--num-virtual-tokens 3", "--num-virtual-tokens needs --peft-type", 2},
        {"--peft-type ADALORA --num-virtual-tokens 3", "--peft-type \"ADALORA\": expected", 2},
        {"--peft-type PROMPT_TUNING --num-virtual-tokens 0", "num_virtual_tokens is 0, expected at least 1", 1},
        {"--peft-type PREFIX_TUNING --num-virtual-tokens -4", "num_virtual_tokens is -4, expected at least 1", 1},
        {"--peft-type PROMPT_TUNING --num-virtual-tokens 3 --prompt-tuning-init TEXT", "prompt_tuning_init_text can't be None", 1},
        {"--peft-type PROMPT_TUNING --num-virtual-tokens 3 --prompt-tuning-init TEXT --prompt-tuning-init-text \"\"",
         "prompt_tuning_init_text is empty", 1},
        {"--peft-type PROMPT_TUNING --num-virtual-tokens 3 --prompt-tuning-init WORDS", "\"WORDS\" is not one of \"RANDOM\", \"TEXT\", \"SAMPLE_VOCAB\"", 1},
        {"--peft-type P_TUNING --num-virtual-tokens 3 --encoder-reparameterization-type GRU", "\"GRU\" is not one of \"MLP\", \"LSTM\"", 1},
        {"--peft-type PROMPT_TUNING --num-virtual-tokens 3 --max-seq-length 64",
         "--max-seq-length 64 and the adapter's 3 virtual tokens exceed the model's 64 positions (at most --max-seq-length 61)", 1},
        {"--peft-type PREFIX_TUNING --num-virtual-tokens 63", "63 virtual tokens leave no room for the data in the model's 64 positions", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rc = run(TRAIN " --output-dir %s/bad%zu %s", bin(), model, data, tmp, i, cases[i].flags);
        CHECK(rc == cases[i].rc && strstr(out, cases[i].error), "%s: exit %d (expected %d and \"%s\"):\n%s", cases[i].flags, rc,
              cases[i].rc, cases[i].error, out);
    }
}

/* Writes `json` as DIR/adapter_config.json beside a copy of PEFT's adapter_model.safetensors of `fixture`. */
static void adapter_with_config(const char *dir, const char *fixture, const char *json) {
    CHECK(run("rm -rf %s && mkdir -p %s && cp tests/fixtures/prompt_methods/%s/adapter/adapter_model.safetensors %s/", dir, dir,
              fixture, dir) == 0, "%s", out);
    char path[300];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "w");
    if (f) { fputs(json, f); fclose(f); }
}

TEST(bad_configs_and_files_name_the_field) {
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, "tests/fixtures/models/gpt2_tiny", CP_LOAD_WEIGHTS));
    if (!m) return;
    char dir[200], cfg[300];
    snprintf(dir, sizeof dir, "%s/files", tmp);
    /* PEFT's file holds 3 x 32 (gpt2_pt) and 3 x 2·2·32 (gpt2_prefix) */
    adapter_with_config(dir, "gpt2_pt", "{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 5, \"task_type\": \"CAUSAL_LM\"}");
    CHECK_ERR(cp_adapter_load(m, dir, "x", 1, 0), "tensor \"prompt_embeddings\" has 3 rows, but num_virtual_tokens = 5");
    adapter_with_config(dir, "gpt2_pt", "{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 3, \"token_dim\": 16}");
    CHECK_ERR(cp_adapter_load(m, dir, "x", 1, 0), "tensor \"prompt_embeddings\" is 32 wide, but token_dim = 16");
    adapter_with_config(dir, "gpt2_prefix", "{\"peft_type\": \"PREFIX_TUNING\", \"num_virtual_tokens\": 3, \"num_layers\": 3}");
    CHECK_ERR(cp_adapter_load(m, dir, "x", 1, 0), "is 128 wide, but num_layers = 3 and token_dim = 32 in adapter_config.json make "
                                                   "num_layers x 2 x token_dim = 192");
    adapter_with_config(dir, "gpt2_pt", "{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 3}");
    CHECK_ERR(cp_adapter_load(m, dir, "x", 1, 1), "Cannot set a prompt learning adapter to trainable when loading pretrained adapter");
    /* a config that does not fit the model it is put on */
    snprintf(cfg, sizeof cfg, "%s/cfg.json", tmp);
    const struct { const char *json, *error; } bad[] = {
        {"{\"peft_type\": \"PROMPT_TUNING\"}", "num_virtual_tokens is null"},
        {"{\"peft_type\": \"P_TUNING\", \"num_virtual_tokens\": 0}", "num_virtual_tokens is 0, expected at least 1"},
        {"{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 2, \"prompt_tuning_init\": \"TEXT\", \"prompt_tuning_init_text\": \"hi\"}",
         "When prompt_tuning_init='TEXT', tokenizer_name_or_path can't be None."},
        {"{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 2, \"prompt_tuning_init\": \"TEXT\", \"tokenizer_name_or_path\": \"x\"}",
         "When prompt_tuning_init='TEXT', prompt_tuning_init_text can't be None."},
        {"{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 2, \"tokenizer_kwargs\": {\"use_fast\": true}}",
         "tokenizer_kwargs only valid when using prompt_tuning_init='TEXT'."},
        {"{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 2, \"token_dim\": 48}", "token_dim is 48 in the PROMPT_TUNING config, but the width of the model's word embeddings is 32"},
        {"{\"peft_type\": \"PREFIX_TUNING\", \"num_virtual_tokens\": 2, \"num_layers\": 5}", "num_layers is 5 in the PREFIX_TUNING config, but the model's layers is 2"},
        {"{\"peft_type\": \"PREFIX_TUNING\", \"num_virtual_tokens\": 2, \"num_transformer_submodules\": 2}", "num_transformer_submodules is 2"},
        {"{\"peft_type\": \"P_TUNING\", \"num_virtual_tokens\": 2, \"encoder_reparameterization_type\": \"LSTM\", \"encoder_num_layers\": 9}",
         "encoder_num_layers is 9, expected 1 to 7"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        FILE *f = fopen(cfg, "w");
        if (f) { fputs(bad[i].json, f); fclose(f); }
        CHECK_ERR(cp_model_add_adapter(m, "x", cfg, 0), bad[i].error);
    }
    cp_model_free(m);
}

/* SAMPLE_VOCAB init: every row of the table is a row of the word embeddings (PEFT draws the ids with
 * torch.randint; cpeft from its own stream). A TEXT init whose tokenizer cannot be read names the field. */
TEST(sample_vocab_and_text_init) {
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, "tests/fixtures/models/gpt2_tiny", CP_LOAD_WEIGHTS));
    if (!m) return;
    char cfg[300];
    snprintf(cfg, sizeof cfg, "%s/sample.json", tmp);
    FILE *f = fopen(cfg, "w");
    if (f) { fputs("{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 6, \"prompt_tuning_init\": \"SAMPLE_VOCAB\"}", f); fclose(f); }
    CHECK_OK(cp_model_add_adapter(m, "s", cfg, 3));
    cp_module **mods = NULL;
    int nm = 0;
    CHECK_OK(cp_peft_adapter_modules(m, "s", &mods, &nm));
    if (nm == 1) {
        cp_peft_tensor t[CP_PEFT_MAX_TENSORS];
        const int n = cp_peft_find_adapter(m, "s")->config->method->tensors(mods[0], "s", t);
        const cp_param *wte = mods[0]->weight, *table = t[0].param;
        CHECK(n == 1 && table->shape[0] == 6 && table->shape[1] == wte->shape[1], "the table is 6 x 32");
        for (int64_t r = 0; n == 1 && r < 6; r++) {
            int found = 0;
            for (int64_t v = 0; v < wte->shape[0] && !found; v++)
                found = !memcmp(table->data + r * 32, wte->data + v * 32, 32 * sizeof(float));
            CHECK(found, "row %lld of the SAMPLE_VOCAB table is no word embedding", (long long)r);
        }
    }
    cp_free(mods);
    f = fopen(cfg, "w");
    if (f) {
        fputs("{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 2, \"prompt_tuning_init\": \"TEXT\", "
              "\"prompt_tuning_init_text\": \"hi\", \"tokenizer_name_or_path\": \"/nonexistent/tokenizer\"}", f);
        fclose(f);
    }
    CHECK_ERR(cp_model_add_adapter(m, "t", cfg, 0), "tokenizer_name_or_path \"/nonexistent/tokenizer\"");
    cp_model_free(m);
}

TEST(one_prompt_adapter_at_a_time) {
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, "tests/fixtures/models/gpt2_tiny", CP_LOAD_WEIGHTS));
    if (!m) return;
    CHECK_OK(cp_adapter_load(m, "tests/fixtures/prompt_methods/gpt2_pt/adapter", "a", 1, 0));
    CHECK_OK(cp_adapter_load(m, "tests/fixtures/prompt_methods/gpt2_pt_text/adapter", "b", 0, 0));
    const char *both[] = {"a", "b"};
    CHECK_ERR(cp_model_set_adapters(m, both, 2), "prompt learning runs one adapter at a time");
    CHECK_OK(cp_model_set_adapters(m, both + 1, 1));
    CHECK(m->prompt && m->prompt->ops->n_virtual(m->prompt) == 5, "adapter b (5 virtual tokens) runs");
    CHECK_ERR(cp_adapter_load(m, "tests/fixtures/prompt_methods/gpt2_prefix/adapter", "c", 0, 0),
              "Cannot combine adapters with different peft types. Found PROMPT_TUNING and PREFIX_TUNING.");
    CHECK_ERR(cp_adapter_load(m, "tests/fixtures/lora/gpt2_default_conv1d", "d", 0, 0), "Cannot combine adapters with different peft types");
    CHECK_OK(cp_model_delete_adapter(m, "b"));
    CHECK(m->prompt && m->prompt->ops->n_virtual(m->prompt) == 3, "deleting the active one activates the other");
    cp_model_disable_adapters(m, 1);
    CHECK(m->prompt == NULL, "disabled: the base model runs");
    cp_model_free(m);
}

/* SEQ_CLS: prefix tuning trained on the tiny BERT classifier, its evaluation at the end equal to predict's
 * with the saved adapter (prompt_embeddings + the classifier's modules_to_save copy). */
TEST(sequence_classification_train_and_predict) {
    char dir[200];
    snprintf(dir, sizeof dir, "%s/cls", tmp);
    int rc = run("%s train --model tests/fixtures/clstrain/tiny_bert --task-type SEQ_CLS --data tests/fixtures/clstrain/data/seq_train.tsv "
                 "--eval-data tests/fixtures/clstrain/data/seq_eval.tsv --output-dir %s --peft-type PREFIX_TUNING --num-virtual-tokens 4 "
                 "--max-steps 4 --learning-rate 0.01 --progress lines", bin(), dir);
    CHECK(rc == 0, "train: exit %d:\n%s", rc, out);
    const char *last = strstr(out, "\neval loss ");
    double train_eval = last ? atof(last + 11) : -1;
    rc = run("%s predict --model tests/fixtures/clstrain/tiny_bert --adapter %s --data tests/fixtures/clstrain/data/seq_eval.tsv", bin(), dir);
    const char *loss = strstr(out, "\"loss\": ");
    CHECK(rc == 0 && loss && fabs(atof(loss + 8) - train_eval) < 1e-4, "predict with the saved adapter: exit %d, eval loss %.6f:\n%s", rc,
          train_eval, out);
}

int main(void) {
    setup();
    RUN(train_eval_generate_prompt_tuning_text);
    RUN(p_tuning_lstm_resumes_exactly);
    RUN(refusals_and_usage_errors);
    RUN(bad_configs_and_files_name_the_field);
    RUN(sample_vocab_and_text_init);
    RUN(one_prompt_adapter_at_a_time);
    RUN(sequence_classification_train_and_predict);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return test_summary();
}
