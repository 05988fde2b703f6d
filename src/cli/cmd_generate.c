/*
 * cmd_generate.c — `cpeft generate`: text from a model (and adapters), as transformers' generate().
 *
 * Prompts come from --prompt (repeatable), --prompts FILE (one per line, or JSONL) or --prompt-ids
 * (token ids, for models without a tokenizer). Each is optionally wrapped in the Alpaca template
 * training used (--template alpaca), tokenized with the model directory's tokenizer (special tokens
 * added as transformers' tokenizer(prompt) adds them) and generated in left-padded batches of
 * --batch-size. A single prompt streams its text to stdout as the tokens come; --json prints one
 * line per prompt instead. Everything about decoding lives in src/generate/; this file is options,
 * prompts and printing.
 */
#include "cli/adapter_args.h"
#include "cli/args.h"
#include "cli/chat_prompts.h"
#include "cli/commands.h"
#include "core/alloc.h"
#include "core/json_write.h"
#include "core/strbuf.h"
#include "io/json.h"
#include "models/model.h"
#include "train/data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: cpeft generate --model DIR [--adapter DIR[:NAME[:WEIGHT]]]...\n"
            "                      (--prompt TEXT... | --prompts FILE | --prompt-ids IDS...) [--max-new-tokens N]\n"
            "                      [--do-sample] [--temperature T] [--top-k K] [--top-p P] [--repetition-penalty R]\n"
            "                      [--seed S] [--stop STR]... [--template alpaca] [--json]\n"
            "                      [--adapter-names a,b,__base__] [--batch-size N] [--merge] [--no-cache]\n"
            "                      [--num-beams N] [--length-penalty X] [--early-stopping true|false|never]\n"
            "                      [--no-repeat-ngram-size K] [--num-return-sequences M]\n"
            "       cpeft generate --model DIR --chat (--system TEXT | --user TEXT | --assistant TEXT)...\n"
            "                      [--messages FILE] [--chat-template FILE] [options above]\n\n"
            "Generates text as transformers' generate() does: greedy unless --do-sample, a KV cache, several\n"
            "prompts in one left-padded batch. A single prompt streams to stdout as it is generated.\n\n"
            "  --model DIR             Hugging Face model directory (config.json, safetensors, tokenizer)\n"
            "  --adapter SPEC          a PEFT adapter directory, repeatable: DIR[:NAME[:WEIGHT]]; all are active\n"
            "                          together unless --adapter-names picks one per prompt\n"
            "  --prompt TEXT           a prompt (repeatable)\n"
            "  --prompts FILE          one prompt per line; a .jsonl/.json file holds one JSON value per line:\n"
            "                          a string, or an object with \"prompt\" or \"instruction\" (+ \"input\";\n"
            "                          rendered with the Alpaca template) and optional \"adapter\"\n"
            "  --prompt-ids IDS        a prompt as space-separated token ids (repeatable; no tokenizer needed)\n"
            "  --max-new-tokens N      new tokens per prompt at most (default 64)\n"
            "  --do-sample             sample instead of greedy decoding\n"
            "  --temperature T         > 0, sampling only (default: generation_config.json, else 1)\n"
            "  --top-k K               0 = off, sampling only (default: generation_config.json, else 50)\n"
            "  --top-p P               in (0, 1], sampling only (default: generation_config.json, else 1)\n"
            "  --repetition-penalty R  > 0, 1 = off; applies to greedy decoding too (default 1)\n"
            "  --seed S                prompt i samples from the stream seeded S + i (default 0)\n"
            "  --stop STR              stop a prompt once its new text contains STR (repeatable; \\n, \\t, \\\\\n"
            "                          are unescaped)\n"
            "  --template alpaca       wrap each prompt as an Alpaca instruction, as `cpeft train` did\n"
            "  --chat                  render conversations with the model's chat template and\n"
            "                          add_generation_prompt; print the assistant's reply (special tokens\n"
            "                          skipped), stopping at the template's end-of-turn (eos) token. A --prompt\n"
            "                          is then one user turn. Implied by the flags below\n"
            "  --system/--user/--assistant TEXT  one conversation's turns, in the order given\n"
            "  --messages FILE         a JSON list of {\"role\", \"content\"} (or {\"messages\": [...]}); JSONL: one\n"
            "                          conversation per line\n"
            "  --chat-template FILE    a .jinja template (or a tokenizer_config.json) instead of the model's\n"
            "  --json                  one line per prompt: {\"prompt\", \"text\", \"tokens\", \"finish\"}\n"
            "  --adapter-names LIST    comma-separated, one adapter name per prompt (\"__base__\" = none): a\n"
            "                          mixed-adapter batch, as PEFT's adapter_names\n"
            "  --batch-size N          prompts per batch (default 8)\n"
            "  --merge                 merge the adapters into the weights first (faster; same text)\n"
            "  --no-cache              recompute the whole sequence every step (slow; a check of the cache)\n"
            "  --num-beams N           beam search with N beams when N > 1, as generate(num_beams=N) (default:\n"
            "                          generation_config.json, else 1); no streaming, --do-sample or --stop\n"
            "  --length-penalty X      beam score = sum of log-probs / new_tokens^X (default 1)\n"
            "  --early-stopping WHEN   true: a prompt ends once N beams finished; false (default): once no running\n"
            "                          beam can beat the finished ones at its current length; never: at the best\n"
            "                          length it could reach\n"
            "  --no-repeat-ngram-size K  no K-gram twice in a sequence (prompt included; greedy and sampling too)\n"
            "  --num-return-sequences M  the best M ≤ N beams per prompt, each with its score (default 1)\n\n"
            "The model's eos ids (generation_config.json, else config.json) end a prompt. A prompt longer than\n"
            "the model's positions is truncated from the left with a warning. Details: docs/generate.md\n");
    fputs(CLI_QUANTIZE_HELP, f);
    fputs(CLI_EXACT_QUANT_HELP, f);
}

