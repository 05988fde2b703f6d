/*
 * cmd_score.c — `cpeft score`: corpus BLEU (sacreBLEU's default corpus_bleu) and ROUGE-L (rouge-score's
 * rougeL, the best reference per segment) of a hypothesis file against reference files, one segment
 * per line; see train/text_metrics.h for what is computed.
 *
 * References come as one or more --ref files (line i of each is a reference of hypothesis i, as
 * sacreBLEU's -r / positional reference files), or as one JSONL file whose line i holds the segment's
 * references in a field (a list of strings, or one string), for data with a varying number of
 * references per segment (E2E NLG). Lines end at '\n' (a '\r' before it stays in the text, where BLEU's
 * right strip and ROUGE's tokenizer drop it); a last line without '\n' counts, a final '\n' adds no
 * empty line. Files must be UTF-8 without NUL bytes.
 *
 * Output: sacreBLEU's "BLEU = ..." line, a ROUGE-L line, and one JSON line with every number at full
 * precision (--json: only the JSON line).
 */
#include "cli/commands.h"
#include "cli/score_json.h"
#include "cli/args.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/utf8.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "train/records.h"
#include "train/text_metrics.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REFS 64

static void help(FILE *f) {
    fprintf(f,
            "usage: cpeft score --hyp FILE --ref FILE [--ref FILE ...] [--json]\n"
            "       cpeft score --hyp FILE --refs-jsonl FILE [--field NAME] [--json]\n\n"
            "Corpus BLEU as sacreBLEU computes it by default (corpus_bleu: 13a tokenization, 4-grams,\n"
            "'exp' smoothing, brevity penalty, several references per segment) and ROUGE-L as rouge-score's\n"
            "RougeScorer([\"rougeL\"]) does (the best reference of each segment, mean F over segments), of one\n"
            "hypothesis per line against the references of the same line.\n\n"
            "  --hyp FILE         the hypotheses (generated text), one segment per line\n"
            "  --ref FILE         references, one per line, as many lines as --hyp; repeat for several\n"
            "                     references per segment (at most %d)\n"
            "  --refs-jsonl FILE  one JSON object per line holding the segment's references instead\n"
            "  --field NAME       with --refs-jsonl: the field with the references, a list of strings or\n"
            "                     one string (default \"refs\")\n"
            "  --json             print only the JSON line\n\n"
            "Prints sacreBLEU's line (\"BLEU = 43.66 81.8/58.8/41.4/29.4 (BP = 0.887 ratio = 0.893 hyp_len = 578\n"
            "ref_len = 647)\"), a ROUGE-L line and a JSON line with the numbers at full precision.\n",
            MAX_REFS);
}

/* A file's lines: NUL-terminated in place. */
typedef struct {
    char *text;
    char **line;
    int64_t n;
} lines;

static void lines_free(lines *L) {
    cp_free(L->text);
    cp_free(L->line);
    memset(L, 0, sizeof *L);
}

/* Reads path and cuts it into lines; checks UTF-8 and NUL bytes. */
static cp_status read_lines(const char *path, lines *L) {
    memset(L, 0, sizeof *L);
    size_t len = 0;
    if (cp_read_file(path, &L->text, &len) != CP_OK) return CP_ERR;
    size_t cap = 0;
    int64_t line_no = 1;
    for (size_t p = 0; p < len; line_no++) {
        const char *nl = memchr(L->text + p, '\n', len - p);
        size_t e = nl ? (size_t)(nl - L->text) : len;
        if (memchr(L->text + p, 0, e - p)) return cp_error("%s:%" PRId64 ": a NUL byte (a text file is expected)", path, line_no);
        size_t ok = cp_utf8_valid_prefix(L->text + p, e - p);
        if (ok != e - p)
            return cp_error("%s:%" PRId64 ": invalid UTF-8 at byte %zu of the line", path, line_no, ok + 1);
        if (cp_grow(&L->line, &cap, (size_t)L->n + 1, sizeof *L->line, 256, "lines")) return CP_ERR;
        L->line[L->n++] = L->text + p;
        if (nl) L->text[e] = 0;
        p = e + 1;
    }
    return CP_OK;
}

