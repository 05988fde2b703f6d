/*
 * methods.c — the registry of PEFT methods: one line per method in CP_PEFT_METHODS, found by
 * adapter_config.json's peft_type. See method.h for what a method provides.
 */
#include "peft/method.h"

#include <stdio.h>
#include <string.h>

/* Each method's table (defined in its own files), in the order messages list them. */
#define CP_PEFT_METHODS(X)          \
    X(cp_lora_method)               /* LoRA: lora.c, lora_config.c, lora_method.c, lora_weighted.c, lora_repr.c */ \
    X(cp_ia3_method)                /* (IA)³: ia3.c, ia3_config.c, ia3_method.c */ \
    X(cp_prompt_tuning_method)      /* prompt tuning: prompt_method.c, prompt_config.c, prompt_encoder.c */ \
    X(cp_p_tuning_method)           /* p-tuning: the same, with nn/lstm.c */ \
    X(cp_prefix_tuning_method)      /* prefix tuning: the same */

#define DECLARE(m) extern const cp_peft_method m;
CP_PEFT_METHODS(DECLARE)
#undef DECLARE

#define ENTRY(m) &m,
static const cp_peft_method *const methods[] = {CP_PEFT_METHODS(ENTRY) NULL};
#undef ENTRY

const cp_peft_method *cp_peft_method_at(int i) {
    return i >= 0 && i < (int)(sizeof methods / sizeof *methods) ? methods[i] : NULL;
}

const cp_peft_method *cp_peft_method_find(const char *peft_type) {
    for (int i = 0; peft_type && methods[i]; i++)
        if (!strcmp(methods[i]->peft_type, peft_type)) return methods[i];
    return NULL;
}

const char *cp_peft_supported_types(char *buf, size_t size) {
    size_t k = 0;
    int n = (int)(sizeof methods / sizeof *methods) - 1;
    buf[0] = '\0';
    for (int i = 0; i < n && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "%s\"%s\"", i == 0 ? "" : i == n - 1 ? " or " : ", ", methods[i]->peft_type);
    return buf;
}
