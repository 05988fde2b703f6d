/*
 * arch.c — the table of supported architectures.
 */
#include "models/arch.h"

#include <stdio.h>
#include <string.h>

static const cp_arch *const architectures[] = {&cp_arch_gpt2, &cp_arch_gpt_neo, &cp_arch_llama, &cp_arch_mistral, &cp_arch_qwen2, &cp_arch_qwen3, &cp_arch_gemma, &cp_arch_gemma2, &cp_arch_phi3, &cp_arch_glm,
                                               &cp_arch_gpt_neox, &cp_arch_gptj, &cp_arch_phi, &cp_arch_opt, &cp_arch_bloom,
                                               &cp_arch_bert, &cp_arch_roberta, &cp_arch_xlm_roberta,
                                               &cp_arch_distilbert, &cp_arch_electra, &cp_arch_layoutlm,
                                               &cp_arch_deberta, &cp_arch_deberta_v2, &cp_arch_t5, &cp_arch_mt5, &cp_arch_bart};

const cp_arch *cp_arch_find(const char *model_type) {
    for (size_t i = 0; i < sizeof architectures / sizeof *architectures; i++)
        if (strcmp(architectures[i]->model_type, model_type) == 0) return architectures[i];
    return NULL;
}

const cp_arch *cp_arch_at(int i) {
    return i >= 0 && (size_t)i < sizeof architectures / sizeof *architectures ? architectures[i] : NULL;
}

/* The model types of one kind (0 decoders, 1 encoders, 2 encoder-decoders), comma-separated, in table order. */
static const char *list_of(int kind, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof architectures / sizeof *architectures && k < n; i++)
        if ((architectures[i]->encoder_decoder ? 2 : architectures[i]->encoder) == kind)
            k += (size_t)snprintf(buf + k, n - k, "%s%s", k ? ", " : "", architectures[i]->model_type);
    return buf;
}

const char *cp_arch_supported_list(void) {
    static char buf[256];
    return list_of(0, buf, sizeof buf);
}

const char *cp_arch_encoder_list(void) {
    static char buf[256];
    return list_of(1, buf, sizeof buf);
}

const char *cp_arch_encoder_decoder_list(void) {
    static char buf[256];
    return list_of(2, buf, sizeof buf);
}
