/*
 * cmd_train.c — `cpeft train`: the public trainer (cp_trainer, include/cpeft.h) driven from the
 * command line. Options are named after Hugging Face TrainingArguments with dashes; the adapter comes from a
 * PEFT adapter_config.json (--peft-config) or from flags: --lora-* for LoRA, or --peft-type with that
 * method's flags (IA3: peft_flags_adapter below; prompt tuning, p-tuning, prefix tuning:
 * peft_type_args.h). Numbers are checked here
 * (cp_train_options_check: a bad value is a usage error, exit 2) before the run starts.
 *
 * What the library leaves to its program is done here: every line printed (the setup summary, the
 * memory plan, progress lines or a live bar, evaluations, checkpoints, the peak memory), the loss
 * curve drawn (loss_curve.png and loss_curve.svg, at every checkpoint and at the end), and SIGINT / SIGTERM / SIGHUP turned
 * into cp_trainer_request_stop, which ends the run after the step under way with a checkpoint; the
 * exit status is then 128 + the signal, as a shell reports a process the signal ended.
 *
 * Under mpirun / srun (train/dist.h, docs/distributed.md) every rank runs this program; rank 0
 * prints and the others' standard output goes to /dev/null. An error every rank learned of together
 * is printed by rank 0; any other error is printed by its rank, with its number, and ends the job.
 */
#include "cli/adapter_args.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/peft_type_args.h"
#include "core/alloc.h"
#include "core/memstat.h"
#include "core/progress.h"
#include "cpeft.h"
#include "io/json.h"
#include "peft/peft_config.h"
#include "peft/peft_model.h"
#include "train/dist.h"
#include "train/plot.h"
#include "train/trainer.h"

#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: cpeft train --model DIR --data FILE --output-dir DIR [options]\n\n"
            "Fine-tuning of a causal LM with LoRA, prompt tuning, p-tuning or prefix tuning. Writes a PEFT\n"
            "adapter (adapter_config.json + adapter_model.safetensors) to --output-dir, checkpoint-N/ every\n"
            "--save-steps, trainer_state.json, metrics.jsonl and loss_curve.png / .svg. SIGINT, SIGTERM and\n"
            "SIGHUP save a checkpoint and exit 130, 143 and 129.\n"
            "Data (README \"Data formats\"): plain text (one stream cut into blocks); JSONL, a JSON array, or\n"
            "CSV / TSV (by the name, header row) of TRL's formats, tokenized as TRL's SFTTrainer does: \"text\",\n"
            "\"prompt\" + \"completion\" (loss on the completion), conversational \"messages\" (rendered with\n"
            "the model's chat template) or \"prompt\" + \"completion\" message lists; or Alpaca records\n"
            "(instruction, input, output). Any of them may be gzip- or zstd-compressed; Parquet and other\n"
            "binary data are refused.\n\n"
            "adapter:\n"
            "  --peft-config FILE              a PEFT adapter_config.json, or:\n"
            "  --target-modules a,b,c          default: PEFT's table for the model type; or all-linear\n"
            "  --modules-to-save a,b\n"
            "  LORA: --lora-r N (8)  --lora-alpha A (16)  --lora-dropout P (0.05)  --bias none|all|lora_only\n"
            "  IA3:  --feedforward-modules a,b  the targets whose input is scaled (default: PEFT's table;\n"
            "                                  each must be one of --target-modules when both are given)\n"
            "%s"
            "training (TrainingArguments):\n"
            "  --learning-rate LR (5e-5)  --num-train-epochs E (3)  --max-steps N (overrides epochs)\n"
            "  --per-device-train-batch-size B (8)  --gradient-accumulation-steps K (1)\n"
            "  --warmup-steps N  --warmup-ratio R  --lr-scheduler-type linear|cosine|constant|constant_with_warmup\n"
            "  --weight-decay W (0)  --max-grad-norm G (1.0)  --adam-beta1 --adam-beta2 --adam-epsilon\n"
            "  --logging-steps N (500)  --eval-steps N  --save-steps N (500)  --seed S (42)\n"
            "  --max-seq-length N (the model's positions, at most 1024)  --gradient-checkpointing\n"
            "  --bf16 (frozen-weight products in bf16 with f32 sums, as torch autocast; AVX-512 BF16)\n"
            "  --quantize q8_0|q4_k            the frozen base quantized at load (QLoRA on a CPU; docs/bf16.md)\n"
            "  --quantize-embeddings yes|no    with --quantize: the frozen token embedding and LM head too\n"
            "                                  (yes, llama.cpp's choice; no: kept 16/32-bit as bitsandbytes does)\n"
            "  --model-dropout on|off (on)     the model's own dropout in training (config.json's\n"
            "                                  hidden_dropout_prob, attn_pdrop, ...), as transformers' train()\n"
            "data:\n"
            "  --eval-data FILE  --validation-split F (hold out a fraction when no eval file)\n"
            "  --text-field NAME (text)  --strict (a malformed record is fatal, not skipped)\n"
            "  --chat-template FILE            a .jinja template (or a tokenizer_config.json) for conversational\n"
            "                                  records instead of the model's\n"
            "  --assistant-only-loss           conversational records: loss only inside the template's\n"
            "                                  {%% generation %%} blocks (the assistant replies), as TRL\n"
            "  --completion-only-loss true|false  prompt-completion records: loss on the completion only (true)\n"
            "classification (encoders; README \"Classification\"):\n"
            "  --task-type CAUSAL_LM|SEQ_CLS|TOKEN_CLS|SEQ_2_SEQ_LM (by default the model's own task)\n"
            "                                  SEQ_CLS: .csv / .tsv (header row) or .jsonl records; TOKEN_CLS:\n"
            "                                  CoNLL (token TAB tag) or .jsonl word lists. Labels are discovered\n"
            "                                  from --data and saved as config.json beside the adapter\n"
            "  --text-field NAME (sentence, else text; tokens)  --text-pair-field NAME  --label-field NAME\n"
            "                                  (label; ner_tags)\n"
            "  --max-train-samples N  --max-eval-samples N   the files' first N records (0: all)\n"
            "sequence-to-sequence (encoder-decoders: t5, mt5; README \"Sequence-to-sequence\"):\n"
            "  --task-type SEQ_2_SEQ_LM        the default for an encoder-decoder model\n"
            "                                  .csv / .tsv (header row) or .jsonl source / target records\n"
            "  --source-field NAME (source)  --target-field NAME (target)   E2E NLG: mr / ref\n"
            "  --source-prefix TEXT            prepended to every source (\"summarize: \")\n"
            "  --max-source-length N (512)  --max-target-length N (128)   longer texts are truncated and\n"
            "                                  counted; with --strict they are an error\n"
            "  --resume-from-checkpoint DIR    continue a run exactly where checkpoint-N left it\n"
            "output:\n"
            "  --overwrite-output-dir          write into an output directory that is not empty (refused\n"
            "                                  otherwise, unless resuming); one run at a time per directory\n"
            "  --progress bar|lines            default: a live bar on a terminal, lines otherwise\n"
            "  --save-total-limit N            keep at most N checkpoint-N/ (the oldest deleted; never the newest\n"
            "                                  nor the best); 0 (the default): all\n"
            "  --metric-for-best-model NAME    the evaluation metric that picks the best checkpoint (loss,\n"
            "                                  accuracy, f1, ...; default loss with --load-best-model-at-end)\n"
            "  --greater-is-better [true|false]  default: false for a name ending in \"loss\", else true\n"
            "  --load-best-model-at-end [true|false]  the final adapter is the best checkpoint's (needs\n"
            "                                  --eval-steps and --save-steps a round multiple of it)\n"
            "  --report-to none|tensorboard|all  TensorBoard event files (train/loss, eval/loss, ...) in\n"
            "                                  --logging-dir (default OUTPUT_DIR/runs/<date>_<host>)\n"
            "data-parallel (docs/distributed.md): mpirun -np N cpeft train ... or srun cpeft train ...; the\n"
            "global batch is N x --per-device-train-batch-size x accumulation; OMP_NUM_THREADS threads per rank;\n"
            "CPEFT_DIST_TIMEOUT seconds (600) before the ranks give up on one that died or hangs\n",
            cli_peft_flags_help);
    fputs(CLI_QUANTIZE_HELP, f);
}

