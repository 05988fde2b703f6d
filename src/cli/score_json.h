/*
 * score_json.h — the scores line of `cpeft score --json` and `cpeft eval-generate --json`: corpus
 * BLEU (sacreBLEU's fields) and ROUGE-L (rouge-score's) as one JSON object on one line, every double
 * with 17 significant digits:
 *   {"bleu", "bleu_precisions" [4], "bleu_counts" [4], "bleu_totals" [4], "bp", "ratio", "hyp_len",
 *    "ref_len", "rougeL", "rougeL_precision", "rougeL_recall", "segments", "max_references"}
 */
#ifndef CP_CLI_SCORE_JSON_H
#define CP_CLI_SCORE_JSON_H

#include <stdint.h>
#include <stdio.h>

#include "train/text_metrics.h"

/* Writes the line (newline included) to f; n_refs_max is the most references a segment had. */
void cli_print_scores_json(FILE *f, const cp_bleu_score *b, const cp_rouge_score *r, int64_t n_refs_max);

#endif