/* The references of each line of a JSONL file, as strings kept in the parsed trees. */
typedef struct {
    const char *path, *field;
    cJSON **rec;          /* one tree per segment */
    const char ***refs;   /* refs[i][0..n_refs[i]) point into rec[i] */
    int64_t *n_refs;
    int64_t n;
    size_t cap, cap2, cap3;
} refs_jsonl;

static cp_status jsonl_refs(cJSON *rec, int64_t line, void *ctx) {
    refs_jsonl *R = ctx;
    if (!cJSON_IsObject(rec))
        return cp_error("%s:%" PRId64 ": record is %s, expected a JSON object", R->path, line, cp_json_type_name(rec));
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, R->field);
    if (!v || cJSON_IsNull(v)) return cp_error("%s:%" PRId64 ": missing field \"%s\" (the references)", R->path, line, R->field);
    int64_t n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 1;
    if (!cJSON_IsArray(v) && !cJSON_IsString(v))
        return cp_error("%s:%" PRId64 ": field \"%s\" is %s, expected a list of strings or a string", R->path, line, R->field,
                        cp_json_type_name(v));
    if (n == 0) return cp_error("%s:%" PRId64 ": field \"%s\" is an empty list (a segment needs a reference)", R->path, line, R->field);
    int64_t k = 0;
    for (const cJSON *x = cJSON_IsArray(v) ? v->child : v; x && k < n; x = x->next, k++)
        if (!cJSON_IsString(x) || !x->valuestring)
            return cp_error("%s:%" PRId64 ": reference %" PRId64 " of field \"%s\" is %s, expected a string", R->path, line,
                            k + 1, R->field, cp_json_type_name(x));
    const char **refs = cp_malloc((size_t)n * sizeof *refs, "references");
    if (!refs) return CP_ERR;
    if (cp_grow(&R->rec, &R->cap, (size_t)R->n + 1, sizeof *R->rec, 256, "references") ||
        cp_grow(&R->refs, &R->cap2, (size_t)R->n + 1, sizeof *R->refs, 256, "references") ||
        cp_grow(&R->n_refs, &R->cap3, (size_t)R->n + 1, sizeof *R->n_refs, 256, "references")) {
        cp_free(refs);
        return CP_ERR;
    }
    /* cp_jsonl_each frees the tree after the call: keep a copy that owns the strings */
    cJSON *own = cJSON_Duplicate(rec, 1);
    if (!own) { cp_free(refs); return cp_error("out of memory copying %s:%" PRId64, R->path, line); }
    const cJSON *ov = cJSON_GetObjectItemCaseSensitive(own, R->field);
    k = 0;
    for (const cJSON *x = cJSON_IsArray(ov) ? ov->child : ov; x && k < n; x = x->next, k++) refs[k] = x->valuestring;
    R->rec[R->n] = own;
    R->refs[R->n] = refs;
    R->n_refs[R->n++] = n;
    return CP_OK;
}

static void refs_jsonl_free(refs_jsonl *R) {
    for (int64_t i = 0; i < R->n; i++) {
        cJSON_Delete(R->rec[i]);
        cp_free(R->refs[i]);
    }
    cp_free(R->rec); cp_free(R->refs); cp_free(R->n_refs);
}

static cp_status read_refs_jsonl(refs_jsonl *R) {
    char *text = NULL;
    size_t len = 0;
    if (cp_read_file(R->path, &text, &len) != CP_OK) return CP_ERR;
    size_t ok = cp_utf8_valid_prefix(text, len);
    cp_status st = ok == len ? cp_jsonl_each(R->path, text, len, jsonl_refs, R)
                             : cp_error("%s: invalid UTF-8 at byte offset %zu", R->path, ok);
    cp_free(text);
    return st;
}