/* ---- signals ------------------------------------------------------------------------------------- */

/* The signals that stop a run after a checkpoint: Ctrl-C, and what docker stop, Kubernetes, Slurm and
 * timeout send (SIGTERM), and a closed terminal (SIGHUP). stop_signal holds the last one received;
 * the handler passes it on to the trainer once there is one (before that, main passes it on). */
static const int stop_signals[3] = {SIGINT, SIGTERM, SIGHUP};
static volatile sig_atomic_t stop_signal;
static _Atomic(cp_trainer *) running;
_Static_assert(ATOMIC_POINTER_LOCK_FREE == 2, "the signal handler reads `running`: it must be lock-free");

static void on_stop_signal(int sig) {
    stop_signal = sig;
    cp_trainer *t = atomic_load(&running);
    if (t) cp_trainer_request_stop(t);
}

static const char *signal_name(int sig) { return sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "SIGINT"; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- what the callbacks print ---------------------------------------------------------------------- */

typedef struct {
    cp_trainer *t;
    const char *output_dir;
    int live;          /* a live progress bar (a terminal, or --progress bar) */
    int classify;      /* SEQ_CLS / TOKEN_CLS: metrics, no perplexity */
    double t_start;    /* the first step's start: the final message's duration */
    char error[4096];  /* a callback's own failure, reported instead of the trainer's message */
} report;

static int on_step(void *user, const cp_train_progress *p) {
    report *r = user;
    if (r->live) {
        char detail[96];
        snprintf(detail, sizeof detail, "loss %.4f  lr %.3e  grad norm %.3f", p->loss, p->learning_rate, p->grad_norm);
        cp_progress_bar(stdout, "step", p->step, p->total_steps, detail, p->eta_seconds);
    }
    return 0;
}

static int on_log(void *user, const cp_train_progress *p) {
    report *r = user;
    char eta[32];
    cp_format_duration(p->eta_seconds, eta, sizeof eta);
    if (r->live) printf("\r");
    printf("step %lld/%lld | loss %.4f | lr %.3e | grad norm %.4f | %.0f tokens/s | ETA %s%s\n", (long long)p->step,
           (long long)p->total_steps, p->loss, p->learning_rate, p->grad_norm, p->tokens_per_second, eta, r->live ? "          " : "");
    fflush(stdout);
    return 0;
}

/* " | accuracy 0.9000 | macro-F1 ..." for the metrics the task has. */
static const char *metrics_text(const cp_train_eval *e, char *buf, size_t n) {
    buf[0] = '\0';
    size_t o = 0;
    const char *names[] = {"accuracy", "macro-F1", "precision", "recall", "F1"};
    const double v[] = {e->accuracy, e->macro_f1, e->precision, e->recall, e->f1};
    for (int k = 0; k < 5 && o < n; k++)
        if (!isnan(v[k])) o += (size_t)snprintf(buf + o, n - o, " | %s %.4f", names[k], v[k]);
    return buf;
}

static int on_evaluate(void *user, const cp_train_eval *e) {
    report *r = user;
    if (r->classify) {
        char m[256];
        metrics_text(e, m, sizeof m);
        if (e->when == CP_EVAL_BEFORE_TRAINING)
            printf("step 0/%lld | eval loss %.4f%s (before training)\n", (long long)e->total_steps, e->loss, m);
        else if (e->when == CP_EVAL_DURING)
            printf("step %lld/%lld | eval loss %.4f%s\n", (long long)e->step, (long long)e->total_steps, e->loss, m);
        else
            printf("eval loss %.4f%s\n", e->loss, m);
        fflush(stdout);
        if (e->when == CP_EVAL_BEFORE_TRAINING) r->t_start = now();
        return 0;
    }
    if (e->when == CP_EVAL_BEFORE_TRAINING)
        printf("step 0/%lld | eval loss %.4f | eval perplexity %.2f (before training)\n", (long long)e->total_steps, e->loss, exp(e->loss));
    else if (e->when == CP_EVAL_DURING)
        printf("step %lld/%lld | eval loss %.4f | eval perplexity %.2f\n", (long long)e->step, (long long)e->total_steps, e->loss,
               exp(e->loss));
    else
        printf("eval loss %.4f | eval perplexity %.2f\n", e->loss, exp(e->loss));
    if (e->when == CP_EVAL_BEFORE_TRAINING) r->t_start = now();
    return 0;
}

/* loss_curve.png and loss_curve.svg beside metrics.jsonl: the logged train losses, the evaluations
 * and the best checkpoint, redrawn at every save. */
static cp_status draw_plot(report *r) {
    cp_train_history h;
    cp_trainer_history(r->t, &h);
    cp_trainer_info in;
    cp_trainer_get_info(r->t, &in);
    cp_plot_data d = {.train_step = h.train_step, .train_loss = h.train_loss, .n_train = (int)h.n_train, .eval_step = h.eval_step,
                      .eval_loss = h.eval_loss, .n_eval = (int)h.n_eval,
                      .best_step = in.best_global_step ? (double)in.best_global_step : NAN, .title = "cpeft train: loss"};
    char png[4096], svg[4096];
    snprintf(png, sizeof png, "%s/loss_curve.png", r->output_dir);
    snprintf(svg, sizeof svg, "%s/loss_curve.svg", r->output_dir);
    return cp_plot_loss_png(png, &d) == CP_OK && cp_plot_loss_svg(svg, &d) == CP_OK ? CP_OK : CP_ERR;
}

static int on_save(void *user, const cp_train_save *s) {
    report *r = user;
    if (draw_plot(r) != CP_OK) {
        if (s->kind == CP_SAVE_CHECKPOINT)
            snprintf(r->error, sizeof r->error, "saving %s (the previous checkpoint is intact): %s", s->dir, cp_last_error());
        else
            snprintf(r->error, sizeof r->error, "%s", cp_last_error());
        return 1;
    }
    if (s->kind == CP_SAVE_CHECKPOINT) {
        printf("saved checkpoint-%lld\n", (long long)s->step);
    } else {
        const char *name = strrchr(s->dir, '/');
        printf("saved the adapter to %s (adapter_config.json and adapter_model.safetensors, linked to %s/; trainer_state.json, "
               "metrics.jsonl, loss_curve.png / .svg) in %.1f s\n", r->output_dir, name ? name + 1 : s->dir, now() - r->t_start);
    }
    return 0;
}

/* ---- the setup summary and the memory plan ----------------------------------------------------------- */

static void print_setup(const cp_trainer_info *in, const cp_train_options *o) {
    if (in->output_files_cleaned)
        printf("output: removed %d unfinished file%s left by an earlier run that was killed\n", in->output_files_cleaned,
               in->output_files_cleaned == 1 ? "" : "s");
    if (in->pad_is_eos)
        printf("pad token: not set in the tokenizer; padding with the eos token (id %d), which never enters the loss\n", in->pad_token_id);
    printf("data: %lld training examples (%lld tokens, %lld with loss)", (long long)in->train_examples, (long long)in->train_tokens,
           (long long)in->train_loss_tokens);
    if (in->max_source_length) { /* SEQ_2_SEQ_LM: sources and targets */
        if (in->train_truncated)
            printf(", %lld sources truncated to --max-source-length %lld", (long long)in->train_truncated, (long long)in->max_source_length);
        if (in->train_target_truncated)
            printf(", %lld targets truncated to --max-target-length %lld", (long long)in->train_target_truncated,
                   (long long)in->max_target_length);
    } else if (in->train_truncated) {
        printf(", %lld truncated to --max-seq-length %lld", (long long)in->train_truncated, (long long)in->max_seq_length);
    }
    if (in->train_skipped) printf(", %lld malformed records skipped", (long long)in->train_skipped);
    printf("\n");
    if (in->eval_examples) {
        printf("      %lld evaluation examples", (long long)in->eval_examples);
        if (in->max_source_length && o->eval_data_path && (in->eval_truncated || in->eval_target_truncated))
            printf(", %lld sources and %lld targets truncated", (long long)in->eval_truncated, (long long)in->eval_target_truncated);
        else if (o->eval_data_path && in->eval_truncated)
            printf(", %lld truncated to --max-seq-length %lld", (long long)in->eval_truncated, (long long)in->max_seq_length);
        printf("\n");
    }
}

/* The plan as the trainer measures it, plus the working memory of the loss plot this program draws at
 * every save; returns the total (0 when no plan could be made). */
static double print_plan(const cp_train_memory_plan *p, int checkpointing) {
    char b1[32], b2[32], b3[32], b4[32];
    const double plot = (double)cp_plot_peak_bytes(), rest = p->other_bytes;
    double total = p->total_bytes + (rest >= 0 ? plot : 0);
    printf("memory plan (batch %lld x %lld tokens):\n", (long long)p->batch_size, (long long)p->seq_len);
    printf("  frozen weights        %12s  (%s memory-mapped from the checkpoint, shared with the page cache)\n",
           cp_format_bytes(p->frozen_bytes, b1, sizeof b1), cp_format_bytes(p->mapped_bytes, b2, sizeof b2));
    printf("  trainable parameters  %12s  (%lld values)\n", cp_format_bytes(p->trainable_bytes, b1, sizeof b1),
           (long long)p->trainable_values);
    printf("  gradients             %12s\n", b1);
    printf("  optimizer state       %12s  (AdamW exp_avg + exp_avg_sq)\n", cp_format_bytes(p->optimizer_bytes, b2, sizeof b2));
    printf("  activations           %12s  (measured: a training forward + backward of the longest batch)\n",
           cp_format_bytes(p->activation_bytes, b3, sizeof b3));
    if (checkpointing)
        printf("                                      --gradient-checkpointing saves %s (without it: about %s, measured on 2 and 3 "
               "layers)\n",
               cp_format_bytes(p->activation_bytes_without_checkpointing - p->activation_bytes, b1, sizeof b1),
               cp_format_bytes(p->activation_bytes_without_checkpointing, b2, sizeof b2));
    printf("  loss curve            %12s  (cairo and its libraries, fonts, the image: loaded at the first save)\n",
           cp_format_bytes(plot, b2, sizeof b2));
    if (rest >= 0)
        printf("  program and data      %12s  (measured: code, libraries, tokenizer, dataset, BLAS buffers)\n",
               cp_format_bytes(rest, b4, sizeof b4));
    else
        printf("  program and data      %12s  (not measured on this system; not in the total)\n", "?");
    printf("  total                 %12s  (the peak resident memory to expect)\n", cp_format_bytes(total, b1, sizeof b1));
    return total;
}

/* The run's peak resident memory beside the plan, so that the plan can be checked. */
static void print_peak(double plan_bytes) {
    size_t peak = cp_mem_peak();
    if (!peak || !(plan_bytes > 0)) return;
    char b1[32], b2[32];
    printf("peak memory: %s resident (plan %s, %+.1f%%)\n", cp_format_bytes((double)peak, b1, sizeof b1),
           cp_format_bytes(plan_bytes, b2, sizeof b2), 100.0 * ((double)peak - plan_bytes) / plan_bytes);
}

/* The processes line: ranks × threads, and under MPI the global batch and the all-reduce's size. */
static void print_processes(const cp_train_options *o, const cp_model *m) {
    const int N = cp_dist_size();
    if (N == 1) {
        printf("processes: 1 x %d thread%s\n", omp_get_max_threads(), omp_get_max_threads() == 1 ? "" : "s");
        return;
    }
    int64_t values = 0;
    cp_param **params = NULL;
    int n = 0;
    if (cp_peft_trainable_params((cp_model *)m, &params, &n) == CP_OK)
        for (int i = 0; i < n; i++) values += params[i]->numel;
    cp_free(params);
    char b[32];
    printf("processes: %d ranks x %d thread%s (%s); global batch %d x %lld x %lld accumulation = %lld sequences per step; "
           "all-reduce of %s of gradients per step\n", N, omp_get_max_threads(), omp_get_max_threads() == 1 ? "" : "s",
           cp_dist_backend(), N, (long long)o->per_device_train_batch_size, (long long)o->gradient_accumulation_steps,
           (long long)(N * o->per_device_train_batch_size * o->gradient_accumulation_steps),
           cp_format_bytes((double)values * 4.0, b, sizeof b));
}

/* The gradient all-reduce's share of the run (MPI), for the measurements of docs/distributed.md. */
static void print_reduce_stats(void) {
    cp_dist_stats s;
    cp_dist_get_stats(&s);
    if (!s.reductions) return;
    char b[32];
    printf("all-reduce: %lld steps, %s each, %.3f ms per step on average", (long long)s.reductions,
           cp_format_bytes((double)s.bytes, b, sizeof b), 1e3 * s.seconds / (double)s.reductions);
    if (s.wait_seconds > 0) printf(" (+ %.3f ms waiting for the slowest rank)", 1e3 * s.wait_seconds / (double)s.reductions);
    printf("\n");
}

/* ---- an adapter of another method, from flags ------------------------------------------------------------ */

/* --peft-type and the flags of the methods other than LoRA (LoRA's go to cp_train_options.lora). */
typedef struct {
    const char *peft_type;           /* NULL or "LORA": the trainer makes a LoRA adapter from --lora-* */
    const char *feedforward_modules; /* IA3 */
    int lora_flags;                  /* a --lora-* or --bias flag was given */
} peft_flags;

static cJSON *name_list(const char *csv) {
    cJSON *arr = cJSON_CreateArray();
    for (const char *p = csv; arr && p && *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n) {
            char *name = malloc(n + 1);
            if (name) { memcpy(name, p, n); name[n] = '\0'; cJSON_AddItemToArray(arr, cJSON_CreateString(name)); }
            free(name);
        }
        p = e ? e + 1 : NULL;
    }
    return arr;
}