/* ---- prompts ----------------------------------------------------------------------------------- */

typedef struct {
    char *text;        /* the prompt as given (instruction for the Alpaca template); NULL for ids */
    char *input;       /* Alpaca "input" (may be NULL) */
    char *adapter;     /* per-prompt adapter from a JSONL file, or NULL */
    int32_t *ids;      /* token ids, after tokenizing */
    int64_t n_ids;
    char *ids_text;    /* --prompt-ids as given */
    int alpaca;        /* an instruction record: rendered with the Alpaca template */
} prompt;

typedef struct {
    prompt *p;
    int64_t n;
    size_t cap;
} prompt_list;

static prompt *prompt_add(prompt_list *l) {
    if (cp_grow(&l->p, &l->cap, (size_t)l->n + 1, sizeof *l->p, 8, "prompts")) return NULL;
    prompt *p = &l->p[l->n++];
    memset(p, 0, sizeof *p);
    return p;
}

static void prompts_free(prompt_list *l) {
    for (int64_t i = 0; i < l->n; i++) {
        cp_free(l->p[i].text);
        cp_free(l->p[i].input);
        cp_free(l->p[i].adapter);
        cp_free(l->p[i].ids);
        cp_free(l->p[i].ids_text);
    }
    cp_free(l->p);
}

static int has_suffix(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* One JSONL line: a string, or an object with "prompt" | "instruction" (+ "input"), "adapter". */
static cp_status parse_json_prompt(const char *line, const char *where, prompt *p) {
    cJSON *j;
    if (cp_json_parse(line, strlen(line), where, &j) != CP_OK) return CP_ERR;
    cp_status st = CP_OK;
    if (cJSON_IsString(j)) {
        p->text = cp_strdup(j->valuestring);
    } else if (cJSON_IsObject(j)) {
        const char *text = NULL, *instruction = NULL, *input = NULL, *adapter = NULL;
        if (cp_json_get_string(j, "prompt", NULL, 0, &text, where) != CP_OK ||
            cp_json_get_string(j, "instruction", NULL, 0, &instruction, where) != CP_OK ||
            cp_json_get_string(j, "input", NULL, 0, &input, where) != CP_OK ||
            cp_json_get_string(j, "adapter", NULL, 0, &adapter, where) != CP_OK)
            st = CP_ERR;
        else if (!text && !instruction)
            st = cp_error("%s: expected a \"prompt\" or an \"instruction\" field", where);
        else {
            p->text = cp_strdup(text ? text : instruction);
            p->alpaca = !text;
            if (input && input[0]) p->input = cp_strdup(input);
            if (adapter) p->adapter = cp_strdup(adapter);
        }
    } else {
        st = cp_error("%s: expected a JSON string or object, found %s", where, cp_json_type_name(j));
    }
    cJSON_Delete(j);
    if (st == CP_OK && !p->text) st = CP_ERR;
    return st;
}

static cp_status read_prompt_file(const char *path, prompt_list *l) {
    FILE *f = fopen(path, "r");
    if (!f) return cp_error("%s: cannot open: %s", path, strerror(errno));
    const int jsonl = has_suffix(path, ".jsonl") || has_suffix(path, ".json");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t lineno = 0;
    cp_status st = CP_OK;
    while (st == CP_OK && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) continue;
        prompt *p = prompt_add(l);
        if (!p) { st = CP_ERR; break; }
        if (jsonl) {
            char where[512];
            snprintf(where, sizeof where, "%s:%lld", path, (long long)lineno);
            st = parse_json_prompt(line, where, p);
        } else if (!(p->text = cp_strdup(line))) {
            st = CP_ERR;
        }
    }
    free(line);
    fclose(f);
    if (st == CP_OK && l->n == 0) st = cp_error("%s: no prompts", path);
    return st;
}

