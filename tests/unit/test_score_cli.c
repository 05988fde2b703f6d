/*
 * test_score_cli.c — `cpeft score` end to end (run as $CPEFT_BIN, set by tests/run.sh): BLEU and ROUGE-L
 * of tests/fixtures/text_metrics/cli (make_text_metric_fixtures.py) from two --ref files and from a
 * references JSONL (E2E NLG references, a varying number per segment) equal sacreBLEU's corpus_bleu
 * and rouge-score's rougeL (the "BLEU = ..." line identical, numbers within 1e-9 relative); the exit
 * status and message for missing options, line-count mismatches, bad JSONL, invalid UTF-8.
 */
#include "test.h"
#include "run_cmd.h"
#include "io/json.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define CLI "tests/fixtures/text_metrics/cli/"

static const char *bin(void) {
    const char *b = getenv("CPEFT_BIN");
    return b ? b : "build/cpeft";
}

static char out[1 << 16];
static char tmp[64];
static cJSON *fixture;
static double max_rel;

#define run(...) run_cmdf(out, sizeof out, __VA_ARGS__)

static const cJSON *find_case(const char *name) {
    for (const cJSON *c = cJSON_GetObjectItem(fixture, "cases")->child; c; c = c->next)
        if (!strcmp(cJSON_GetObjectItem(c, "name")->valuestring, name)) return c;
    return NULL;
}

static void close_to(double got, double want, const char *what) {
    double d = fabs(got - want) / (fabs(want) > 0 ? fabs(want) : 1.0);
    if (d > max_rel) max_rel = d;
    CHECK(d <= 1e-9, "%s: cpeft score %.17g, reference %.17g", what, got, want);
}

/* Checks the output of `cpeft score` (BLEU line, ROUGE line, JSON line) against a fixture case. */
static void check_output(const char *name) {
    const cJSON *c = find_case(name);
    CHECK(c != NULL, "case %s in the fixture", name);
    if (!c) return;
    const cJSON *bleu = cJSON_GetObjectItem(c, "bleu"), *rouge = cJSON_GetObjectItem(c, "rouge");
    const char *want = cJSON_GetObjectItem(bleu, "str")->valuestring;
    CHECK(!strncmp(out, want, strlen(want)) && out[strlen(want)] == '\n', "%s: first line\n%s\nsacreBLEU:\n%s", name, out, want);
    CHECK(strstr(out, "\nROUGE-L = ") != NULL, "%s: a ROUGE-L line: %s", name, out);
    const char *j = strrchr(out, '{');
    cJSON *got = j ? cJSON_Parse(j) : NULL;
    CHECK(got != NULL, "%s: a JSON line last: %s", name, out);
    if (!got) return;
    close_to(cJSON_GetObjectItem(got, "bleu")->valuedouble, cJSON_GetObjectItem(bleu, "score")->valuedouble, "bleu");
    close_to(cJSON_GetObjectItem(got, "bp")->valuedouble, cJSON_GetObjectItem(bleu, "bp")->valuedouble, "bp");
    close_to(cJSON_GetObjectItem(got, "hyp_len")->valuedouble, cJSON_GetObjectItem(bleu, "sys_len")->valuedouble, "hyp_len");
    close_to(cJSON_GetObjectItem(got, "ref_len")->valuedouble, cJSON_GetObjectItem(bleu, "ref_len")->valuedouble, "ref_len");
    for (int k = 0; k < 4; k++)
        close_to(cJSON_GetArrayItem(cJSON_GetObjectItem(got, "bleu_precisions"), k)->valuedouble,
                 cJSON_GetArrayItem(cJSON_GetObjectItem(bleu, "precisions"), k)->valuedouble, "precision");
    close_to(cJSON_GetObjectItem(got, "rougeL")->valuedouble, cJSON_GetObjectItem(rouge, "fmeasure")->valuedouble, "rougeL");
    close_to(cJSON_GetObjectItem(got, "rougeL_precision")->valuedouble, cJSON_GetObjectItem(rouge, "precision")->valuedouble,
             "rougeL precision");
    close_to(cJSON_GetObjectItem(got, "rougeL_recall")->valuedouble, cJSON_GetObjectItem(rouge, "recall")->valuedouble,
             "rougeL recall");
    CHECK(cJSON_GetObjectItem(got, "segments")->valuedouble == cJSON_GetArraySize(cJSON_GetObjectItem(c, "segments")),
          "%s: segments", name);
    cJSON_Delete(got);
}

TEST(two_reference_files_match_sacrebleu_and_rouge_score) {
    CHECK(run("%s score --hyp " CLI "hyp.txt --ref " CLI "ref1.txt --ref=" CLI "ref2.txt", bin()) == 0, "%s", out);
    check_output("two_reference_files");
    CHECK(run("%s score --json --hyp " CLI "hyp.txt --ref " CLI "ref1.txt --ref " CLI "ref2.txt", bin()) == 0, "%s", out);
    CHECK(out[0] == '{' && !strstr(out, "BLEU ="), "--json prints only the JSON line: %s", out);
}

