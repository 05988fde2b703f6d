/*
 * cmd_eval.c — `cpeft eval`: mean causal-LM cross-entropy and perplexity of a model on a text.
 *
 * The text is tokenized as one stream with the model directory's tokenizer (or read as token ids
 * with --data-ids), cut into consecutive blocks of --seq-len tokens (the last, partial block
 * kept) and run in batches of --batch-size blocks of equal length. Each block predicts its tokens
 * 2..n from the ones before; the loss is the mean over every predicted token, and the perplexity
 * its exponential. Logits are never materialised for the whole batch (see lm_loss.c). On a terminal
 * stderr shows the trainer's progress bar (core/progress.h): blocks done, the loss so far, tokens/s
 * and the time left.
 */
#include "cli/adapter_args.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "core/alloc.h"
#include "core/progress.h"
#include "io/fsutil.h"
#include "models/hook.h"
#include "models/model.h"
#include "train/data.h"
#include "tokenizer/tokenizer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: cpeft eval --model DIR (--data FILE | --data-ids FILE) [--adapter DIR[:NAME[:WEIGHT]]]...\n"
            "                  [--seq-len N] [--batch-size N] [--json]\n\n"
            "Mean token cross-entropy and perplexity of a causal LM over a text file, tokenized as one\n"
            "stream and cut into consecutive blocks of --seq-len tokens (the last partial block kept).\n\n"
            "  --model DIR       Hugging Face model directory (config.json + safetensors)\n"
            "  --data FILE       UTF-8 text, tokenized with DIR's tokenizer (tokenizer.json, ...)\n"
            "  --data-ids FILE   whitespace-separated token ids instead of text\n"
            "  --adapter SPEC    a PEFT adapter directory, repeatable: DIR[:NAME[:WEIGHT]]; all given adapters\n"
            "                    are active together, WEIGHT scaling each one's delta\n"
            "  --seq-len N       block length (default: the model's positions, at most 1024)\n"
            "  --batch-size N    blocks per forward pass (default 4)\n"
            "  --json            print {\"loss\": ..., \"perplexity\": ..., \"tokens\": ...}; tokens is the\n"
            "                    number of predicted tokens the loss averages over\n");
    fputs(CLI_QUANTIZE_HELP, f);
    fputs(CLI_EXACT_QUANT_HELP, f);
}

/* Reads whitespace-separated ids; errors name the file and line. */
static cp_status read_ids(const char *path, int64_t vocab, int64_t **ids_out, int64_t *n_out) {
    FILE *f = fopen(path, "r");
    if (!f) return cp_error("%s: cannot open: %s", path, strerror(errno));
    int64_t cap = 4096, n = 0, line = 1;
    int64_t *ids = cp_malloc((size_t)cap * sizeof *ids, "token ids");
    cp_status st = ids ? CP_OK : CP_ERR;
    char tok[64];
    int c = 0;
    while (st == CP_OK) {
        while ((c = fgetc(f)) != EOF && (c == ' ' || c == '\t' || c == '\n' || c == '\r'))
            if (c == '\n') line++;
        if (c == EOF) break;
        size_t k = 0;
        while (c != EOF && c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            if (k + 1 < sizeof tok) tok[k++] = (char)c;
            c = fgetc(f);
        }
        tok[k] = '\0';
        char *end;
        errno = 0;
        long long v = strtoll(tok, &end, 10);
        if (errno || *end || end == tok) { st = cp_error("%s:%lld: \"%s\" is not a token id", path, (long long)line, tok); break; }
        if (v < 0 || v >= vocab) {
            st = cp_error("%s:%lld: token id %lld is outside the vocabulary [0, %lld)", path, (long long)line, v, (long long)vocab);
            break;
        }
        if (n == cap) {
            cap *= 2;
            int64_t *g = cp_realloc(ids, (size_t)cap * sizeof *ids, "token ids");
            if (!g) { st = CP_ERR; break; }
            ids = g;
        }
        ids[n++] = v;
        if (c == '\n') line++;
    }
    fclose(f);
    if (st != CP_OK) { cp_free(ids); return CP_ERR; }
    *ids_out = ids;
    *n_out = n;
    return CP_OK;
}