/* The adapter of a --peft-type other than LORA: adapter_config.json's object made from the flags and read
 * by the method's own parser (its checks, its errors), attached as "default" and trained as it is by the
 * trainer. With --resume-from-checkpoint the checkpoint's adapter is used instead. */
static cp_status flags_config(const peft_flags *f, const cp_train_options *o, const char *task_type, cp_peft_config **cfg) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return cp_error("out of memory");
    cJSON_AddStringToObject(root, "peft_type", f->peft_type);
    if (task_type) cJSON_AddStringToObject(root, "task_type", task_type);
    if (o->lora.target_modules)
        cJSON_AddItemToObject(root, "target_modules", !strcasecmp(o->lora.target_modules, "all-linear")
                                                          ? cJSON_CreateString("all-linear") : name_list(o->lora.target_modules));
    if (o->lora.modules_to_save) cJSON_AddItemToObject(root, "modules_to_save", name_list(o->lora.modules_to_save));
    if (!strcmp(f->peft_type, "IA3") && f->feedforward_modules)
        cJSON_AddItemToObject(root, "feedforward_modules", name_list(f->feedforward_modules));
    cp_status st = cp_peft_config_from_json(root, "the command line", cfg);
    cJSON_Delete(root);
    return st;
}

static cp_status peft_flags_adapter(cp_model *m, const peft_flags *f, const cp_train_options *o) {
    if (!f->peft_type || strcmp(f->peft_type, "IA3") || o->resume_from) return CP_OK; /* prompt types: cli_peft_add */
    cp_peft_config *cfg = NULL;
    cp_status st = flags_config(f, o, cp_model_task_type(m), &cfg);
    if (st == CP_OK) {
        cfg->inference_mode = 0;
        cp_rng rng;
        cp_rng_seed(&rng, cp_trainer_mix((uint64_t)o->seed, 0x1a2b)); /* the trainer's seed for a new adapter */
        st = cp_peft_add(m, o->adapter_name ? o->adapter_name : "default", cfg, &rng, 1, 1);
    }
    cp_peft_config_free(cfg);
    return st;
}

