/*
 * peft_repr.c — the wrapped model printed as PEFT prints it: the tree with each module printed by
 * its hooks (the methods' layers, ModulesToSaveWrapper: models/hook.h), inside PeftModel* and the
 * first adapter's tuner class (LoraModel, ...).
 */
#include "peft/peft_model.h"
#include "core/alloc.h"
#include "core/strbuf.h"
#include "peft/peft_config.h"

char *cp_model_peft_repr(const cp_model *m) {
    char *inner = cp_module_repr_with(m->root, cp_hook_repr_wrap, NULL);
    if (!inner) return NULL;
    if (!m->peft || m->peft->n == 0) return inner;
    const cp_peft_config *cfg = m->peft->adapters[0].config;
    cp_strbuf sb;
    cp_sb_init(&sb);
    cp_sb_printf(&sb, "%s(\n  (base_model): %s(\n    (model): ", cp_peft_task_model_class(cfg->task_type),
                 cfg->method->tuner_class);
    cp_sb_append_indented(&sb, inner, 4);
    cp_sb_append(&sb, "\n  )\n)");
    cp_free(inner);
    return cp_sb_finish(&sb);
}
