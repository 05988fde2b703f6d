/*
 * cmd_eval_generate.c — `cpeft eval-generate`: evaluation of an encoder-decoder (t5, mt5; with its
 * adapters) by generation. Reads source / target records (CSV, TSV, JSONL: the seq2seq reader of
 * train/seq2seq_data.h, the same fields, prefix and source truncation as `cpeft train`), generates
 * once for each distinct source, writes one JSON line per distinct source
 *     {"source": ..., "prediction": ..., "references": [...]}
 * and prints corpus BLEU (sacreBLEU's line) and ROUGE-L (rouge-score's, best reference) of the
 * predictions (train/text_metrics.h).
 *
 * References grouped per source: the rows whose source text (before the prefix) is byte for byte the
 * same form one segment, in the order each source first appears, its references the targets of those
 * rows in file order — E2E NLG's files repeat a meaning representation once per human reference, and
 * its official scores are multi-reference BLEU of one output per meaning representation.
 */
#include "cli/adapter_args.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/score_json.h"
#include "core/alloc.h"
#include "core/json_write.h"
#include "core/strbuf.h"
#include "core/strmap.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "models/model.h"
#include "train/seq2seq_data.h"
#include "train/text_metrics.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ADAPTERS 64

static void help(FILE *f) {
    fprintf(f,
            "usage: cpeft eval-generate --model DIR [--adapter DIR[:NAME[:WEIGHT]]] --data FILE [options]\n\n"
            "Evaluation of an encoder-decoder (t5, mt5) by generation: for each distinct source of the data file\n"
            "(CSV / TSV with a header row, or JSONL), the model (with its adapters) generates a prediction;\n"
            "one JSON line per source {\"source\", \"prediction\", \"references\"} is written, then corpus BLEU\n"
            "(as sacreBLEU: 13a, exp smoothing) and ROUGE-L (as rouge-score, best reference) are printed.\n"
            "Rows with the same source text are one segment with several references (E2E NLG's layout).\n\n"
            "  --source-field NAME (source)  --target-field NAME (target)   E2E NLG: mr / ref\n"
            "  --source-prefix TEXT            prepended to every source (as in training)\n"
            "  --max-source-length N (512)     sources longer are truncated (--strict: an error)\n"
            "  --max-new-tokens N (128)  --num-beams N (generation_config.json's, else 1: greedy)\n"
            "  --batch-size N (8)              sources generated together\n"
            "  --max-samples N                 the first N distinct sources only (0: all)\n"
            "  --output FILE                   the predictions (JSONL); default: standard output, the scores\n"
            "                                  then go to standard error\n"
            "  --json                          the scores as one JSON object (cpeft score --json's fields)\n");
}

/* The records of one distinct source. */
typedef struct {
    int64_t first;       /* the example whose encoding is generated from */
    const char **refs;   /* [n_refs] target texts (owned by the dataset) */
    int64_t n_refs;
    size_t cap;
} segment;

/* Groups ds's examples by source text into *segs (see the file comment). */
static cp_status group(const cp_s2s_dataset *ds, segment **segs, int64_t *n_segs) {
    cp_strmap map;
    cp_strmap_init(&map);
    segment *s = cp_calloc((size_t)ds->n, sizeof *s, "segments");
    int64_t n = 0;
    cp_status st = s ? CP_OK : CP_ERR;
    for (int64_t i = 0; st == CP_OK && i < ds->n; i++) {
        const char *src = ds->examples[i].source_text;
        int32_t k = cp_strmap_get(&map, src, strlen(src));
        if (k < 0) {
            k = (int32_t)n++;
            s[k].first = i;
            st = cp_strmap_put(&map, src, strlen(src), k);
        }
        if (st == CP_OK && cp_grow(&s[k].refs, &s[k].cap, (size_t)s[k].n_refs + 1, sizeof *s[k].refs, 4, "references"))
            st = CP_ERR;
        if (st == CP_OK) s[k].refs[s[k].n_refs++] = ds->examples[i].target_text;
    }
    cp_strmap_free(&map);
    *segs = s;
    *n_segs = n;
    return st;
}

/* An adapter made for another task (an encoder-only model's SEQ_CLS, TOKEN_CLS or FEATURE_EXTRACTION,
 * a decoder's CAUSAL_LM) is refused before it is loaded. */