/* The flags that belong to another --peft-type, refused by name. */
static int check_peft_flags(const peft_flags *f, const cp_train_options *o) {
    /* the type's spelling, --peft-config beside it and the prompt-learning flags: cli_peft_flags_check */
    const char *type = f->peft_type ? f->peft_type : "LORA";
    if (strcmp(type, "LORA") && f->lora_flags) {
        fprintf(stderr, "cpeft train: --lora-r, --lora-alpha, --lora-dropout and --bias are LoRA's; --peft-type is %s\n", type);
        return 2;
    }
    if (strcmp(type, "IA3") && f->feedforward_modules) {
        fprintf(stderr, "cpeft train: --feedforward-modules is IA3's; --peft-type is %s\n", type);
        return 2;
    }
    cp_peft_config *cfg = NULL; /* the method's own checks of its flags, before anything is loaded */
    if (!strcmp(type, "IA3") && flags_config(f, o, NULL, &cfg) != CP_OK) {
        fprintf(stderr, "cpeft train: %s\n", cp_last_error());
        return 2;
    }
    cp_peft_config_free(cfg);
    return 0;
}

/* ---- the run ----------------------------------------------------------------------------------------- */

static int quantize_flags; /* --quantize: CP_LOAD_QUANTIZE_* */
static int keep_embeddings; /* --quantize-embeddings no: CP_LOAD_QUANTIZE_KEEP_EMBEDDINGS */