TEST(e2e_references_jsonl_match_sacrebleu_and_rouge_score) {
    CHECK(run("%s score --hyp " CLI "e2e_hyp.txt --refs-jsonl " CLI "e2e_refs.jsonl", bin()) == 0, "%s", out);
    check_output("e2e_perturbed");
    printf("  %.*s", (int)(strchr(out, '\n') - out + 1), out);
    /* the same references under another field name */
    CHECK(run("sed 's/\"refs\"/\"references\"/' " CLI "e2e_refs.jsonl > %s/r.jsonl && %s score --hyp " CLI
              "e2e_hyp.txt --refs-jsonl %s/r.jsonl --field references", tmp, bin(), tmp) == 0, "%s", out);
    check_output("e2e_perturbed");
}

TEST(bad_input_names_the_file_and_line) {
    CHECK(run("%s score --ref " CLI "ref1.txt", bin()) == 2 && strstr(out, "--hyp FILE is required"), "%s", out);
    CHECK(run("%s score --hyp " CLI "hyp.txt", bin()) == 2 && strstr(out, "references are required"), "%s", out);
    CHECK(run("%s score --hyp " CLI "hyp.txt --ref " CLI "ref1.txt --refs-jsonl " CLI "e2e_refs.jsonl", bin()) == 2 &&
          strstr(out, "exclusive"), "%s", out);
    CHECK(run("%s score --hyp " CLI "hyp.txt --bogus", bin()) == 2 && strstr(out, "unknown option \"--bogus\""), "%s", out);
    CHECK(run("%s score --hyp " CLI "hyp.txt --ref " CLI "e2e_hyp.txt", bin()) == 1 &&
          strstr(out, "e2e_hyp.txt has 34 lines, the hypotheses (" CLI "hyp.txt) 20"), "%s", out);
    CHECK(run("%s score --hyp " CLI "hyp.txt --refs-jsonl " CLI "e2e_refs.jsonl", bin()) == 1 &&
          strstr(out, "e2e_refs.jsonl has 34 records, the hypotheses"), "%s", out);
    CHECK(run("%s score --hyp %s/absent.txt --ref " CLI "ref1.txt", bin(), tmp) == 1 && strstr(out, "absent.txt"), "%s", out);
    CHECK(run(": > %s/empty.txt && %s score --hyp %s/empty.txt --ref %s/empty.txt", tmp, bin(), tmp, tmp) == 1 &&
          strstr(out, "empty.txt: no lines"), "%s", out);
    CHECK(run("printf 'a b\\nc \\377 d\\n' > %s/bad.txt && %s score --hyp %s/bad.txt --ref %s/bad.txt", tmp, bin(), tmp, tmp) == 1 &&
          strstr(out, "bad.txt:2: invalid UTF-8"), "%s", out);
    CHECK(run("printf 'a\\nb\\n' > %s/h.txt && printf '{\"refs\": [\"a\"]}\\n{\"refs\": []}\\n' > %s/r.jsonl && "
              "%s score --hyp %s/h.txt --refs-jsonl %s/r.jsonl", tmp, tmp, bin(), tmp, tmp) == 1 &&
          strstr(out, "r.jsonl:2: field \"refs\" is an empty list"), "%s", out);
    CHECK(run("printf '{\"refs\": [\"a\", 3]}\\n{\"x\": 1}\\n' > %s/r.jsonl && %s score --hyp %s/h.txt --refs-jsonl %s/r.jsonl",
              tmp, bin(), tmp, tmp) == 1 && strstr(out, "r.jsonl:1: reference 2 of field \"refs\" is a number"), "%s", out);
    CHECK(run("printf '{\"refs\": \"a\"}\\n{\"x\": 1}\\n' > %s/r.jsonl && %s score --hyp %s/h.txt --refs-jsonl %s/r.jsonl",
              tmp, bin(), tmp, tmp) == 1 && strstr(out, "r.jsonl:2: missing field \"refs\""), "%s", out);
    CHECK(run("printf '{\"refs\": \"a\"}\\n[1]\\n' > %s/r.jsonl && %s score --hyp %s/h.txt --refs-jsonl %s/r.jsonl",
              tmp, bin(), tmp, tmp) == 1 && strstr(out, "r.jsonl:2: record is an array"), "%s", out);
    /* one string is one reference; a last line without a newline counts */
    CHECK(run("printf '{\"refs\": \"a\"}\\n{\"refs\": \"b\"}' > %s/r.jsonl && printf 'a\\nb' > %s/h2.txt && "
              "%s score --hyp %s/h2.txt --refs-jsonl %s/r.jsonl --json", tmp, tmp, bin(), tmp, tmp) == 0 &&
          strstr(out, "\"segments\": 2") && strstr(out, "\"rougeL\": 1,"), "%s", out);
    CHECK(run("%s score --help", bin()) == 0 && strstr(out, "usage: cpeft score"), "%s", out);
}

int main(void) {
    if (cp_json_read_file("tests/fixtures/text_metrics/metrics.json", &fixture) != CP_OK) {
        fprintf(stderr, "%s\n", cp_last_error());
        return 1;
    }
    snprintf(tmp, sizeof tmp, "/tmp/cpeft-score-cli-XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    RUN(two_reference_files_match_sacrebleu_and_rouge_score);
    RUN(e2e_references_jsonl_match_sacrebleu_and_rouge_score);
    RUN(bad_input_names_the_file_and_line);
    printf("cpeft score: max relative difference to sacreBLEU / rouge-score %.3g\n", max_rel);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    cJSON_Delete(fixture);
    return test_summary();
}
