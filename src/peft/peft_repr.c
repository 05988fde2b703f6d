/*
 * peft_repr.c — the wrapped model printed as PEFT prints it: the tree with each module printed by
 * its hooks (the methods' layers, ModulesToSaveWrapper: models/hook.h), inside PeftModel* and the
 * first adapter's tuner class (LoraModel, ...); for prompt learning the base model itself, then the
 * prompt encoders and the word embeddings.
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
    if (cfg->method->prompt) { /* no tuner: the base model, then the prompt encoders and the word embeddings */
        cp_module **mods = NULL;
        int n = 0;
        char *extra = NULL;
        if (cp_peft_adapter_modules(m, m->peft->adapters[0].name, &mods, &n) == CP_OK && n > 0)
            extra = cfg->method->prompt->repr(mods[0]);
        cp_free(mods);
        cp_sb_printf(&sb, "%s(\n  (base_model): ", cp_peft_task_model_class(cfg->task_type));
        cp_sb_append_indented(&sb, inner, 2);
        if (extra) {
            cp_sb_append(&sb, "\n  ");
            cp_sb_append_indented(&sb, extra, 2);
        }
        cp_sb_append(&sb, "\n)");
        cp_free(extra);
        cp_free(inner);
        return cp_sb_finish(&sb);
    }
    cp_sb_printf(&sb, "%s(\n  (base_model): %s(\n    (model): ", cp_peft_task_model_class(cfg->task_type),
                 cfg->method->tuner_class);
    cp_sb_append_indented(&sb, inner, 4);
    cp_sb_append(&sb, "\n  )\n)");
    cp_free(inner);
    return cp_sb_finish(&sb);
}