/* Model, tokenizer and trainer; every line the run prints; 0, 1 (an error, reported) or 128 + a signal. */
static int train(const char *model_dir, cp_train_options *o, int progress, const cli_peft_flags *peft,
                 const peft_flags *flags) {
    report r;
    memset(&r, 0, sizeof r);
    r.output_dir = o->output_dir;
    r.live = progress == 1 || (progress < 0 && isatty(1));
    o->callbacks = (cp_train_callbacks){.on_step = on_step, .on_log = on_log, .on_evaluate = on_evaluate, .on_save = on_save, .user = &r};
    o->run_name = "cpeft train";
    cp_model *m = NULL;
    cp_tokenizer *tok = NULL;
    r.classify = o->task_type && (!strcmp(o->task_type, "SEQ_CLS") || !strcmp(o->task_type, "TOKEN_CLS"));
    cp_status st = cli_tokenizer_load(&tok, model_dir);
    if (st == CP_OK && r.classify) { /* the head gets the training file's labels, as run_glue.py / run_ner.py build it */
        char **labels = NULL;
        int64_t n = 0;
        const char *problem = NULL;
        st = cp_train_data_labels(tok, o, o->task_type, &labels, &n, &problem);
        if (st == CP_OK) {
            printf("labels: %lld (", (long long)n);
            for (int64_t i = 0; i < n && i < 20; i++) printf("%s%s", i ? ", " : "", labels[i]);
            printf("%s) from %s\n", n > 20 ? ", ..." : "", o->data_path);
            st = cp_model_load_labels(&m, model_dir, CP_LOAD_WEIGHTS | quantize_flags | (keep_embeddings ? CP_LOAD_QUANTIZE_KEEP_EMBEDDINGS : 0), o->task_type, (const char *const *)labels, n, problem);
        }
        cp_train_labels_free(labels, n);
    } else if (st == CP_OK) {
        st = cli_model_load_task(&m, model_dir, CP_LOAD_WEIGHTS | quantize_flags | (keep_embeddings ? CP_LOAD_QUANTIZE_KEEP_EMBEDDINGS : 0), o->task_type);
    }
    /* --peft-type: the adapter the trainer trains as it is (a checkpoint brings its own) */
    if (st == CP_OK && !o->resume_from) st = cli_peft_add(m, peft, "default", model_dir, (uint64_t)o->seed);
    if (st == CP_OK) st = peft_flags_adapter(m, flags, o);
    if (st == CP_OK) st = cp_trainer_create(&r.t, m, tok, o);
    else st = cp_dist_agree(st); /* the other ranks wait in cp_trainer_create's agreement */
    if (st == CP_OK) {
        atomic_store(&running, r.t);
        if (stop_signal) cp_trainer_request_stop(r.t); /* it came during the setup */
    }
    cp_trainer_info in;
    double plan_bytes = 0;
    if (st == CP_OK) {
        cp_trainer_get_info(r.t, &in);
        print_setup(&in, o);
        cp_train_memory_plan plan;
        char *line = cp_model_trainable_parameters_line(m, CP_PEFT_LINE_NOTEBOOK);
        if ((st = cp_trainer_memory_plan(r.t, &plan)) == CP_OK) {
            plan_bytes = print_plan(&plan, o->gradient_checkpointing);
            printf("%s\n", line ? line : "");
            printf("training: %lld steps (%lld per epoch, batch %lld x %lld accumulation), lr %g %s, warmup %lld steps%s\n",
                   (long long)in.total_steps, (long long)in.steps_per_epoch, (long long)o->per_device_train_batch_size,
                   (long long)o->gradient_accumulation_steps, o->learning_rate, cp_lr_scheduler_name(o->lr_scheduler_type),
                   (long long)in.warmup_steps, o->resume_from ? " — resuming" : "");
            print_processes(o, m);
            if (o->resume_from) printf("resumed from %s at step %lld\n", o->resume_from, (long long)in.start_step);
        }
        free(line);
    }
    if (st == CP_OK) {
        r.t_start = now();
        st = cp_trainer_run(r.t);
        if (st != CP_OK && r.live) printf("\n");
    }
    int rc = 0;
    if (st == CP_OK) {
        cp_trainer_get_info(r.t, &in);
        if (in.stopped && in.step == in.start_step)
            printf("interrupted (%s) before the first step; nothing was trained or saved\n", signal_name(stop_signal));
        else if (in.stopped)
            printf("interrupted (%s): saved %s/checkpoint-%lld; continue with --resume-from-checkpoint %s/checkpoint-%lld\n",
                   stop_signal ? signal_name(stop_signal) : "a signal to another rank", o->output_dir, (long long)in.step,
                   o->output_dir, (long long)in.step);
        print_peak(plan_bytes);
        print_reduce_stats();
        rc = stop_signal ? 128 + stop_signal : 0; /* as a shell reports a process the signal ended */
    } else {
        fflush(stdout);
        const char *msg = r.error[0] ? r.error : cp_last_error();
        if (cp_dist_size() == 1) fprintf(stderr, "cpeft train: %s\n", msg);
        else if (cp_dist_failure_agreed()) { if (cp_dist_rank() == 0) fprintf(stderr, "cpeft train: %s\n", msg); }
        else { /* this rank's own failure: the others are waiting for it in a collective */
            fprintf(stderr, "cpeft train: rank %d (%s): %s; ending the job\n", cp_dist_rank(), cp_dist_host(), msg);
            cp_dist_abort(1);
        }
        rc = 1;
    }
    atomic_store(&running, NULL);
    cp_trainer_free(r.t);
    cp_tokenizer_free(tok);
    cp_model_free(m);
    return rc;
}

