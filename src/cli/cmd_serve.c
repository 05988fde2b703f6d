/*
 * cmd_serve.c — `cpeft serve`: one base model, any number of LoRA adapters, an OpenAI-compatible
 * HTTP API (serve/api.h) with continuous batching (serve/engine.h). This file is options, loading,
 * signals and the shutdown order; docs/serve.md is the design.
 *
 * Shutdown (SIGTERM or SIGINT): stop accepting connections and jobs (new requests on open
 * connections get 503), let running and queued requests finish for up to --shutdown-timeout
 * seconds, end what is left with an error, close every connection, exit 0.
 */
#include "chat/chat_template.h"
#include "cli/adapter_args.h"
#include "cli/args.h"
#include "cli/chat_prompts.h"
#include "cli/commands.h"
#include "core/alloc.h"
#include "models/model.h"
#include "peft/adapter_io.h"
#include "serve/api.h"
#include "serve/http.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: cpeft serve --model DIR|FILE.gguf [--adapter DIR[:NAME]]... [--host 127.0.0.1] [--port 8000]\n"
            "                   [--model-name NAME] [--chat-template FILE] [--max-batch 16] [--max-queue 64]\n"
            "                   [--max-context N] [--max-tokens 256] [--max-body-bytes 1048576]\n"
            "                   [--max-connections 256] [--shutdown-timeout 30] [--quantize TYPE] [--exact-quant]\n\n"
            "An OpenAI-compatible server: /v1/completions, /v1/chat/completions (streaming with \"stream\": true),\n"
            "/v1/models, /health, and POST /v1/adapters {\"name\", \"path\"} / DELETE /v1/adapters/NAME to load and\n"
            "unload adapters while it runs. A request's \"model\" names an adapter, or the base model (no adapter).\n"
            "Running requests are decoded together, one batched forward per token (continuous batching).\n\n"
            "  --model PATH          Hugging Face model directory or GGUF file\n"
            "  --adapter DIR[:NAME]  a PEFT LoRA adapter served as NAME (default: the directory's name); repeatable\n"
            "  --host ADDR           the address to listen on (default 127.0.0.1: this machine only)\n"
            "  --port N              the port (default 8000; 0: any free port, printed)\n"
            "  --model-name NAME     the base model's name in \"model\" (default: the model directory's name)\n"
            "  --chat-template FILE  a .jinja template or tokenizer_config.json instead of the model's\n"
            "  --max-batch N         requests decoded together (default 16)\n"
            "  --max-queue N         requests waiting for a place in the batch; beyond, 429 (default 64)\n"
            "  --max-context N       prompt + completion tokens per request (default: the model's positions)\n"
            "  --max-tokens N        completion tokens when a request gives no max_tokens (default 256)\n"
            "  --max-body-bytes N    larger request bodies are answered 413 (default 1 MiB)\n"
            "  --max-connections N   open connections at most (default 256)\n"
            "  --shutdown-timeout S  on SIGTERM, seconds running requests may take to finish (default 30)\n"
            "  --exact-quant         quantized weights multiply f32 activations (default: rounded to 8 bits per\n"
            "                        block while decoding, as llama.cpp does; faster, not bit-equal)\n"
            "  --step-delay-ms N     pause before every decode step (for tests of the queue; default 0)\n");
    fputs(CLI_QUANTIZE_HELP, f);
}

/* The name a path serves under: its last component, without ".gguf". */
static char *base_name(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t s = n;
    while (s > 0 && path[s - 1] != '/') s--;
    char *name = cp_malloc(n - s + 1, "a name");
    if (!name) return NULL;
    memcpy(name, path + s, n - s);
    name[n - s] = '\0';
    const size_t k = strlen(name);
    if (k > 5 && !strcmp(name + k - 5, ".gguf")) name[k - 5] = '\0';
    return name;
}

static int load_adapters(cp_serve_engine *e, char *const *specs, int n) {
    for (int i = 0; i < n; i++) {
        char *dir = NULL, *name = NULL;
        double weight = 1.0;
        if (cp_adapter_spec_parse(specs[i], &dir, &name, &weight) != CP_OK) return 1;
        if (!name[0]) {
            cp_free(name);
            name = base_name(dir);
        }
        cp_status st = name ? CP_OK : CP_ERR;
        if (st == CP_OK && weight != 1.0) st = cp_error("--adapter %s: serve takes DIR[:NAME] (no weight)", specs[i]);
        if (st == CP_OK) st = cp_serve_adapter_load(e, dir, name);
        if (st == CP_OK) fprintf(stderr, "cpeft serve: adapter %s from %s\n", name, dir);
        cp_free(dir);
        cp_free(name);
        if (st != CP_OK) return 1;
    }
    return 0;
}

