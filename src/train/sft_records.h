/*
 * sft_records.h — TRL's SFT dataset formats (trl 1.16.0, SFTTrainer._prepare_dataset) turned into token
 * ids and a loss mask, one record at a time:
 *
 *   prompt-completion       {"prompt": str, "completion": str}: ids = tok(prompt + completion + eos),
 *                           the eos text appended unless the completion ends with it; the completion
 *                           starts where tok(prompt) and those ids stop agreeing (common prefix); with
 *                           completion_only_loss (the default) the loss is on the completion only.
 *   conversational          {"messages": [{"role", "content"}, ...]}: the chat template's rendering
 *                           (add_generation_prompt false) tokenized without special tokens added, as
 *                           apply_chat_template(tokenize=True); no eos appended (the template ends
 *                           turns). With assistant_only_loss, loss only on the tokens of the
 *                           template's {% generation %} blocks (return_assistant_tokens_mask).
 *   conversational          {"prompt": [messages], "completion": [messages]}: the prompt rendered with
 *   prompt-completion       add_generation_prompt, prompt + completion without; the completion mask
 *                           as above, the assistant mask too with assistant_only_loss (a token has loss
 *                           when every mask in use says so).
 *   ShareGPT                {"conversations": [{"from", "value"}]}: renamed to messages / role /
 *                           content, as TRL's maybe_convert_to_chatml (roles are not renamed).
 *
 * Messages are checked before rendering: a non-empty list of objects, role one of system, user,
 * assistant, tool, content a string (null or absent only beside "tool_calls"); keys whose value is null
 * are dropped as apply_chat_template drops them. A record's "tools" (a list, or a JSON string of one) and
 * "chat_template_kwargs" (an object) reach the template as TRL passes them.
 *
 * Plain "text" and Alpaca records stay in data.c.
 */
#ifndef CP_TRAIN_SFT_RECORDS_H
#define CP_TRAIN_SFT_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "chat/chat_template.h"
#include "core/error.h"
#include "cpeft.h"
#include "train/data.h"

typedef struct {
    /* set by the caller */
    const cp_tokenizer *tok;
    const cp_chat_template *tmpl; /* NULL: conversational records are refused, with tmpl_error */
    const char *tmpl_error;       /* why there is no template (NULL: the model has none) */
    int assistant_only_loss, completion_only_loss;
    /* the record built: ids[0..n), loss[t] 1 where the token is a label */
    int32_t *ids;
    uint8_t *loss;
    size_t n, cap;
    /* work */
    cp_encoding enc, enc2;
    char *buf;
    size_t buf_cap;
    int checked;                  /* the template's fitness for assistant_only_loss was checked */
} cp_sft_builder;

/* The kind of a record, as the first record of a file decides it: prompt + completion (conversational
 * when the prompt is a list), messages or conversations, else CP_DATA_AUTO (not one of these). */
cp_data_format cp_sft_detect(const cJSON *rec);

/* Builds record rec of kind (one of the kinds above). Returns 1 when built, 0 when the record is
 * malformed (what is wrong written to msg, without the file:line), -1 on an error that ends the load
 * (cp_last_error: out of memory, assistant_only_loss with a template that cannot give it, no template). */
int cp_sft_build(cp_sft_builder *b, cp_data_format kind, const cJSON *rec, char *msg, size_t msg_cap);

void cp_sft_builder_free(cp_sft_builder *b);

#endif