static cp_status parse_ids(const char *s, int64_t V, prompt *p) {
    int64_t cap = 16;
    p->ids = cp_malloc((size_t)cap * sizeof *p->ids, "token ids");
    if (!p->ids) return CP_ERR;
    const char *c = s;
    while (*c) {
        while (*c == ' ' || *c == ',' || *c == '\t') c++;
        if (!*c) break;
        char *end;
        errno = 0;
        long long v = strtoll(c, &end, 10);
        if (errno || end == c) return cp_error("--prompt-ids \"%s\": \"%.20s\" is not a token id", s, c);
        if (v < 0 || v >= V) return cp_error("--prompt-ids: token id %lld is outside the vocabulary [0, %lld)", v, (long long)V);
        if (p->n_ids == cap) {
            cap *= 2;
            int32_t *g = cp_realloc(p->ids, (size_t)cap * sizeof *g, "token ids");
            if (!g) return CP_ERR;
            p->ids = g;
        }
        p->ids[p->n_ids++] = (int32_t)v;
        c = end;
    }
    if (!p->n_ids) return cp_error("--prompt-ids \"%s\": no token ids", s);
    return CP_OK;
}

/* The Alpaca template by substitution (never as a printf format: '%' in a prompt stays itself). */
static char *render_alpaca(const char *instruction, const char *input) {
    const char *tpl = input ? CP_ALPACA_PROMPT_INPUT : CP_ALPACA_PROMPT_NO_INPUT;
    const char *args[2] = {instruction, input};
    cp_strbuf sb;
    cp_sb_init(&sb);
    int k = 0;
    for (const char *c = tpl; *c; c++) {
        if (c[0] == '%' && c[1] == 's') {
            cp_sb_printf(&sb, "%s", args[k++]);
            c++;
        } else {
            cp_sb_printf(&sb, "%c", *c);
        }
    }
    return cp_sb_finish(&sb);
}

/* Tokenizes prompt p as transformers' tokenizer(text) would (special tokens added); a trailing eos
 * the post-processor appended is dropped, as training's prompts drop it — unless the prompt is an
 * encoder-decoder's encoder input (keep_eos: T5's inputs end with </s>). */
static cp_status tokenize_prompt(const cp_tokenizer *tok, int alpaca, prompt *p, int64_t V, int64_t index, int keep_eos) {
    char *text = alpaca ? render_alpaca(p->text, p->input) : cp_strdup(p->text);
    if (!text) return CP_ERR;
    cp_encoding enc;
    memset(&enc, 0, sizeof enc);
    cp_status st = cp_tokenizer_encode(tok, text, strlen(text), 1, &enc);
    cp_free(text);
    size_t n = enc.n;
    const int32_t eos = cp_tokenizer_special_id(tok, CP_SPECIAL_EOS);
    if (st == CP_OK && !keep_eos && n > 0 && enc.ids[n - 1] == eos && enc.special_mask && enc.special_mask[n - 1]) n--;
    if (st == CP_OK && n == 0) st = cp_error("prompt %lld is empty after tokenization", (long long)index);
    if (st == CP_OK && !(p->ids = cp_malloc(n * sizeof *p->ids, "token ids"))) st = CP_ERR;
    for (size_t i = 0; st == CP_OK && i < n; i++) {
        if (enc.ids[i] < 0 || enc.ids[i] >= V)
            st = cp_error("prompt %lld: the tokenizer produced id %d, outside the model's vocabulary of %lld", (long long)index,
                          enc.ids[i], (long long)V);
        else p->ids[i] = enc.ids[i];
    }
    p->n_ids = (int64_t)n;
    cp_encoding_free(&enc);
    return st;
}