int cmd_train(int argc, char **argv) {
    cp_train_options a;
    cp_train_options_init(&a);
    const char *model_dir = NULL, *v;
    int r, progress = -1;
    cli_peft_flags peft;
    cli_peft_flags_init(&peft);
    peft_flags flags = {0};
#define STR(flag, field) \
    if ((r = cp_arg_value(argc, argv, &i, flag, &v, "train"))) { if (r < 0) return 2; field = v; continue; }
#define INT(flag, field, lo, hi) \
    if ((r = cp_arg_value(argc, argv, &i, flag, &v, "train"))) { if (r < 0 || cp_arg_int(v, flag, lo, hi, &a.field, "train")) return 2; continue; }
#define DBL(flag, field) \
    if ((r = cp_arg_value(argc, argv, &i, flag, &v, "train"))) { if (r < 0 || cp_arg_double(v, flag, &a.field, "train")) return 2; continue; }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { help(stdout); return 0; }
        if (!strcmp(argv[i], "--gradient-checkpointing")) { a.gradient_checkpointing = 1; continue; }
        if (!strcmp(argv[i], "--bf16")) { a.bf16 = 1; continue; }
        if (!strcmp(argv[i], "--strict")) { a.strict = 1; continue; }
        if (!strcmp(argv[i], "--assistant-only-loss")) { a.assistant_only_loss = 1; continue; }
        if ((r = cp_arg_value(argc, argv, &i, "--completion-only-loss", &v, "train"))) {
            if (r < 0) return 2;
            if (strcmp(v, "true") && strcmp(v, "false")) { fprintf(stderr, "cpeft train: --completion-only-loss: true or false\n"); return 2; }
            a.completion_only_loss = !strcmp(v, "true");
            continue;
        }
        if (!strcmp(argv[i], "--overwrite-output-dir")) { a.overwrite_output_dir = 1; continue; }
        /* TrainingArguments' booleans: the bare flag is true, or an explicit true / false after it */
        if (!strcmp(argv[i], "--load-best-model-at-end") || !strcmp(argv[i], "--greater-is-better")) {
            int *field = argv[i][2] == 'l' ? &a.load_best_model_at_end : &a.greater_is_better;
            *field = 1;
            if (i + 1 < argc && (!strcmp(argv[i + 1], "true") || !strcmp(argv[i + 1], "false"))) *field = !strcmp(argv[++i], "true");
            continue;
        }
        if ((r = cli_peft_flag(argc, argv, &i, &peft, "train"))) { if (r < 0) return 2; continue; }
        STR("--model", model_dir) STR("--data", a.data_path) STR("--eval-data", a.eval_data_path) STR("--output-dir", a.output_dir)
        STR("--peft-config", a.peft_config_path) STR("--resume-from-checkpoint", a.resume_from)
        STR("--target-modules", a.lora.target_modules) STR("--modules-to-save", a.lora.modules_to_save)
        STR("--feedforward-modules", flags.feedforward_modules)
        if (!strcmp(argv[i], "--bias") || !strncmp(argv[i], "--lora-", 7)) flags.lora_flags = 1;
        STR("--bias", a.lora.bias)
        STR("--text-field", a.text_field) STR("--chat-template", a.chat_template) STR("--text-pair-field", a.text_pair_field) STR("--label-field", a.label_field)
        STR("--task-type", a.task_type)
        STR("--metric-for-best-model", a.metric_for_best_model) STR("--report-to", a.report_to) STR("--logging-dir", a.logging_dir)
        INT("--save-total-limit", save_total_limit, 0, INT64_MAX)
        STR("--source-field", a.source_field) STR("--target-field", a.target_field) STR("--source-prefix", a.source_prefix)
        INT("--max-source-length", max_source_length, 2, 1 << 24) INT("--max-target-length", max_target_length, 2, 1 << 24)
        INT("--max-train-samples", max_train_samples, 0, INT64_MAX) INT("--max-eval-samples", max_eval_samples, 0, INT64_MAX)
        INT("--lora-r", lora.r, 1, 1 << 20) DBL("--lora-alpha", lora.alpha) DBL("--lora-dropout", lora.dropout)
        DBL("--learning-rate", learning_rate) DBL("--num-train-epochs", num_train_epochs) INT("--max-steps", max_steps, -1, INT64_MAX)
        INT("--per-device-train-batch-size", per_device_train_batch_size, 1, 1 << 20)
        INT("--gradient-accumulation-steps", gradient_accumulation_steps, 1, 1 << 20)
        INT("--warmup-steps", warmup_steps, 0, INT64_MAX) DBL("--warmup-ratio", warmup_ratio)
        DBL("--weight-decay", weight_decay) DBL("--max-grad-norm", max_grad_norm)
        DBL("--adam-beta1", adam_beta1) DBL("--adam-beta2", adam_beta2) DBL("--adam-epsilon", adam_epsilon)
        INT("--logging-steps", logging_steps, 1, INT64_MAX) INT("--eval-steps", eval_steps, 0, INT64_MAX)
        INT("--save-steps", save_steps, 0, INT64_MAX) INT("--seed", seed, 0, INT64_MAX)
        INT("--max-seq-length", max_seq_length, 2, 1 << 24) DBL("--validation-split", validation_split)
        if ((r = cp_arg_value(argc, argv, &i, "--lr-scheduler-type", &v, "train"))) {
            if (r < 0) return 2;
            if (cp_lr_scheduler_parse(v, &a.lr_scheduler_type) != CP_OK) {
                fprintf(stderr, "cpeft train: %s\n", cp_last_error());
                return 2;
            }
            continue;
        }
        if ((r = cp_arg_value(argc, argv, &i, "--quantize", &v, "train"))) {
            if (r < 0 || cli_quantize_flags("train", v, &quantize_flags)) return 2;
            continue;
        }
        if ((r = cp_arg_value(argc, argv, &i, "--quantize-embeddings", &v, "train"))) {
            if (r < 0) return 2;
            if (strcmp(v, "yes") && strcmp(v, "no")) { fprintf(stderr, "cpeft train: --quantize-embeddings: yes or no\n"); return 2; }
            keep_embeddings = !strcmp(v, "no");
            continue;
        }
        if ((r = cp_arg_value(argc, argv, &i, "--model-dropout", &v, "train"))) {
            if (r < 0) return 2;
            if (strcmp(v, "on") && strcmp(v, "off")) { fprintf(stderr, "cpeft train: --model-dropout: on or off\n"); return 2; }
            a.model_dropout = !strcmp(v, "on");
            continue;
        }
        if ((r = cp_arg_value(argc, argv, &i, "--progress", &v, "train"))) {
            if (r < 0) return 2;
            if (strcmp(v, "bar") && strcmp(v, "lines")) { fprintf(stderr, "cpeft train: --progress: bar or lines\n"); return 2; }
            progress = !strcmp(v, "bar");
            continue;
        }
        fprintf(stderr, "cpeft train: unknown argument %s\n", argv[i]);
        help(stderr);
        return 2;
    }
