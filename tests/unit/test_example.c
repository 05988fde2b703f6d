/*
 * test_example.c — examples/finetune.c, built against libcpeft.so with include/cpeft.h alone
 * ($CPEFT_BUILD/examples/finetune), run on the tiny GPT-2 of the fixtures (tests/fixtures/eval/gpt2_vocab
 * with GPT-2's tokenizer) and a Shakespeare excerpt: it exits 0, logs one finite loss per step, its
 * held-out loss after training is below the one before, and the adapter it saved loads through the
 * public API, lowers the loss of a batch of the text it trained on, and generates the very tokens the
 * example printed.
 */
#include "test.h"
#include "run_cmd.h"
#include "cpeft.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define STEPS 12

static const char *build_dir(void) {
    const char *b = getenv("CPEFT_BUILD");
    return b ? b : "build";
}

/* The loss of the text's first 32 tokens as one batch. */
static double text_loss(cp_model *m, const cp_tokenizer *tok) {
    static const char text[] = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
                               "First Citizen:\nYou are all resolved rather to die than to famish?\n";
    cp_encoding enc = {0};
    if (cp_tokenizer_encode(tok, text, sizeof text - 1, 1, &enc) != CP_OK || enc.n < 32) return NAN;
    int64_t ids[32];
    for (int i = 0; i < 32; i++) ids[i] = enc.ids[i];
    cp_encoding_free(&enc);
    cp_batch b = {.B = 1, .T = 32, .input_ids = ids, .labels = ids};
    cp_outputs out = {0};
    return cp_model_forward(m, &b, &out) == CP_OK ? out.loss : NAN;
}

TEST(finetune_example_trains_generates_and_saves) {
    char dir[] = "/tmp/cpeft-example-XXXXXX", cmd[4096];
    static char out[65536];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(cmd, sizeof cmd, "mkdir -p %s/tm && cp tests/fixtures/eval/gpt2_vocab/config.json tests/fixtures/eval/gpt2_vocab/model.safetensors "
             "tests/fixtures/eval/gpt2_vocab/generation_config.json ../shared/data/gpt2-tokenizer/tokenizer.json %s/tm/ 2>&1", dir, dir);
    CHECK(run_cmd(out, sizeof out, cmd) == 0, "model directory: %s", out);

    /* the example links the shared library, not the static one */
    snprintf(cmd, sizeof cmd, "readelf -d %s/examples/finetune 2>&1", build_dir());
    char needed[64];
    snprintf(needed, sizeof needed, "[libcpeft.so.%d]", CPEFT_ABI_VERSION);
    CHECK(run_cmd(out, sizeof out, cmd) == 0 && strstr(out, needed), "%s/examples/finetune does not load %s: %s", build_dir(), needed, out);

    snprintf(cmd, sizeof cmd, "%s/examples/finetune %s/tm tests/fixtures/eval/shakespeare.txt %s/out %d 2>&1", build_dir(), dir, dir, STEPS);
    int rc = run_cmd(out, sizeof out, cmd);
    CHECK(rc == 0, "%s exited %d:\n%s", cmd, rc, out);

    /* one finite loss per step, and the held-out loss before and after */
    int n_steps = 0, n_eval = 0, all_finite = 1;
    double eval[2] = {NAN, NAN}, first = NAN, last = NAN;
    for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        long long s, total;
        double loss;
        if (sscanf(l, "step %lld/%lld | loss %lf", &s, &total, &loss) == 3) {
            CHECK(s == n_steps + 1 && total == STEPS, "step line %lld/%lld after %d steps", s, total, n_steps);
            all_finite &= isfinite(loss) != 0;
            if (!n_steps) first = loss;
            last = loss;
            n_steps++;
        } else if (sscanf(l, "step %lld/%lld | eval loss %lf", &s, &total, &loss) == 3) {
            if (n_eval < 2) eval[n_eval] = loss;
            n_eval++;
        }
    }
    printf("  %d steps, loss %.4f -> %.4f; held-out loss %.4f before, %.4f after\n", n_steps, first, last, eval[0], eval[1]);
    CHECK(n_steps == STEPS && all_finite, "%d step lines (want %d), all finite: %d\n%s", n_steps, STEPS, all_finite, out);
    CHECK(n_eval == 2 && eval[1] < eval[0], "held-out loss %.6f before, %.6f after (%d evaluations)", eval[0], eval[1], n_eval);

    /* the saved adapter: loadable, it lowers the loss of the text it trained on, and it generates
     * what the example printed */
    const char *ids_line = strstr(out, "generated ids:");
    CHECK(ids_line != NULL, "no generation printed:\n%s", out);
    char path[1024];
    snprintf(path, sizeof path, "%s/tm", dir);
    cp_model *m = NULL;
    cp_tokenizer *tok = NULL;
    CHECK_OK(cp_model_load(&m, path, CP_LOAD_WEIGHTS));
    CHECK_OK(cp_tokenizer_load_dir(&tok, path));
    if (m && tok && ids_line) {
        double base = text_loss(m, tok);
        snprintf(path, sizeof path, "%s/out", dir);
        CHECK_OK(cp_model_load_adapter(m, path, "default", 0));
        double adapted = text_loss(m, tok);
        printf("  the saved adapter: loss of a training batch %.4f without it, %.4f with it\n", base, adapted);
        CHECK(isfinite(base) && isfinite(adapted) && adapted < base, "base %.6f, adapted %.6f", base, adapted);
        static const char prompt[] = "First Citizen:\n";
        cp_encoding enc = {0};
        CHECK_OK(cp_tokenizer_encode(tok, prompt, sizeof prompt - 1, 1, &enc));
        cp_generate_options g;
        CHECK_OK(cp_generate_options_init(m, &g));
        g.max_new_tokens = 12;
        const int32_t *prompts[1] = {enc.ids};
        const int64_t lens[1] = {(int64_t)enc.n};
        cp_generation gen = {0};
        CHECK_OK(cp_model_generate(m, prompts, lens, 1, &g, &gen));
        char want[1024] = "generated ids:";
        for (int64_t i = 0; gen.n && i < gen.n_tokens[0]; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), " %d", gen.tokens[0][i]);
        strncat(want, "\n", sizeof want - strlen(want) - 1);
        CHECK(!strncmp(ids_line, want, strlen(want)), "the saved adapter generates\n%sthe example printed\n%.*s", want,
              (int)(strchr(ids_line, '\n') ? strchr(ids_line, '\n') - ids_line + 1 : 0), ids_line);
        cp_generation_free(&gen);
        cp_encoding_free(&enc);
    }
    cp_tokenizer_free(tok);
    cp_model_free(m);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    run_cmd(out, sizeof out, cmd);
}

int main(void) {
    RUN(finetune_example_trains_generates_and_saves);
    return test_summary();
}
