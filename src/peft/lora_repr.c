/*
 * lora_repr.c — a module with LoRA adapters printed as PEFT prints it: lora.Linear / lora.Embedding
 * with their base_layer, lora_dropout, lora_A / lora_B (or lora_embedding_A / _B ParameterDicts) per
 * adapter. This is the LoRA hook's repr operation (models/hook.h).
 */
#include "peft/lora.h"
#include "core/alloc.h"
#include "core/pyfmt.h"
#include "core/strbuf.h"

#include <stdio.h>
#include <string.h>

static void module_dict(cp_strbuf *sb, const char *title, char **names, char **reprs, int n) {
    cp_sb_printf(sb, "\n  (%s): ModuleDict(", title);
    if (n == 0) { cp_sb_append(sb, ")"); return; }
    for (int i = 0; i < n; i++) {
        cp_sb_printf(sb, "\n    (%s): ", names[i]);
        cp_sb_append_indented(sb, reprs[i], 4);
    }
    cp_sb_append(sb, "\n  )");
}

static void parameter_dict(cp_strbuf *sb, const char *title, const cp_lora_layer *layer, int which) {
    cp_sb_printf(sb, "\n  (%s): ParameterDict(", title);
    int n = layer && layer->n ? layer->n : 0;
    if (n == 1) {
        const cp_param *p = which ? layer->adapters[0]->B : layer->adapters[0]->A;
        cp_sb_printf(sb, "  (%s): Parameter containing: [torch.FloatTensor of size %lldx%lld])", layer->adapters[0]->name,
                     (long long)p->shape[0], (long long)p->shape[1]);
        return;
    }
    for (int i = 0; i < n; i++) {
        const cp_param *p = which ? layer->adapters[i]->B : layer->adapters[i]->A;
        cp_sb_printf(sb, "\n      (%s): Parameter containing: [torch.FloatTensor of size %lldx%lld]", layer->adapters[i]->name,
                     (long long)p->shape[0], (long long)p->shape[1]);
    }
    cp_sb_append(sb, n ? "\n  )" : ")");
}

char *cp_lora_repr(const cp_hook *h, const cp_module *m) {
    const cp_lora_layer *layer = (const cp_lora_layer *)h;
    const int emb = m->kind == CP_MOD_EMBEDDING, n = layer->n;
    cp_strbuf sb;
    cp_sb_init(&sb);
    cp_sb_append(&sb, emb ? "lora.Embedding(" : "lora.Linear(");
    char *base = cp_module_repr_plain(m);
    cp_sb_append(&sb, "\n  (base_layer): ");
    if (base) cp_sb_append_indented(&sb, base, 2);
    cp_free(base);
    char **names = cp_calloc((size_t)(n ? n : 1), sizeof *names, "names");
    char **reprs = cp_calloc((size_t)(n ? n : 1), sizeof *reprs, "reprs");
    if (!names || !reprs) { cp_free(names); cp_free(reprs); cp_sb_free(&sb); return NULL; }
    char buf[256], f[40];
    for (int i = 0; i < n; i++) {
        names[i] = layer->adapters[i]->name;
        if (layer->adapters[i]->dropout > 0)
            snprintf(buf, sizeof buf, "Dropout(p=%s, inplace=False)", cp_py_float_repr(layer->adapters[i]->dropout, f, sizeof f));
        else snprintf(buf, sizeof buf, "Identity()");
        reprs[i] = cp_strdup(buf);
    }
    module_dict(&sb, "lora_dropout", names, reprs, n);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n; i++) {
            cp_free(reprs[i]);
            const cp_lora_adapter *a = layer->adapters[i];
            if (pass == 0) snprintf(buf, sizeof buf, "Linear(in_features=%lld, out_features=%lld, bias=False)", (long long)m->in_features, (long long)a->r);
            else snprintf(buf, sizeof buf, "Linear(in_features=%lld, out_features=%lld, bias=False)", (long long)a->r, (long long)m->out_features);
            reprs[i] = cp_strdup(buf);
        }
        module_dict(&sb, pass == 0 ? "lora_A" : "lora_B", names, reprs, emb ? 0 : n);
    }
    parameter_dict(&sb, "lora_embedding_A", emb ? layer : NULL, 0);
    parameter_dict(&sb, "lora_embedding_B", emb ? layer : NULL, 1);
    cp_sb_append(&sb, "\n  (lora_magnitude_vector): ModuleDict()\n)");
    for (int i = 0; i < n; i++) cp_free(reprs[i]);
    cp_free(names);
    cp_free(reprs);
    return cp_sb_finish(&sb);
}