#undef STR
#undef INT
#undef DBL
    if (!model_dir || !a.data_path || !a.output_dir) {
        fprintf(stderr, "cpeft train: needs --model, --data and --output-dir\n");
        help(stderr);
        return 2;
    }
    if (cli_peft_flags_check(&peft, a.peft_config_path != NULL) != CP_OK || cp_train_options_check(&a) != CP_OK) {
        fprintf(stderr, "cpeft train: %s\n", cp_last_error());
        return 2;
    }
    flags.peft_type = peft.peft_type; /* --peft-type is parsed with the prompt-learning flags */
    if ((r = check_peft_flags(&flags, &a))) return r;
    /* Ctrl-C, SIGTERM and SIGHUP stop the run cleanly: between steps, after a checkpoint */
    stop_signal = 0;
    struct sigaction sa, old_sa[3];
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART; /* a read or write under way carries on; the trainer checks between steps */
    for (int i = 0; i < 3; i++) sigaction(stop_signals[i], &sa, &old_sa[i]);
    /* under mpirun / srun: MPI, and rank 0 alone prints */
    if (cp_dist_init(&argc, &argv) != CP_OK) {
        fprintf(stderr, "cpeft train: %s\n", cp_last_error());
        return 1;
    }
    if (cp_dist_rank() != 0 && !freopen("/dev/null", "w", stdout)) cp_dist_abort(1);
    int rc = train(model_dir, &a, progress, &peft, &flags);
    if (rc == 0 || rc > 128) cp_dist_barrier("the end of the run"); /* rank 0 has written the adapter */
    cp_dist_finalize();
    for (int i = 0; i < 3; i++) sigaction(stop_signals[i], &old_sa[i], NULL);
    return rc;
}
