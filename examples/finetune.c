/*
 * finetune.c — LoRA fine-tuning from a C program, with nothing but <cpeft.h>:
 *
 *   finetune MODEL_DIR TEXT_FILE OUT_DIR [STEPS [PROMPT]]
 *
 * loads a Hugging Face model directory (config.json, model.safetensors, tokenizer.json), attaches a
 * LoRA adapter, trains it for STEPS optimizer steps (default 10) on a plain-text file with the trainer
 * API, reporting progress and evaluations through callbacks, generates a short greedy continuation of
 * PROMPT with the trained adapter, and saves the adapter to OUT_DIR as PEFT saves it (load it in
 * Python with PeftModel.from_pretrained(model, OUT_DIR)). Ctrl-C stops training after the step under
 * way (cp_trainer_request_stop is async-signal-safe); the rest then runs as usual.
 *
 * Built by `make` as build/examples/finetune against build/libcpeft.so, compiled with only include/
 * on the include path; tests/unit/test_example.c runs it on a tiny GPT-2 and checks what it prints and
 * saves.
 */
#define _POSIX_C_SOURCE 200809L
#include <cpeft.h>

#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic(cp_trainer *) running; /* for the SIGINT handler (a lock-free atomic: safe to read there) */

static void on_sigint(int sig) {
    (void)sig;
    cp_trainer *t = atomic_load(&running);
    if (t) cp_trainer_request_stop(t);
}

/* Every optimizer step: "step N/M | loss X | lr Y | Z tokens/s". */
static int on_step(void *user, const cp_train_progress *p) {
    (void)user;
    printf("step %lld/%lld | loss %.4f | lr %.3e | %.0f tokens/s\n", (long long)p->step, (long long)p->total_steps, p->loss,
           p->learning_rate, p->tokens_per_second);
    return isfinite(p->loss) ? 0 : 1; /* nonzero ends the run with an error */
}

/* Before the first step and after the last: the loss on the held-out text. */
static int on_evaluate(void *user, const cp_train_eval *e) {
    (void)user;
    printf("step %lld/%lld | eval loss %.4f\n", (long long)e->step, (long long)e->total_steps, e->loss);
    return 0;
}

static int fail(const char *what) {
    fprintf(stderr, "finetune: %s: %s\n", what, cp_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: finetune MODEL_DIR TEXT_FILE OUT_DIR [STEPS [PROMPT]]\n");
        return 2;
    }
    const char *model_dir = argv[1], *text = argv[2], *out_dir = argv[3];
    const long steps = argc > 4 ? atol(argv[4]) : 10;
    const char *prompt = argc > 5 ? argv[5] : "First Citizen:\n";
    /* the library this program runs with must have the ABI it was compiled against */
    if (cp_abi_version() != CPEFT_ABI_VERSION) {
        fprintf(stderr, "finetune: built for cpeft ABI %d, running with %d\n", CPEFT_ABI_VERSION, cp_abi_version());
        return 1;
    }
    printf("cpeft %s (ABI %d)\n", cp_version(), cp_abi_version());

    cp_model *m = NULL;
    cp_tokenizer *tok = NULL;
    if (cp_model_load(&m, model_dir, CP_LOAD_WEIGHTS) != CP_OK) return fail(model_dir);
    if (cp_tokenizer_load_dir(&tok, model_dir) != CP_OK) return fail(model_dir);
    printf("model: %s, %lld layers, hidden size %lld, vocabulary %lld\n", cp_model_type(m), (long long)cp_model_num_layers(m),
           (long long)cp_model_hidden_size(m), (long long)cp_model_vocab_size(m));

    /* LoRA on PEFT's default target modules for the model type (c_attn for GPT-2) */
    cp_lora_options lora;
    cp_lora_options_init(&lora);
    lora.r = 8;
    lora.alpha = 16;
    lora.dropout = 0.0;
    if (cp_model_add_lora_adapter(m, "default", &lora, 42) != CP_OK) return fail("adding the adapter");
    char *line = cp_model_trainable_parameters_line(m, CP_PEFT_LINE_CURRENT);
    printf("%s\n", line ? line : "?");
    free(line);

    /* train: the trainer finds the adapter by name ("default") and trains it as it is */
    cp_train_options o;
    cp_train_options_init(&o);
    o.data_path = text;                  /* plain text: one token stream cut into blocks */
    o.validation_split = 0.2;            /* a fifth of the blocks held out for the eval loss */
    o.max_seq_length = 32;
    o.per_device_train_batch_size = 2;
    o.max_steps = steps;
    o.learning_rate = 2e-2;
    o.warmup_steps = 0;
    o.logging_steps = 1;
    o.eval_steps = 0;                    /* evaluate once at the end (and once before the start) */
    o.output_dir = NULL;                 /* no checkpoints: this program saves the adapter itself */
    o.callbacks.on_step = on_step;
    o.callbacks.on_evaluate = on_evaluate;
    cp_trainer *t = NULL;
    if (cp_trainer_create(&t, m, tok, &o) != CP_OK) return fail("setting up training");
    cp_trainer_info info;
    cp_trainer_get_info(t, &info);
    printf("data: %lld training blocks, %lld held out, %lld steps\n", (long long)info.train_examples, (long long)info.eval_examples,
           (long long)info.total_steps);
    atomic_store(&running, t);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    cp_status st = cp_trainer_run(t);
    signal(SIGINT, SIG_DFL);
    atomic_store(&running, NULL);
    cp_trainer_get_info(t, &info);
    cp_trainer_free(t); /* the model keeps the trained adapter */
    if (st != CP_OK) return fail("training");
    if (info.stopped) printf("stopped after step %lld\n", (long long)info.step);

    /* generate a short greedy continuation with the trained adapter */
    cp_encoding enc = {0};
    if (cp_tokenizer_encode(tok, prompt, strlen(prompt), 1, &enc) != CP_OK) return fail("encoding the prompt");
    cp_generate_options g;
    if (cp_generate_options_init(m, &g) != CP_OK) return fail("generation options");
    g.max_new_tokens = 12;
    const int32_t *prompts[1] = {enc.ids};
    const int64_t lens[1] = {(int64_t)enc.n};
    cp_generation gen = {0};
    if (cp_model_generate(m, prompts, lens, 1, &g, &gen) != CP_OK) return fail("generating");
    char *decoded = NULL;
    size_t decoded_len = 0;
    if (cp_tokenizer_decode(tok, gen.tokens[0], (size_t)gen.n_tokens[0], 1, &decoded, &decoded_len) != CP_OK) return fail("decoding");
    printf("generated ids:");
    for (int64_t i = 0; i < gen.n_tokens[0]; i++) printf(" %d", gen.tokens[0][i]);
    printf("\ngenerated text: %.*s\n", (int)decoded_len, decoded);
    free(decoded);
    cp_generation_free(&gen);
    cp_encoding_free(&enc);

    /* save_pretrained: OUT_DIR/adapter_config.json + OUT_DIR/adapter_model.safetensors */
    if (cp_model_save_adapter(m, "default", out_dir) != CP_OK) return fail(out_dir);
    printf("saved the adapter to %s\n", out_dir);
    cp_tokenizer_free(tok);
    cp_model_free(m);
    return 0;
}