/* ---- streaming and printing ------------------------------------------------------------------- */

typedef struct {
    const cp_tokenizer *tok;
    int32_t *ids;
    int64_t n;
    size_t cap;
    size_t printed;   /* bytes of the decoded text already on stdout */
} stream_state;

/* Prints what the new token adds to the decoded text, holding back a trailing U+FFFD (a UTF-8
 * sequence the next tokens complete). */
static int stream_token(void *user, int64_t row, int32_t token) {
    stream_state *s = user;
    if (cp_grow(&s->ids, &s->cap, (size_t)s->n + 1, sizeof *s->ids, 64, "streamed tokens")) return 0;
    s->ids[s->n++] = token;
    char *text;
    size_t len;
    if (!s->tok || cp_tokenizer_decode(s->tok, s->ids, (size_t)s->n, 1, &text, &len) != CP_OK) return 0;
    if (len >= 3 && !memcmp(text + len - 3, "\xEF\xBF\xBD", 3)) len -= 3;
    if (len > s->printed) {
        fwrite(text + s->printed, 1, len - s->printed, stdout);
        fflush(stdout);
        s->printed = len;
    }
    free(text);
    return 0;
}

static const char *finish_name(cp_finish_reason f) {
    return f == CP_FINISH_EOS ? "eos" : f == CP_FINISH_STOP ? "stop" : "length";
}

/* One line: {"prompt", "text", "tokens", "finish"}, and with beam search "sequence" (1 = best of
 * the prompt's) and "score" (sequences_scores). */
static void print_json(const prompt *p, const char *text, size_t len, const int32_t *tokens, int64_t n,
                       cp_finish_reason finish, const float *score, int64_t rank, int chat) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "prompt", p->text ? p->text : p->ids_text);
    if (chat) { /* the rendered conversation's ids */
        cJSON *ids = cJSON_AddArrayToObject(o, "prompt_tokens");
        for (int64_t i = 0; i < p->n_ids; i++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(p->ids[i]));
    }
    if (text) { /* bytes with a length: cJSON strings end at a NUL, so the literal is built here */
        cp_strbuf sb;
        cp_sb_init(&sb);
        cp_json_write_string(&sb, text, len, 0);
        char *lit = cp_sb_finish(&sb);
        cJSON_AddRawToObject(o, "text", lit ? lit : "null");
        cp_free(lit);
    } else {
        cJSON_AddNullToObject(o, "text");
    }
    cJSON *arr = cJSON_AddArrayToObject(o, "tokens");
    for (int64_t i = 0; i < n; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(tokens[i]));
    cJSON_AddStringToObject(o, "finish", finish_name(finish));
    if (score) {
        cJSON_AddNumberToObject(o, "sequence", (double)(rank + 1));
        cJSON_AddNumberToObject(o, "score", (double)*score);
    }
    char *s = cJSON_PrintUnformatted(o);
    if (s) printf("%s\n", s);
    cJSON_free(s);
    cJSON_Delete(o);
}