static cp_status check_adapter_task(const char *spec) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", spec);
    char *colon = strchr(dir, ':');
    if (colon) *colon = '\0';
    char *path = cp_path_join(dir, "adapter_config.json");
    cJSON *root = NULL;
    cp_status st = path ? cp_json_read_file(path, &root) : CP_ERR;
    if (st == CP_OK) {
        const cJSON *tt = cJSON_GetObjectItem(root, "task_type");
        if (tt && cJSON_IsString(tt) && strcmp(tt->valuestring, "SEQ_2_SEQ_LM")) {
            const char *what = !strcmp(tt->valuestring, "CAUSAL_LM") ? "a decoder-only model's"
                                                                      : "an encoder-only model's";
            st = cp_error("%s: task_type \"%s\": an adapter made for %s task; eval-generate needs a SEQ_2_SEQ_LM adapter "
                          "of an encoder-decoder (t5, mt5)", path, tt->valuestring, what);
        }
    }
    cJSON_Delete(root);
    cp_free(path);
    return st;
}

/* One prediction line. */
static void write_line(FILE *f, const char *source, const char *pred, size_t pred_len, const segment *s) {
    cp_strbuf sb;
    cp_sb_init(&sb);
    cp_sb_append(&sb, "{\"source\": ");
    cp_json_write_cstring(&sb, source, 0);
    cp_sb_append(&sb, ", \"prediction\": ");
    cp_json_write_string(&sb, pred, pred_len, 0);
    cp_sb_append(&sb, ", \"references\": [");
    for (int64_t k = 0; k < s->n_refs; k++) {
        if (k) cp_sb_append(&sb, ", ");
        cp_json_write_cstring(&sb, s->refs[k], 0);
    }
    cp_sb_append(&sb, "]}\n");
    if (sb.data) fwrite(sb.data, 1, sb.len, f);
    cp_sb_free(&sb);
}

