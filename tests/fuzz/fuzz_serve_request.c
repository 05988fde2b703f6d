/*
 * fuzz_serve_request.c — libFuzzer target for `cpeft serve`'s request parser (serve/request.c): any
 * body, parsed as a completion and as a chat request, must end in CP_OK or a clean refusal naming a
 * field — no crash, leak, or out-of-bounds access — and the answers built from it (the error body, a
 * completion body and a stream chunk with the parsed prompt as text) must be built without one too.
 */
#include "core/alloc.h"
#include "serve/request.h"
#include "serve/response.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cp_set_quiet(1);
    for (int k = 0; k < 2; k++) {
        cp_serve_params p;
        char param[64];
        const cp_serve_kind kind = k ? CP_SERVE_CHAT : CP_SERVE_COMPLETION;
        if (cp_serve_parse_request((const char *)data, size, kind, &p, param, sizeof param) != CP_OK) {
            char *body = cp_serve_error_body(cp_last_error(), "invalid_request_error", param, NULL);
            cp_free(body);
            continue;
        }
        const cp_serve_completion c = {.kind = kind, .id = "cmpl-0", .model = p.model ? p.model : "base", .finish = "stop",
                                       .prompt_tokens = p.n_prompt_ids, .completion_tokens = p.max_tokens};
        const char *text = p.prompt ? p.prompt : p.n_stop ? p.stop[0] : "";
        char *body = cp_serve_completion_body(&c, text, strlen(text));
        cp_free(body);
        cp_strbuf sb;
        cp_sb_init(&sb);
        cp_serve_sse_chunk(&sb, &c, text, strlen(text), 1);
        cp_serve_sse_usage(&sb, &c);
        cp_sb_free(&sb);
        cp_serve_params_free(&p);
    }
    return 0;
}
