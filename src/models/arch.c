/*
 * arch.c — the table of supported architectures.
 */
#include "models/arch.h"

#include <string.h>

static const cp_arch *const architectures[] = {&cp_arch_gpt2, &cp_arch_gpt_neo, &cp_arch_llama, &cp_arch_mistral, &cp_arch_qwen2};

const cp_arch *cp_arch_find(const char *model_type) {
    for (size_t i = 0; i < sizeof architectures / sizeof *architectures; i++)
        if (strcmp(architectures[i]->model_type, model_type) == 0) return architectures[i];
    return NULL;
}

const cp_arch *cp_arch_at(int i) {
    return i >= 0 && (size_t)i < sizeof architectures / sizeof *architectures ? architectures[i] : NULL;
}

const char *cp_arch_supported_list(void) { return "gpt2, gpt_neo, llama, mistral, qwen2"; }
