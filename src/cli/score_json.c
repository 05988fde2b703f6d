/*
 * score_json.c — the scores JSON line shared by `cpeft score` and `cpeft eval-generate` (see
 * score_json.h).
 */
#include "cli/score_json.h"

#include <inttypes.h>

void cli_print_scores_json(FILE *f, const cp_bleu_score *b, const cp_rouge_score *r, int64_t n_refs_max) {
    fprintf(f, "{\"bleu\": %.17g, \"bleu_precisions\": [%.17g, %.17g, %.17g, %.17g], \"bleu_counts\": [%" PRId64 ", %" PRId64
               ", %" PRId64 ", %" PRId64 "], \"bleu_totals\": [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64 "], \"bp\": %.17g, "
               "\"ratio\": %.17g, \"hyp_len\": %" PRId64 ", \"ref_len\": %" PRId64 ", \"rougeL\": %.17g, \"rougeL_precision\": %.17g, "
               "\"rougeL_recall\": %.17g, \"segments\": %" PRId64 ", \"max_references\": %" PRId64 "}\n",
            b->score, b->precisions[0], b->precisions[1], b->precisions[2], b->precisions[3], b->counts[0], b->counts[1],
            b->counts[2], b->counts[3], b->totals[0], b->totals[1], b->totals[2], b->totals[3], b->bp, b->ratio, b->sys_len,
            b->ref_len, r->fmeasure, r->precision, r->recall, r->n, n_refs_max);
}