/* --stop values: \n, \t and \\ unescaped in place. */
static void unescape(char *s) {
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (r[0] == '\\' && (r[1] == 'n' || r[1] == 't' || r[1] == '\\')) {
            *w++ = r[1] == 'n' ? '\n' : r[1] == 't' ? '\t' : '\\';
            r++;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the command ------------------------------------------------------------------------------- */

typedef struct {
    const char *model_dir, *prompts_file, *template_name, *adapter_names, *quantize;
    char *adapters[64];
    int n_adapters;
    char *stops[64];
    int n_stops;
    const char *texts[256], *id_texts[256];
    int n_texts, n_id_texts;
    int json, merge, no_cache, exact_quant;
    int64_t batch_size;
    /* explicit settings (flags below say which were given) */
    int64_t max_new, top_k, seed;
    double temperature, top_p, rep;
    int do_sample, has_max_new, has_top_k, has_seed, has_temperature, has_top_p, has_rep;
    int64_t num_beams, ngram, n_return;
    double length_penalty;
    const char *early_stopping;
    int has_num_beams, has_ngram, has_length_penalty, has_n_return;
    cli_chat chat;               /* --chat and its flags, taken out of argv first */
} gen_args;

/* Returns 0 on success, 2 on a usage error (already printed). */
static int parse_args(int argc, char **argv, gen_args *a) {
    a->batch_size = 8;
    const cp_opt options[] = {
        {CP_FLAG("--json", &a->json)},
        {CP_FLAG("--do-sample", &a->do_sample)},
        {CP_FLAG("--merge", &a->merge)},
        {CP_FLAG("--no-cache", &a->no_cache)},
        {CP_FLAG("--exact-quant", &a->exact_quant)},
        {CP_STRING("--model", &a->model_dir)},
        {CP_STRING("--prompts", &a->prompts_file)},
        {CP_STRING("--quantize", &a->quantize)},
        {CP_STRING("--template", &a->template_name)},
        {CP_STRING("--adapter-names", &a->adapter_names)},
        {CLI_ADAPTER_OPTION(a->adapters, &a->n_adapters)},
        {CP_LIST("--stop", a->stops, 64, &a->n_stops, "at most 64 --stop options")},
        {CP_LIST("--prompt", a->texts, 256, &a->n_texts, "at most 256 --prompt options (use --prompts FILE)")},
        {CP_LIST("--prompt-ids", a->id_texts, 256, &a->n_id_texts, "at most 256 --prompt-ids options")},
        {CP_INT("--max-new-tokens", &a->max_new, 0, 1 << 24), .given = &a->has_max_new},
        {CP_INT("--top-k", &a->top_k, 0, INT32_MAX), .given = &a->has_top_k},
        {CP_INT("--seed", &a->seed, 0, INT64_MAX), .given = &a->has_seed},
        {CP_INT("--batch-size", &a->batch_size, 1, 1 << 16)},
        {CP_DOUBLE("--temperature", &a->temperature), .given = &a->has_temperature},
        {CP_DOUBLE("--top-p", &a->top_p), .given = &a->has_top_p},
        {CP_DOUBLE("--repetition-penalty", &a->rep), .given = &a->has_rep},
        {CP_INT("--num-beams", &a->num_beams, 1, 1 << 16), .given = &a->has_num_beams},
        {CP_INT("--no-repeat-ngram-size", &a->ngram, 0, 1 << 16), .given = &a->has_ngram},
        {CP_INT("--num-return-sequences", &a->n_return, 1, 1 << 16), .given = &a->has_n_return},
        {CP_DOUBLE("--length-penalty", &a->length_penalty), .given = &a->has_length_penalty},
        {CP_STRING("--early-stopping", &a->early_stopping)},
        {0},
    };
    const cp_args_spec spec = {.cmd = "generate", .opts = options, .help = help, .unknown = "unknown argument %s",
                               .help_after_unknown = 1};
    int r = cp_args_parse(&spec, argc, argv, 1);
    if (r == 0) exit(0); /* --help */
    if (r > 0) return r;
    const int chat_given = a->chat.turns || a->chat.messages_file;
    if (a->chat.chat && (a->prompts_file || a->n_id_texts || a->template_name)) {
        fprintf(stderr, "cpeft generate: --chat takes --system / --user / --assistant, --messages FILE or --prompt TEXT "
                        "(not --prompts, --prompt-ids or --template)\n");
        return 2;
    }
    const int sources = (a->n_texts > 0 || chat_given) + (a->prompts_file != NULL) + (a->n_id_texts > 0);
    if (!a->model_dir || sources != 1) {
        fprintf(stderr, "cpeft generate: needs --model and exactly one of --prompt, --prompts, --prompt-ids\n");
        help(stderr);
        return 2;
    }
    if (a->template_name && strcmp(a->template_name, "alpaca")) {
        fprintf(stderr, "cpeft generate: --template: unknown template \"%s\" (supported: alpaca)\n", a->template_name);
        return 2;
    }
    if (a->template_name && a->n_id_texts) {
        fprintf(stderr, "cpeft generate: --template applies to text prompts, not --prompt-ids\n");
        return 2;
    }
    if (a->has_temperature && a->do_sample && !(a->temperature > 0)) {
        fprintf(stderr, "cpeft generate: --temperature must be > 0 when sampling (found %g); for greedy decoding leave "
                        "out --do-sample\n", a->temperature);
        return 2;
    }
    if (a->has_top_p && !(a->top_p > 0 && a->top_p <= 1)) {
        fprintf(stderr, "cpeft generate: --top-p must be in (0, 1], found %g\n", a->top_p);
        return 2;
    }
    if (a->early_stopping && strcmp(a->early_stopping, "true") && strcmp(a->early_stopping, "false") &&
        strcmp(a->early_stopping, "never")) {
        fprintf(stderr, "cpeft generate: --early-stopping must be true, false or never, found \"%s\"\n", a->early_stopping);
        return 2;
    }
    if (a->has_rep && !(a->rep > 0)) {
        fprintf(stderr, "cpeft generate: --repetition-penalty must be > 0, found %g\n", a->rep);
        return 2;
    }
    return 0;
}

/* Splits "a,b,__base__" into n names; the count must equal the prompts'. */
static cp_status split_names(const char *list, int64_t n_prompts, char ***out) {
    int64_t n = 1;
    for (const char *c = list; *c; c++) n += *c == ',';
    if (n != n_prompts)
        return cp_error("Length of `adapter_names` should be the same as the number of inputs, but got %lld and %lld "
                        "respectively.", (long long)n, (long long)n_prompts);
    char **names = cp_calloc((size_t)n, sizeof *names, "adapter names");
    if (!names) return CP_ERR;
    const char *c = list;
    for (int64_t i = 0; i < n; i++) {
        const char *e = strchr(c, ',');
        size_t len = e ? (size_t)(e - c) : strlen(c);
        names[i] = cp_malloc(len + 1, "an adapter name");
        if (!names[i]) return CP_ERR;
        memcpy(names[i], c, len);
        names[i][len] = '\0';
        c = e ? e + 1 : c + len;
    }
    *out = names;
    return CP_OK;
}

int cmd_generate(int argc, char **argv) {
    gen_args a;
    memset(&a, 0, sizeof a);
    int rc = cli_chat_take_args(&argc, argv, &a.chat);
    if (!rc) rc = parse_args(argc, argv, &a);
    if (rc) { cli_chat_free(&a.chat); return rc; }
    for (int i = 0; i < a.n_stops; i++) unescape(a.stops[i]);

    cp_model *m = NULL;
    cp_tokenizer *tok = NULL;
    prompt_list prompts = {0};
    char **names = NULL;
    cp_generation gen = {0};
    int load_flags = CP_LOAD_WEIGHTS;
    if ((rc = cli_quantize_flags("generate", a.quantize, &load_flags))) return rc;
    cp_status st = cli_model_load_task(&m, a.model_dir, load_flags, NULL);
    if (st == CP_OK) st = cli_load_adapters(m, a.adapters, a.n_adapters);
    if (st == CP_OK && a.merge) st = cp_model_merge_adapters(m);
    if (st == CP_OK) cp_model_set_quant_act8(m, !a.exact_quant); /* decoding: 8-bit activations for quantized weights */
    const int64_t V = st == CP_OK ? cp_model_vocab_size(m) : 0;

    /* prompts */
    for (int i = 0; st == CP_OK && !a.chat.chat && i < a.n_texts; i++) {
        prompt *p = prompt_add(&prompts);
        if (!p || !(p->text = cp_strdup(a.texts[i]))) st = CP_ERR;
    }
    for (int i = 0; st == CP_OK && i < a.n_id_texts; i++) {
        prompt *p = prompt_add(&prompts);
        if (!p || !(p->ids_text = cp_strdup(a.id_texts[i]))) st = CP_ERR;
        else st = parse_ids(a.id_texts[i], V, p);
    }
    if (st == CP_OK && a.prompts_file) st = read_prompt_file(a.prompts_file, &prompts);

    /* the tokenizer: needed for text prompts and stop strings, used for output text when present */
    const int need_tok = a.n_texts || a.prompts_file || a.n_stops;
    if (st == CP_OK && cli_tokenizer_load(&tok, a.model_dir) != CP_OK) {
        if (need_tok) st = cp_error_context("%s: text prompts and stop strings need the model's tokenizer", a.model_dir);
        tok = NULL;
    }
    cp_chat_template *tmpl = NULL;
    cJSON *convs = NULL;
    if (st == CP_OK && a.chat.chat) { /* each conversation rendered with add_generation_prompt */
        if (!tok) st = cp_error("%s: --chat needs the model's tokenizer", a.model_dir);
        if (st == CP_OK) st = cli_chat_template(&a.chat, a.model_dir, tok, &tmpl);
        if (st == CP_OK) st = cli_chat_conversations(&a.chat, a.texts, a.n_texts, &convs);
        for (const cJSON *c = convs ? convs->child : NULL; st == CP_OK && c; c = c->next) {
            prompt *p = prompt_add(&prompts);
            if (!p) st = CP_ERR;
            else st = cli_chat_render(tmpl, c, tok, &p->text, &p->ids, &p->n_ids);
            for (int64_t k = 0; st == CP_OK && k < p->n_ids; k++)
                if (p->ids[k] < 0 || p->ids[k] >= V)
                    st = cp_error("conversation %lld: the tokenizer produced id %d, outside the model's vocabulary of %lld",
                                  (long long)prompts.n, p->ids[k], (long long)V);
        }
    }
    for (int64_t i = 0; st == CP_OK && i < prompts.n; i++)
        if (!prompts.p[i].ids)
            st = tokenize_prompt(tok, a.template_name || prompts.p[i].alpaca, &prompts.p[i], V, i + 1,
                                 !strcmp(cp_model_task_type(m), "SEQ_2_SEQ_LM"));

    /* per-prompt adapters: --adapter-names, or "adapter" fields of a JSONL file */
    int file_names = 0;
    for (int64_t i = 0; i < prompts.n; i++) file_names |= prompts.p[i].adapter != NULL;
    if (st == CP_OK && a.adapter_names && file_names)
        st = cp_error("give per-prompt adapters either with --adapter-names or in the prompts file, not both");
    if (st == CP_OK && a.adapter_names) st = split_names(a.adapter_names, prompts.n, &names);
    if (st == CP_OK && file_names) {
        if (!(names = cp_calloc((size_t)prompts.n, sizeof *names, "adapter names"))) st = CP_ERR;
        for (int64_t i = 0; st == CP_OK && i < prompts.n; i++)
            if (!(names[i] = cp_strdup(prompts.p[i].adapter ? prompts.p[i].adapter : "__base__"))) st = CP_ERR;
    }

    cp_generate_options opt;
    if (st == CP_OK) st = cp_generate_options_init(m, &opt);
    if (st == CP_OK) {
        opt.max_new_tokens = a.has_max_new ? a.max_new : opt.max_new_tokens;
        opt.do_sample = a.do_sample;
        if (a.has_temperature) opt.temperature = a.temperature;
        if (a.has_top_k) opt.top_k = a.top_k;
        if (a.has_top_p) opt.top_p = a.top_p;
        if (a.has_rep) opt.repetition_penalty = a.rep;
        opt.tokenizer = tok;
        opt.stop_strings = (const char *const *)a.stops;
        opt.n_stop_strings = a.n_stops;
        opt.no_cache = a.no_cache;
        if (a.has_num_beams) opt.num_beams = a.num_beams;
        if (a.has_length_penalty) opt.length_penalty = a.length_penalty;
        if (a.has_ngram) opt.no_repeat_ngram_size = a.ngram;
        if (a.has_n_return) opt.num_return_sequences = a.n_return;
        /* --chat: the template's end of turn (the tokenizer's eos, <|im_end|> for ChatML) ends the reply,
         * as TRL adds it to generation_config's eos ids */
        const int32_t eot = a.chat.chat && tok ? cp_tokenizer_special_id(tok, CP_SPECIAL_EOS) : CP_TOKEN_NONE;
        int have = eot == CP_TOKEN_NONE;
        for (int k = 0; k < opt.n_eos; k++) have |= opt.eos_token_ids[k] == eot;
        if (!have && opt.n_eos < CP_MAX_EOS) opt.eos_token_ids[opt.n_eos++] = eot;
        if (a.early_stopping)
            opt.early_stopping = !strcmp(a.early_stopping, "true")    ? CP_EARLY_STOPPING_TRUE
                                 : !strcmp(a.early_stopping, "never") ? CP_EARLY_STOPPING_NEVER
                                                                      : CP_EARLY_STOPPING_FALSE;
    }

    const int streaming = st == CP_OK && prompts.n == 1 && !a.json && opt.num_beams == 1;
    stream_state stream = {.tok = tok};
    int64_t total_new = 0;
    double t0 = now_seconds();
    for (int64_t first = 0; st == CP_OK && first < prompts.n; first += a.batch_size) {
        const int64_t n = prompts.n - first < a.batch_size ? prompts.n - first : a.batch_size;
        const int32_t **ids = cp_calloc((size_t)n, sizeof *ids, "prompts");
        int64_t *lens = cp_calloc((size_t)n, sizeof *lens, "prompt lengths");
        if (!ids || !lens) st = CP_ERR;
        for (int64_t i = 0; st == CP_OK && i < n; i++) {
            ids[i] = prompts.p[first + i].ids;
            lens[i] = prompts.p[first + i].n_ids;
        }
        opt.seed = (uint64_t)a.seed + (uint64_t)first;
        opt.adapter_names = names ? (const char *const *)names + first : NULL;
        opt.on_token = streaming ? stream_token : NULL;
        opt.user = &stream;
        if (st == CP_OK) st = cp_model_generate(m, ids, lens, n, &opt, &gen);
        cp_free(ids);
        cp_free(lens);
        /* gen.n = n · num_return_sequences: sequence q of prompt q / nrs, best first */
        const int64_t nrs = st == CP_OK && gen.num_return_sequences > 0 ? gen.num_return_sequences : 1;
        for (int64_t q = 0; st == CP_OK && q < gen.n; q++) {
            const int64_t i = q / nrs, rank = q % nrs;
            const prompt *p = &prompts.p[first + i];
            const float *score = gen.sequences_scores ? &gen.sequences_scores[q] : NULL;
            char *text = NULL;
            size_t len = 0;
            if (tok && cp_tokenizer_decode(tok, gen.tokens[q], (size_t)gen.n_tokens[q], 1, &text, &len) != CP_OK) st = CP_ERR;
            total_new += gen.n_tokens[q];
            if (st != CP_OK) {
            } else if (a.json) {
                print_json(p, text, len, gen.tokens[q], gen.n_tokens[q], gen.finish[q], score, rank, a.chat.chat);
            } else if (score) {
                if (!rank)
                    printf("%s### prompt %lld: %s\n", first + i ? "\n" : "", (long long)(first + i + 1), p->text ? p->text : p->ids_text);
                if (nrs > 1) printf("--- sequence %lld, score %.6g\n", (long long)(rank + 1), (double)*score);
                if (text) { fwrite(text, 1, len, stdout); fputc('\n', stdout); }
                else for (int64_t k = 0; k < gen.n_tokens[q]; k++) printf("%d%c", gen.tokens[q][k], k + 1 < gen.n_tokens[q] ? ' ' : '\n');
            } else if (streaming) {
                if (text && len > stream.printed) fwrite(text + stream.printed, 1, len - stream.printed, stdout);
                if (!tok) for (int64_t k = 0; k < gen.n_tokens[q]; k++) printf("%s%d", k ? " " : "", gen.tokens[q][k]);
                printf("\n");
            } else {
                printf("%s### prompt %lld: %s\n", first + i ? "\n" : "", (long long)(first + i + 1), p->text ? p->text : p->ids_text);
                if (text) { fwrite(text, 1, len, stdout); fputc('\n', stdout); }
                else for (int64_t k = 0; k < gen.n_tokens[q]; k++) printf("%d%c", gen.tokens[q][k], k + 1 < gen.n_tokens[q] ? ' ' : '\n');
            }
            free(text);
        }
        fflush(stdout);
        cp_generation_free(&gen);
    }
    double seconds = now_seconds() - t0;
    if (st == CP_OK && !a.json && isatty(2))
        fprintf(stderr, "cpeft generate: %lld new tokens in %.2f s (%.1f tokens/s)\n", (long long)total_new, seconds,
                (double)total_new / (seconds > 0 ? seconds : 1));
    rc = 0;
    if (st != CP_OK) {
        fprintf(stderr, "cpeft generate: %s\n", cp_last_error());
        rc = 1;
    }
    for (int64_t i = 0; names && i < prompts.n; i++) cp_free(names[i]);
    cp_free(names);
    cp_free(stream.ids);
    prompts_free(&prompts);
    cJSON_Delete(convs);
    cp_chat_template_free(tmpl);
    cli_chat_free(&a.chat);
    cp_tokenizer_free(tok);
    cp_model_free(m);
    return rc;
}
