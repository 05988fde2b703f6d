/*
 * weighted.c — PEFT's add_weighted_adapter: a new adapter combining existing ones of one method,
 * through that method's add_weighted (LoRA's: lora_weighted.c).
 */
#include "peft/weighted.h"
#include "peft/peft_model.h"

cp_status cp_peft_add_weighted_adapter(cp_model *m, const char *const *names, const double *weights, int n,
                                       const char *new_name, cp_combination combination) {
    if (n <= 0) return cp_error("add_weighted_adapter: no adapters given");
    if (cp_peft_find_adapter(m, new_name)) {
        cp_warn("adapter \"%s\" already exists; add_weighted_adapter does nothing (as PEFT)", new_name);
        return CP_OK;
    }
    const cp_peft_method *method = NULL;
    for (int i = 0; i < n; i++) {
        const cp_peft_adapter *a = cp_peft_find_adapter(m, names[i]);
        if (!a) return cp_error("Adapter %s does not exist", names[i]);
        if (method && a->config->method != method)
            return cp_error("add_weighted_adapter: adapters %s (%s) and %s (%s) are of different PEFT types", names[0],
                            method->peft_type, names[i], a->config->method->peft_type);
        method = a->config->method;
    }
    if (!method->add_weighted)
        return cp_error("add_weighted_adapter is not supported for %s adapters (PEFT has it for LoRA)", method->peft_type);
    return method->add_weighted(m, names, weights, n, new_name, combination);
}