int cmd_score(int argc, char **argv) {
    const char *hyp_path = NULL, *refs_jsonl_path = NULL, *field = "refs";
    char *ref_paths[MAX_REFS];
    int n_ref_files = 0, json_only = 0;
    static char full[64];
    snprintf(full, sizeof full, "at most %d --ref files", MAX_REFS);
    const cp_opt opts[] = {
        {CP_STRING("--hyp", &hyp_path)},
        {CP_LIST("--ref", ref_paths, MAX_REFS, &n_ref_files, full)},
        {CP_STRING("--refs-jsonl", &refs_jsonl_path)},
        {CP_STRING("--field", &field)},
        {CP_FLAG("--json", &json_only)},
        {NULL},
    };
    cp_args_spec spec = {.cmd = "score", .opts = opts, .help = help, .unknown = "unknown option \"%s\"",
                         .help_after_unknown = 1};
    int rc = cp_args_parse(&spec, argc, argv, 1);
    if (rc >= 0) return rc;
    if (!hyp_path) { fprintf(stderr, "cpeft score: --hyp FILE is required\n"); return 2; }
    if (!n_ref_files && !refs_jsonl_path) {
        fprintf(stderr, "cpeft score: references are required: --ref FILE (repeatable) or --refs-jsonl FILE\n");
        return 2;
    }
    if (n_ref_files && refs_jsonl_path) {
        fprintf(stderr, "cpeft score: --ref and --refs-jsonl are exclusive (give the references one way)\n");
        return 2;
    }
    lines hyp = {0}, refs[MAX_REFS] = {{0}};
    refs_jsonl R = {.path = refs_jsonl_path, .field = field};
    cp_text_segment *seg = NULL;
    const char **ref_ptrs = NULL;
    rc = 1;
    if (read_lines(hyp_path, &hyp)) goto out;
    if (hyp.n == 0) { cp_error("%s: no lines (no hypotheses to score)", hyp_path); goto out; }
    int64_t n_max = 0;
    seg = cp_calloc((size_t)hyp.n, sizeof *seg, "segments");
    if (!seg) goto out;
    if (n_ref_files) {
        for (int k = 0; k < n_ref_files; k++) {
            if (read_lines(ref_paths[k], &refs[k])) goto out;
            if (refs[k].n != hyp.n) {
                cp_error("%s has %" PRId64 " line%s, the hypotheses (%s) %" PRId64 ": one reference per hypothesis line is "
                         "expected", ref_paths[k], refs[k].n, refs[k].n == 1 ? "" : "s", hyp_path, hyp.n);
                goto out;
            }
        }
        ref_ptrs = cp_malloc((size_t)hyp.n * (size_t)n_ref_files * sizeof *ref_ptrs, "references");
        if (!ref_ptrs) goto out;
        for (int64_t i = 0; i < hyp.n; i++) {
            for (int k = 0; k < n_ref_files; k++) ref_ptrs[i * n_ref_files + k] = refs[k].line[i];
            seg[i] = (cp_text_segment){.hyp = hyp.line[i], .refs = ref_ptrs + i * n_ref_files, .n_refs = n_ref_files};
        }
        n_max = n_ref_files;
    } else {
        if (read_refs_jsonl(&R)) goto out;
        if (R.n != hyp.n) {
            cp_error("%s has %" PRId64 " record%s, the hypotheses (%s) %" PRId64 " lines: one record per hypothesis line is "
                     "expected", refs_jsonl_path, R.n, R.n == 1 ? "" : "s", hyp_path, hyp.n);
            goto out;
        }
        for (int64_t i = 0; i < hyp.n; i++) {
            seg[i] = (cp_text_segment){.hyp = hyp.line[i], .refs = R.refs[i], .n_refs = R.n_refs[i]};
            if (R.n_refs[i] > n_max) n_max = R.n_refs[i];
        }
    }
    cp_bleu_score b;
    cp_rouge_score r;
    if (cp_bleu_corpus(seg, hyp.n, &b) || cp_rouge_l_corpus(seg, hyp.n, &r, NULL)) goto out;
    if (!json_only) {
        char line[256];
        cp_bleu_format(&b, line, sizeof line);
        printf("%s\n", line);
        printf("ROUGE-L = %.4f (P = %.4f R = %.4f, %" PRId64 " segments)\n", r.fmeasure, r.precision, r.recall, r.n);
    }
    cli_print_scores_json(stdout, &b, &r, n_max);
    rc = 0;
out:
    if (rc) fprintf(stderr, "cpeft score: %s\n", cp_last_error());
    lines_free(&hyp);
    for (int k = 0; k < n_ref_files; k++) lines_free(&refs[k]);
    refs_jsonl_free(&R);
    cp_free(seg);
    cp_free(ref_ptrs);
    return rc;
}
