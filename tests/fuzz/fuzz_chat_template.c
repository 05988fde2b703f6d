/*
 * fuzz_chat_template.c — libFuzzer target for chat templates: the input is template text, lexed,
 * parsed and rendered on a fixed two-turn conversation with and without add_generation_prompt.
 * Any input must end in CP_OK or a clean error: no crash, leak, or out-of-bounds access.
 */
#include "chat/chat_template.h"
#include "core/alloc.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cp_set_quiet(1);
    cp_chat_template *t = NULL;
    if (cp_chat_template_parse(&t, (const char *)data, size, "fuzz") != CP_OK) return 0;
    cp_chat_template_set_tokens(t, "<s>", "</s>");
    cJSON *m = cJSON_Parse("[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\",\"content\":\" hi é\"},"
                           "{\"role\":\"assistant\",\"content\":\"<think>x</think>yo\"}]");
    for (int agp = 0; agp < 2; agp++) {
        char *text = NULL;
        size_t len, ns;
        cp_chat_span *spans = NULL;
        if (cp_chat_template_render(t, m, agp, NULL, &text, &len, &spans, &ns) == CP_OK) {
            cp_free(text);
            cp_free(spans);
        }
    }
    cJSON_Delete(m);
    cp_chat_template_free(t);
    return 0;
}