int cmd_serve(int argc, char **argv) {
    const char *model_dir = NULL, *host = "127.0.0.1", *model_name = NULL, *template_file = NULL, *quantize = NULL;
    char *adapters[64];
    int n_adapters = 0;
    int64_t port = 8000, max_batch = 16, max_queue = 64, max_context = 0, max_tokens = 256, max_body = 1 << 20,
            max_conn = 256, shutdown_s = 30, step_delay = 0;
    int exact_quant = 0;
    const cp_opt options[] = {
        {CP_STRING("--model", &model_dir)},
        {CP_STRING("--host", &host)},
        {CP_STRING("--model-name", &model_name)},
        {CP_STRING("--chat-template", &template_file)},
        {CP_STRING("--quantize", &quantize)},
        {CP_FLAG("--exact-quant", &exact_quant)},
        {CLI_ADAPTER_OPTION(adapters, &n_adapters)},
        {CP_INT("--port", &port, 0, 65535)},
        {CP_INT("--max-batch", &max_batch, 1, 1024)},
        {CP_INT("--max-queue", &max_queue, 0, 1 << 20)},
        {CP_INT("--max-context", &max_context, 2, 1 << 24)},
        {CP_INT("--max-tokens", &max_tokens, 1, 1 << 24)},
        {CP_INT("--max-body-bytes", &max_body, 1024, (int64_t)1 << 32)},
        {CP_INT("--max-connections", &max_conn, 1, 1 << 16)},
        {CP_INT("--shutdown-timeout", &shutdown_s, 0, 1 << 20)},
        {CP_INT("--step-delay-ms", &step_delay, 0, 60000)},
        {0},
    };
    const cp_args_spec spec = {.cmd = "serve", .opts = options, .help = help, .unknown = "unknown argument %s",
                               .help_after_unknown = 1};
    int rc = cp_args_parse(&spec, argc, argv, 1);
    if (rc == 0) return 0;
    if (rc > 0) return rc;
    if (!model_dir) {
        fprintf(stderr, "cpeft serve: needs --model\n");
        help(stderr);
        return 2;
    }
    int load_flags = CP_LOAD_WEIGHTS;
    if ((rc = cli_quantize_flags("serve", quantize, &load_flags))) return rc;

    /* every thread started from here on inherits the mask: only sigwait below sees SIGTERM / SIGINT */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    cp_model *m = NULL;
    cp_tokenizer *tok = NULL;
    cp_chat_template *tmpl = NULL;
    cp_serve_engine *engine = NULL;
    cp_serve_http *http = NULL;
    char *name = model_name ? cp_strdup(model_name) : base_name(model_dir);
    cp_status st = name ? CP_OK : CP_ERR;
    if (st == CP_OK) st = cli_model_load_task(&m, model_dir, load_flags, NULL);
    if (st == CP_OK) cp_model_set_quant_act8(m, !exact_quant); /* decoding: 8-bit activations for quantized weights */
    if (st == CP_OK && strcmp(cp_model_task_type(m), "CAUSAL_LM")) st = cp_error("%s: cpeft serve runs causal language models", model_dir);
    if (st == CP_OK) st = cli_tokenizer_load(&tok, model_dir);
    if (st == CP_OK) {
        const cli_chat c = {.template_file = template_file};
        if (cli_chat_template(&c, model_dir, tok, &tmpl) != CP_OK) {
            if (template_file) st = CP_ERR;
            else fprintf(stderr, "cpeft serve: no chat template (%s): /v1/chat/completions will answer 400\n", cp_last_error());
            tmpl = NULL;
        }
    }
    cp_generate_options opt;
    if (st == CP_OK) st = cp_generate_options_init(m, &opt);
    const int64_t positions = m ? m->config.max_positions : 0;
    if (!max_context) max_context = positions > 1 ? positions : 2048;
    if (st == CP_OK && !m->arch->rotary_positions && max_context > positions)
        st = cp_error("--max-context %lld: the model has %lld learned positions", (long long)max_context, (long long)positions);
    const cp_serve_limits lim = {.max_batch = max_batch, .max_queue = max_queue, .max_context = max_context,
                                 .step_delay_ms = (int)step_delay};
    if (st == CP_OK) st = cp_serve_engine_start(&engine, m, tok, &opt, &lim);
    if (st == CP_OK && load_adapters(engine, adapters, n_adapters)) st = CP_ERR;
    const cp_serve_api api = {.engine = engine, .tok = tok, .chat = tmpl, .model_name = name,
                              .vocab_size = m ? cp_model_vocab_size(m) : 0, .max_context = max_context,
                              .default_max_tokens = max_tokens, .created = (int64_t)time(NULL)};
    const cp_serve_http_options ho = {.host = host, .port = (int)port, .max_body_bytes = max_body, .max_connections = (int)max_conn};
    if (st == CP_OK) st = cp_serve_http_start(&http, &ho, &api);
    if (st == CP_OK) {
        fprintf(stderr, "cpeft serve: listening on http://%s:%d (model %s, batch %lld, queue %lld, context %lld)\n", host,
                cp_serve_http_port(http), name, (long long)max_batch, (long long)max_queue, (long long)max_context);
        int sig = 0;
        sigwait(&stop_signals, &sig);
        fprintf(stderr, "cpeft serve: %s: finishing running requests (up to %lld s)\n", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                (long long)shutdown_s);
        cp_serve_http_quiesce(http);
        cp_serve_engine_drain(engine);
        if (!cp_serve_engine_wait_idle(engine, shutdown_s * 1000))
            fprintf(stderr, "cpeft serve: the deadline passed: ending the requests left\n");
    }
    if (st != CP_OK) fprintf(stderr, "cpeft serve: %s\n", cp_last_error());
    if (engine) cp_serve_engine_stop(engine);
    cp_serve_http_stop(http);
    if (st == CP_OK) fprintf(stderr, "cpeft serve: stopped\n");
    cp_chat_template_free(tmpl);
    cp_tokenizer_free(tok);
    if (m) cp_model_free(m);
    cp_free(name);
    return st == CP_OK ? 0 : 1;
}
