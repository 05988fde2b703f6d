/*
 * chat_prompts.h — `cpeft generate --chat`: conversations from the command line (--system, --user,
 * --assistant in the order given: one conversation) or a file (--messages FILE: a JSON list of
 * {"role", "content"}, an object with "messages", or JSONL with one of those per line: one
 * conversation each), rendered with the model's chat template (or --chat-template FILE) and
 * add_generation_prompt, and tokenized without special tokens, as apply_chat_template(tokenize=True,
 * add_generation_prompt=True) does.
 */
#ifndef CP_CLI_CHAT_PROMPTS_H
#define CP_CLI_CHAT_PROMPTS_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "chat/chat_template.h"
#include "core/error.h"
#include "cpeft.h"

typedef struct {
    int chat;                  /* --chat, or implied by the flags below */
    cJSON *turns;              /* the --system / --user / --assistant messages, in order (or NULL) */
    const char *messages_file; /* --messages FILE */
    const char *template_file; /* --chat-template FILE */
} cli_chat;

/* Takes the chat flags out of argv (argc updated; argv[0] stays), building c->turns. Returns 0, or 2
 * after printing a usage error. */
int cli_chat_take_args(int *argc, char **argv, cli_chat *c);
/* The conversations: c->turns, then --messages FILE's, then one per text in texts[0..n_texts) (a
 * single user turn each). *convs is a JSON list of message lists (cJSON_Delete it). */
cp_status cli_chat_conversations(const cli_chat *c, const char *const *texts, int n_texts, cJSON **convs);
/* The template: --chat-template FILE (bos / eos from the tokenizer for a .jinja file), else the model's. */
cp_status cli_chat_template(const cli_chat *c, const char *model_dir, const cp_tokenizer *tok, cp_chat_template **out);
/* Conversation msgs rendered with add_generation_prompt (*text, cp_free) and its token ids (*ids,
 * cp_free; *n of them). */
cp_status cli_chat_render(const cp_chat_template *t, const cJSON *msgs, const cp_tokenizer *tok, char **text,
                          int32_t **ids, int64_t *n);
void cli_chat_free(cli_chat *c);

#endif