int cmd_eval_generate(int argc, char **argv) {
    const char *model_dir = NULL, *data = NULL, *output = NULL;
    cp_s2s_options so = {.keep_text = 1, .max_source_length = 512, .max_target_length = INT64_MAX / 2};
    char *specs[MAX_ADAPTERS];
    int n_specs = 0, json = 0, strict = 0;
    int64_t max_new = 128, beams = 0, batch = 8, max_samples = 0;
    const cp_opt opts[] = {
        {CP_STRING("--model", &model_dir)},
        {CLI_ADAPTER_OPTION(specs, &n_specs)},
        {CP_STRING("--data", &data)},
        {CP_STRING("--source-field", &so.source_field)},
        {CP_STRING("--target-field", &so.target_field)},
        {CP_STRING("--source-prefix", &so.source_prefix)},
        {CP_INT("--max-source-length", &so.max_source_length, 2, 1 << 24)},
        {CP_INT("--max-new-tokens", &max_new, 1, 1 << 20)},
        {CP_INT("--num-beams", &beams, 1, 1 << 10)},
        {CP_INT("--batch-size", &batch, 1, 1 << 16)},
        {CP_INT("--max-samples", &max_samples, 0, INT64_MAX)},
        {CP_STRING("--output", &output)},
        {CP_FLAG("--json", &json)},
        {CP_FLAG("--strict", &strict)},
        {NULL},
    };
    cp_args_spec spec = {.cmd = "eval-generate", .opts = opts, .help = help, .unknown = "unknown option \"%s\"",
                         .help_after_unknown = 1};
    int rc = cp_args_parse(&spec, argc, argv, 1);
    if (rc >= 0) return rc;
    if (!model_dir || !data) {
        fprintf(stderr, "cpeft eval-generate: needs --model and --data\n");
        return 2;
    }
    so.path = data;
    so.strict = strict;
    for (int i = 0; i < n_specs; i++)
        if (check_adapter_task(specs[i]) != CP_OK) {
            fprintf(stderr, "cpeft eval-generate: %s\n", cp_last_error());
            return 1;
        }
    cp_tokenizer *tok = NULL;
    cp_model *m = NULL;
    cp_s2s_dataset ds = {0};
    segment *segs = NULL;
    int64_t n_segs = 0;
    const char **hyps = NULL;
    cp_text_segment *ts = NULL;
    FILE *out = NULL;
    rc = 1;
    if (cli_tokenizer_load(&tok, model_dir) != CP_OK) goto fail;
    if (!(m = cli_load_model("eval-generate", model_dir, CP_LOAD_WEIGHTS, specs, n_specs))) goto done;
    if (!m->arch->encoder_decoder) {
        cp_error("%s: %s is not an encoder-decoder (eval-generate generates from a source: t5, mt5)", model_dir,
                 m->config.model_type);
        goto fail;
    }
    if (cp_s2s_dataset_load(&ds, tok, &so) != CP_OK || group(&ds, &segs, &n_segs) != CP_OK) goto fail;
    if (max_samples > 0 && max_samples < n_segs) n_segs = max_samples;
    cp_generate_options go;
    if (cp_generate_options_init(m, &go) != CP_OK) goto fail;
    go.max_new_tokens = max_new;
    if (beams > 0) go.num_beams = beams;
    out = output ? fopen(output, "w") : stdout;
    if (!out) { cp_error("%s: cannot write the predictions", output); goto fail; }
    hyps = cp_calloc((size_t)n_segs, sizeof *hyps, "predictions");
    ts = cp_calloc((size_t)n_segs, sizeof *ts, "segments");
    if (!hyps || !ts) goto fail;
    const int32_t **prompts = cp_calloc((size_t)batch, sizeof *prompts, "prompts");
    int64_t *lens = cp_calloc((size_t)batch, sizeof *lens, "prompts");
    cp_status st = prompts && lens ? CP_OK : CP_ERR;
    int64_t n_refs_max = 0;
    for (int64_t s0 = 0; st == CP_OK && s0 < n_segs; s0 += batch) {
        const int64_t nb = n_segs - s0 < batch ? n_segs - s0 : batch;
        for (int64_t b = 0; b < nb; b++) {
            const cp_s2s_example *ex = &ds.examples[segs[s0 + b].first];
            prompts[b] = ex->src;
            lens[b] = ex->n_src;
        }
        cp_generation g = {0};
        if ((st = cp_model_generate(m, prompts, lens, nb, &go, &g)) != CP_OK) break;
        for (int64_t b = 0; st == CP_OK && b < nb; b++) {
            char *text = NULL;
            size_t len = 0;
            if ((st = cp_tokenizer_decode(tok, g.tokens[b], (size_t)g.n_tokens[b], 1, &text, &len)) != CP_OK) break;
            const segment *s = &segs[s0 + b];
            write_line(out, ds.examples[s->first].source_text, text, len, s);
            hyps[s0 + b] = text;
            ts[s0 + b] = (cp_text_segment){.hyp = text, .refs = s->refs, .n_refs = s->n_refs};
            if (s->n_refs > n_refs_max) n_refs_max = s->n_refs;
        }
        cp_generation_free(&g);
        fflush(out);
    }
    free(prompts);
    free(lens);
    if (st != CP_OK) goto fail;
    cp_bleu_score bl;
    cp_rouge_score rl;
    if (cp_bleu_corpus(ts, n_segs, &bl) != CP_OK || cp_rouge_l_corpus(ts, n_segs, &rl, NULL) != CP_OK) goto fail;
    FILE *sf = output ? stdout : stderr;
    if (json) {
        cli_print_scores_json(sf, &bl, &rl, n_refs_max);
    } else {
        char line[256];
        cp_bleu_format(&bl, line, sizeof line);
        fprintf(sf, "%s\n", line);
        fprintf(sf, "ROUGE-L = %.4f (P = %.4f R = %.4f, %" PRId64 " segments, %" PRId64 " rows, at most %" PRId64
                    " references each)\n", rl.fmeasure, rl.precision, rl.recall, rl.n, ds.n, n_refs_max);
        if (ds.n_truncated_source)
            fprintf(sf, "%" PRId64 " sources truncated to --max-source-length %" PRId64 "\n", ds.n_truncated_source,
                    so.max_source_length);
    }
    rc = 0;
    goto done;
fail:
    fflush(stdout);
    fprintf(stderr, "cpeft eval-generate: %s\n", cp_last_error());
done:
    if (out && out != stdout && fclose(out) != 0 && rc == 0) {
        fprintf(stderr, "cpeft eval-generate: %s: cannot write the predictions\n", output);
        rc = 1;
    }
    for (int64_t i = 0; hyps && i < n_segs; i++) free((void *)hyps[i]);
    cp_free(hyps);
    cp_free(ts);
    for (int64_t i = 0; segs && i < ds.n; i++) cp_free(segs[i].refs);
    cp_free(segs);
    cp_s2s_dataset_free(&ds);
    cp_model_free(m);
    cp_tokenizer_free(tok);
    return rc;
}