static cp_status read_text_ids(const char *path, const char *model_dir, int64_t vocab, int64_t **ids_out, int64_t *n_out) {
    char *text;
    size_t size;
    if (cp_read_file(path, &text, &size) != CP_OK) return CP_ERR;
    /* gzip / zstd read, binary and other formats refused, as training data is (train/data.h) */
    cp_data_options opt = {.path = path};
    char *owned = NULL;
    const char *plain;
    size_t plain_len;
    if (cp_data_decode_text(&opt, text, size, &owned, &plain, &plain_len) != CP_OK) {
        cp_free(owned);
        cp_free(text);
        return CP_ERR;
    }
    cp_tokenizer *tok;
    if (cli_tokenizer_load(&tok, model_dir) != CP_OK) { cp_free(owned); cp_free(text); return CP_ERR; }
    cp_encoding enc;
    memset(&enc, 0, sizeof enc);
    cp_status st = cp_tokenizer_encode(tok, plain, plain_len, 1, &enc);
    cp_free(owned);
    cp_free(text);
    cp_tokenizer_free(tok);
    if (st != CP_OK) { cp_encoding_free(&enc); return cp_error_context("%s", path); }
    int64_t *ids = cp_malloc((enc.n ? enc.n : 1) * sizeof *ids, "token ids");
    if (!ids) { cp_encoding_free(&enc); return CP_ERR; }
    for (size_t i = 0; i < enc.n; i++) {
        if (enc.ids[i] < 0 || enc.ids[i] >= vocab) {
            st = cp_error("%s: the tokenizer produced id %d, outside the model's vocabulary of %lld", model_dir,
                          enc.ids[i], (long long)vocab);
            break;
        }
        ids[i] = enc.ids[i];
    }
    *n_out = (int64_t)enc.n;
    cp_encoding_free(&enc);
    if (st != CP_OK) { cp_free(ids); return CP_ERR; }
    *ids_out = ids;
    return CP_OK;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The sums of a run and its progress line. */
typedef struct {
    double loss_sum;
    int64_t n_targets;
    int64_t blocks_done, blocks_total, tokens_done;
    int progress;         /* draw the bar (stderr is a terminal, no --json) */
    double t0, last_draw; /* seconds */
} eval_run;

static void draw_progress(eval_run *r, int last) {
    double t = now_seconds(), elapsed = t - r->t0;
    if (!r->progress || (!last && t - r->last_draw < 0.1)) return;
    r->last_draw = t;
    char detail[96];
    snprintf(detail, sizeof detail, "loss %.4f  %.0f tokens/s", r->n_targets ? r->loss_sum / (double)r->n_targets : NAN,
             (double)r->tokens_done / (elapsed > 0 ? elapsed : 1));
    double per_block = r->blocks_done ? elapsed / (double)r->blocks_done : NAN;
    cp_progress_bar(stderr, "block", r->blocks_done, r->blocks_total, detail, per_block * (double)(r->blocks_total - r->blocks_done));
}

/* Runs `count` consecutive blocks of T tokens starting at x, B blocks per forward pass. */
static cp_status eval_blocks(cp_model *m, const int64_t *x, int64_t count, int64_t T, int64_t B, eval_run *r) {
    for (int64_t blk = 0; blk < count; blk += B) {
        int64_t nb = count - blk < B ? count - blk : B;
        cp_batch batch = {.B = nb, .T = T, .input_ids = x + blk * T, .labels = x + blk * T};
        cp_outputs out = {0};
        if (cp_model_forward(m, &batch, &out) != CP_OK) return CP_ERR;
        if (out.loss_tokens) r->loss_sum += out.loss * (double)out.loss_tokens;
        r->n_targets += out.loss_tokens;
        r->blocks_done += nb;
        r->tokens_done += nb * T;
        draw_progress(r, r->blocks_done == r->blocks_total);
    }
    return CP_OK;
}

int cmd_eval(int argc, char **argv) {
    const char *model_dir = NULL, *data = NULL, *data_ids = NULL, *quantize = NULL;
    int64_t seq_len = 0, batch_size = 4;
    int json = 0, n_adapters = 0, exact_quant = 0;
    char *adapters[64];
    const cp_opt options[] = {
        {CP_FLAG("--json", &json)},
        {CP_FLAG("--exact-quant", &exact_quant)},
        {CP_STRING("--model", &model_dir)},
        {CP_STRING("--data", &data)},
        {CP_STRING("--data-ids", &data_ids)},
        {CP_STRING("--quantize", &quantize)},
        {CLI_ADAPTER_OPTION(adapters, &n_adapters)},
        {CP_INT("--seq-len", &seq_len, 1, 1 << 20)},
        {CP_INT("--batch-size", &batch_size, 1, 1 << 16)},
        {0},
    };
    const cp_args_spec spec = {.cmd = "eval", .opts = options, .help = help, .unknown = "unknown argument %s",
                               .help_after_unknown = 1};
    int r = cp_args_parse(&spec, argc, argv, 1);
    if (r >= 0) return r;
    if (!model_dir || (!data == !data_ids)) {
        fprintf(stderr, "cpeft eval: needs --model and exactly one of --data / --data-ids\n");
        help(stderr);
        return 2;
    }

    int load_flags = CP_LOAD_WEIGHTS;
    if ((r = cli_quantize_flags("eval", quantize, &load_flags))) return r;
    cp_model *m = cli_load_model("eval", model_dir, load_flags, adapters, n_adapters);
    if (!m) return 1;
    cp_model_set_quant_act8(m, !exact_quant);
    int64_t max_pos = cp_model_max_positions(m);
    /* a prompt-learning adapter's virtual tokens come before every block: with a learned position table
     * they take positions from it */
    if (m->prompt && m->arch->learned_positions) max_pos -= m->prompt->ops->n_virtual(m->prompt);
    if (seq_len == 0) seq_len = max_pos < 1024 ? max_pos : 1024;
    if (seq_len > max_pos) {
        fprintf(stderr, "cpeft eval: --seq-len %lld exceeds the model's %lld positions\n", (long long)seq_len,
                (long long)max_pos);
        cp_model_free(m);
        return 2;
    }
    int64_t *ids = NULL, n = 0;
    cp_status st = data_ids ? read_ids(data_ids, cp_model_vocab_size(m), &ids, &n)
                            : read_text_ids(data, model_dir, cp_model_vocab_size(m), &ids, &n);
    if (st == CP_OK && n < 2) st = cp_error("%s: needs at least 2 tokens, found %lld", data_ids ? data_ids : data, (long long)n);

    const int64_t full = n / seq_len, rest = n % seq_len; /* a last block of one token predicts nothing */
    eval_run run = {.blocks_total = full + (rest > 1), .progress = !json && isatty(2), .t0 = now_seconds()};
    if (st == CP_OK) {
        st = eval_blocks(m, ids, full, seq_len, batch_size, &run);
        if (st == CP_OK && rest > 1) st = eval_blocks(m, ids + full * seq_len, 1, rest, 1, &run);
        if (run.progress && run.blocks_done) fprintf(stderr, "\n");
    }
    const double loss_sum = run.loss_sum, seconds = now_seconds() - run.t0;
    const int64_t n_targets = run.n_targets;
    int rc = 0;
    if (st != CP_OK) {
        fprintf(stderr, "cpeft eval: %s\n", cp_last_error());
        rc = 1;
    } else {
        double loss = loss_sum / (double)n_targets;
        if (json)
            printf("{\"loss\": %.6f, \"perplexity\": %.6f, \"tokens\": %lld}\n", loss, exp(loss), (long long)n_targets);
        else
            printf("loss: %.6f    perplexity: %.4f    predicted tokens: %lld of %lld    %.2f s (%.0f tokens/s)\n", loss,
                   exp(loss), (long long)n_targets, (long long)n, seconds, (double)n / (seconds > 0 ? seconds : 1));
    }
    cp_free(ids);
    cp_model_free(m);
    return rc;
}
