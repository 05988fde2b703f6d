/*
 * targets.c — PEFT's target-module matching (check_target_module_exists and friends), on the
 * module tree's Hugging Face names:
 *
 *   1. exclude_modules: a regex must fully match, or a name must equal an entry or end with
 *      "." + entry;
 *   2. modules listed in modules_to_save (or inside them) are never wrapped;
 *   3. a regex target_modules must fully match the name; a list entry must equal the name or be a
 *      suffix after a '.' boundary ("q_proj" matches "h.0.attn.q_proj", not "h.0.attn.xq_proj");
 *   4. with layers_to_transform, a suffix match also needs the layer index (the first numeric path
 *      component, or the one after a layers_pattern, which PEFT 0.21 matches after a '.' or at the
 *      start of the name, so "model.layers" works as well as "layers") to be listed. An empty
 *      layers_pattern ("" or []) counts as none.
 *
 * Before matching, target_modules is resolved as PEFT's inject_adapter does (cp_target_names):
 * None becomes the model_type's default names, "all-linear" the full names of the Linear / Conv1D
 * leaves but the output embedding, and a list of 20 or more names the fewest dotted suffixes that
 * tell them from every other module name (_find_minimal_target_modules). The resolved list is both
 * what is matched (suffixes then go through the layer filter that exact names skip) and what PEFT saves.
 *
 * PCRE2 stands in for Python's re: the patterns PEFT configs carry are plain enough that the two
 * agree (full match = anchored at both ends).
 */
#include "peft/targets.h"
#include "core/alloc.h"
#include "core/strbuf.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- regex ----------------------------------------------------------------------------------- */

static pcre2_code *compile(const char *pattern, const char *field) {
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        cp_error("%s: the regular expression \"%s\" does not compile: %s at offset %zu", field, pattern, (char *)msg,
                 (size_t)off);
    }
    return re;
}

cp_status cp_regex_check(const char *pattern, const char *field) {
    pcre2_code *re = compile(pattern, field);
    if (!re) return CP_ERR;
    pcre2_code_free(re);
    return CP_OK;
}

/* Matches `re` against the whole subject (anchored at both ends when `full`, else at the start);
 * when group > 0 stores that group's text into buf. */
static cp_status run_match(const char *pattern, const char *subject, uint32_t options, int *match, int group,
                           char *buf, size_t bufsize) {
    *match = 0;
    pcre2_code *re = compile(pattern, "regex");
    if (!re) return CP_ERR;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) { pcre2_code_free(re); return cp_error("out of memory matching a regex"); }
    int rc = pcre2_match(re, (PCRE2_SPTR)subject, strlen(subject), 0, options, md, NULL);
    if (rc > 0) {
        *match = 1;
        if (group > 0 && buf) {
            PCRE2_SIZE len = bufsize;
            if (pcre2_substring_copy_bynumber(md, (uint32_t)group, (PCRE2_UCHAR *)buf, &len) != 0) buf[0] = '\0';
        }
    }
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return CP_OK;
}

cp_status cp_regex_fullmatch(const char *pattern, const char *subject, int *match) {
    return run_match(pattern, subject, PCRE2_ANCHORED | PCRE2_ENDANCHORED, match, 0, NULL, 0);
}

cp_status cp_regex_pattern_key_match(const char *key, const char *subject, int *match) {
    cp_strbuf sb;
    cp_sb_init(&sb);
    cp_sb_printf(&sb, "(.*\\.)?(%s)$", key);
    char *pattern = cp_sb_finish(&sb);
    if (!pattern) return CP_ERR;
    cp_status st = run_match(pattern, subject, PCRE2_ANCHORED, match, 0, NULL, 0);
    cp_free(pattern);
    return st;
}

/* ---- matching -------------------------------------------------------------------------------- */

static int ends_with_dot(const char *name, const char *entry) {
    size_t a = strlen(name), b = strlen(entry);
    return a > b && name[a - b - 1] == '.' && strcmp(name + a - b, entry) == 0;
}

void cp_target_fan_in_fan_out(const cp_module *t, int *fan_in_fan_out) {
    if (t->kind == CP_MOD_CONV1D && !*fan_in_fan_out) {
        cp_warn("fan_in_fan_out is set to False but the target module is `Conv1D`. Setting fan_in_fan_out to True.");
        *fan_in_fan_out = 1;
    } else if (t->kind == CP_MOD_LINEAR && *fan_in_fan_out) {
        cp_warn("fan_in_fan_out is set to True but the target module is `torch.nn.Linear`. Setting fan_in_fan_out to False.");
        *fan_in_fan_out = 0;
    }
}

int cp_modules_to_save_matches(const cp_peft_config *cfg, const char *path) {
    size_t a = strlen(path);
    for (int i = 0; i < cfg->n_modules_to_save; i++) {
        size_t b = strlen(cfg->modules_to_save[i]);
        if (a >= b && strcmp(path + a - b, cfg->modules_to_save[i]) == 0) return 1;
    }
    return 0;
}

/* The layer index PEFT reads from a module name, or -1 when there is none. */
int cp_target_spec_has_layers_pattern(const cp_target_spec *t) {
    /* PEFT: None, "" and [] all mean "no pattern" */
    return t->layers_pattern && t->n_layers_pattern > 0 && !(t->layers_pattern_is_str && !t->layers_pattern[0][0]);
}

static cp_status layer_index(const cp_target_spec *cfg, const char *key, int64_t *index) {
    char buf[32];
    int hit = 0;
    *index = -1;
    if (!cp_target_spec_has_layers_pattern(cfg)) {
        if (run_match(".*?\\.[^.]*\\.(\\d+)\\.", key, PCRE2_ANCHORED, &hit, 1, buf, sizeof buf) != CP_OK) return CP_ERR;
    } else {
        for (int i = 0; i < cfg->n_layers_pattern && !hit; i++) {
            cp_strbuf sb;
            cp_sb_init(&sb);
            cp_sb_printf(&sb, "(?:^|.*?\\.)%s\\.(\\d+)\\.", cfg->layers_pattern[i]);
            char *pattern = cp_sb_finish(&sb);
            if (!pattern) return CP_ERR;
            cp_status st = run_match(pattern, key, PCRE2_ANCHORED, &hit, 1, buf, sizeof buf);
            cp_free(pattern);
            if (st != CP_OK) return CP_ERR;
        }
    }
    if (hit) *index = strtoll(buf, NULL, 10);
    return CP_OK;
}

/* PEFT's check_target_module_exists for one module name. */
static cp_status target_matches(const cp_target_spec *cfg, const char *const *targets, int n_targets, const char *key,
                                int *match, int *excluded) {
    *match = 0;
    *excluded = 0;
    if (cfg->exclude_regex) {
        int hit;
        if (cp_regex_fullmatch(cfg->exclude_regex, key, &hit) != CP_OK) return CP_ERR;
        if (hit) { *excluded = 1; return CP_OK; }
    }
    for (int i = 0; i < cfg->n_exclude; i++)
        if (!strcmp(key, cfg->exclude[i]) || ends_with_dot(key, cfg->exclude[i])) { *excluded = 1; return CP_OK; }
    for (int i = 0; i < cfg->n_modules_to_save; i++) {
        cp_strbuf sb;
        cp_sb_init(&sb);
        cp_sb_printf(&sb, "(^|.*\\.)%s($|\\..*)", cfg->modules_to_save[i]);
        char *pattern = cp_sb_finish(&sb);
        int hit = 0;
        cp_status st = pattern ? run_match(pattern, key, PCRE2_ANCHORED, &hit, 0, NULL, 0) : CP_ERR;
        cp_free(pattern);
        if (st != CP_OK) return CP_ERR;
        if (hit) { *excluded = 1; return CP_OK; }
    }
    if (cfg->kind == CP_TARGETS_REGEX) return cp_regex_fullmatch(cfg->regex, key, match);
    for (int i = 0; i < n_targets; i++)
        if (!strcmp(key, targets[i])) { *match = 1; return CP_OK; } /* exact name: no layer filter (PEFT's quirk) */
    int suffix = 0;
    for (int i = 0; i < n_targets && !suffix; i++) suffix = ends_with_dot(key, targets[i]);
    if (!suffix) return CP_OK;
    if (cfg->layers && cfg->n_layers > 0) {
        int64_t idx;
        if (layer_index(cfg, key, &idx) != CP_OK) return CP_ERR;
        if (idx < 0) return CP_OK;
        int listed = 0;
        for (int i = 0; i < cfg->n_layers && !listed; i++) listed = cfg->layers[i] == idx;
        if (!listed) return CP_OK;
    }
    *match = 1;
    return CP_OK;
}

/* ---- resolving target_modules (BaseTuner.inject_adapter, before matching) ------------------------- */

void cp_free_names(char **names, int n) {
    for (int i = 0; i < n; i++) cp_free(names[i]);
    cp_free(names);
}

typedef struct {
    char **names;
    int n, cap, failed;
    const cp_module *lm_head, *seq_cls_head;
    int linear_only;      /* collect the Linear / Conv1D leaves but lm_head or the SEQ_CLS head ("all-linear"), else every name */
} names_ctx;

static int push_name(names_ctx *c, const char *name) {
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 64;
        char **l = cp_realloc(c->names, (size_t)cap * sizeof *l, "module names");
        if (!l) { c->failed = 1; return 1; }
        c->names = l;
        c->cap = cap;
    }
    if (!(c->names[c->n] = cp_strdup(name))) { c->failed = 1; return 1; }
    c->n++;
    return 0;
}

static int collect_names(cp_module *mod, void *vctx) {
    names_ctx *c = vctx;
    if (!mod->path[0]) return 0;
    if (c->linear_only && !((mod->kind == CP_MOD_LINEAR || mod->kind == CP_MOD_CONV1D) && mod != c->lm_head &&
                            mod != c->seq_cls_head))
        return 0;
    return push_name(c, mod->path);
}

/* "a.b.c" -> its dotted suffixes, shortest first: "c", "b.c", "a.b.c" (count returned). */
static int suffixes(const char *name, const char **out, int max) {
    int n = 0;
    for (const char *p = name + strlen(name); p > name && n < max; p--)
        if (p[-1] == '.') out[n++] = p;
    if (n < max) out[n++] = name;
    return n;
}

static int cmp_suffix_lists(const void *x, const void *y) {
    /* PEFT sorts targets by their suffix lists (shortest suffix first), lexicographically */
    const char *a = *(const char *const *)x, *b = *(const char *const *)y;
    const char *sa[64], *sb[64];
    int na = suffixes(a, sa, 64), nb = suffixes(b, sb, 64);
    for (int i = 0; i < na && i < nb; i++) {
        int c = strcmp(sa[i], sb[i]);
        if (c) return c;
    }
    return na - nb;
}

/* _find_minimal_target_modules: for each target (in suffix-list order) its shortest dotted suffix
 * that is neither taken nor a suffix of any other module name, unless a taken one already covers it.
 * Replaces names[0..*n) when that gives fewer entries. */
static cp_status minimal_suffixes(cp_module *root, char ***names, int *n) {
    names_ctx all = {0};
    cp_module_visit(root, collect_names, &all);
    /* the other names: neither a target nor ending with "." + a target */
    int n_other = 0;
    for (int o = 0; !all.failed && o < all.n; o++) {
        int is_target = 0;
        for (int t = 0; t < *n && !is_target; t++) is_target = !strcmp(all.names[o], (*names)[t]) || ends_with_dot(all.names[o], (*names)[t]);
        if (is_target) cp_free(all.names[o]);
        else all.names[n_other++] = all.names[o];
    }
    const char **sorted = cp_malloc((size_t)*n * sizeof *sorted, "targets");
    char **required = cp_calloc((size_t)*n, sizeof *required, "suffixes");
    if (all.failed || !sorted || !required) {
        cp_free_names(all.names, all.failed ? all.n : n_other);
        cp_free(sorted);
        cp_free(required);
        return CP_ERR;
    }
    int n_req = 0;
    for (int i = 0; i < *n; i++) sorted[i] = (*names)[i];
    qsort(sorted, (size_t)*n, sizeof *sorted, cmp_suffix_lists);
    for (int i = 0; i < *n; i++) {
        const char *sfx[64];
        int ns = suffixes(sorted[i], sfx, 64);
        for (int k = 0; k < ns; k++) {
            int taken = 0, other = 0, covered = 0;
            for (int r = 0; r < n_req && !taken; r++) taken = !strcmp(required[r], sfx[k]);
            if (taken) continue;
            for (int o = 0; o < n_other && !other; o++)
                other = !strcmp(all.names[o], sfx[k]) || ends_with_dot(all.names[o], sfx[k]);
            if (other) continue;
            for (int r = 0; r < n_req && !covered; r++) covered = ends_with_dot(sorted[i], required[r]);
            if (!covered) required[n_req++] = cp_strdup(sfx[k]);
            break;
        }
    }
    if (n_req > 0 && n_req < *n) {
        cp_free_names(*names, *n);
        *names = required;
        *n = n_req;
    } else {
        cp_free_names(required, n_req);
    }
    cp_free(sorted);
    cp_free_names(all.names, n_other);
    return CP_OK;
}

cp_status cp_target_names(const cp_target_spec *cfg, cp_module *root, const char *model_type, const cp_module *lm_head,
                          char ***out, int *n_out) {
    *out = NULL;
    *n_out = 0;
    names_ctx c = {.lm_head = lm_head};
    if (cfg->kind == CP_TARGETS_REGEX) return CP_OK;
    if (cfg->kind == CP_TARGETS_DEFAULT) {
        const char *const *def = cfg->defaults ? cfg->defaults(model_type) : NULL;
        if (!def) return cp_error("Please specify `target_modules` in `peft_config` (PEFT has no default for model_type \"%s\")", model_type);
        for (int i = 0; def[i] && !c.failed; i++) push_name(&c, def[i]);
    } else if (cfg->kind == CP_TARGETS_ALL_LINEAR) {
        c.linear_only = 1;
        /* _maybe_include_all_linear_layers: without output embeddings a SEQ_CLS model's head is left out
         * (a RoBERTa-style head is no Linear, so its dense / out_proj stay in the list) */
        if (cfg->seq_cls && !lm_head) {
            c.seq_cls_head = cp_module_child(root, "score");
            if (!c.seq_cls_head) c.seq_cls_head = cp_module_child(root, "classifier");
        }
        cp_module_visit(root, collect_names, &c);
    } else {
        /* a list is a Python set in PEFT: a name given twice counts once */
        for (int i = 0; i < cfg->n_modules && !c.failed; i++) {
            int seen = 0;
            for (int k = 0; k < c.n && !seen; k++) seen = !strcmp(c.names[k], cfg->modules[i]);
            if (!seen) push_name(&c, cfg->modules[i]);
        }
    }
    if (c.failed) { cp_free_names(c.names, c.n); return CP_ERR; }
    if (c.n >= CP_MIN_TARGETS_TO_SHORTEN && !cfg->keep_long_lists && minimal_suffixes(root, &c.names, &c.n) != CP_OK) {
        cp_free_names(c.names, c.n);
        return CP_ERR;
    }
    *out = c.names;
    *n_out = c.n;
    return CP_OK;
}

typedef struct {
    const cp_target_spec *cfg;
    const char *const *targets;
    int n_targets;
    const cp_module *lm_head;
    cp_module **found;
    int n_found, cap_found, n_excluded;
    cp_status status;
} find_ctx;

static int visit(cp_module *m, void *vctx) {
    find_ctx *c = vctx;
    if (!m->path[0]) return 0; /* the root is never a target */
    int match = 0, excluded = 0;
    c->status = target_matches(c->cfg, c->targets, c->n_targets, m->path, &match, &excluded);
    if (c->status != CP_OK) return 1;
    if (excluded) c->n_excluded++;
    if (!match) return 0;
    if (!(c->cfg->kinds & (1u << m->kind))) {
        c->status = cp_error("Target module %s(...) at \"%s\" is not supported. Currently, only the following modules are "
                             "supported: %s.",
                             m->class_name, m->path, c->cfg->supported);
        return 1;
    }
    if (c->n_found == c->cap_found) {
        int cap = c->cap_found ? 2 * c->cap_found : 16;
        cp_module **f = cp_realloc(c->found, (size_t)cap * sizeof *f, "the target list");
        if (!f) { c->status = CP_ERR; return 1; }
        c->found = f;
        c->cap_found = cap;
    }
    c->found[c->n_found++] = m;
    return 0;
}

static void python_set(cp_strbuf *sb, char *const *items, int n) {
    cp_sb_append(sb, "{");
    for (int i = 0; i < n; i++) cp_sb_printf(sb, "%s'%s'", i ? ", " : "", items[i]);
    cp_sb_append(sb, "}");
}

cp_status cp_find_targets(const cp_target_spec *cfg, cp_module *root, const char *model_type, const cp_module *lm_head,
                          cp_module ***out, int *n_out) {
    *out = NULL;
    *n_out = 0;
    find_ctx c = {.cfg = cfg, .lm_head = lm_head, .status = CP_OK};
    char **names = NULL;
    int n_names = 0;
    if (cp_target_names(cfg, root, model_type, lm_head, &names, &n_names) != CP_OK) return CP_ERR;
    c.targets = (const char *const *)names;
    c.n_targets = n_names;
    cp_module_visit(root, visit, &c);
    if (c.status != CP_OK) { cp_free(c.found); cp_free_names(names, n_names); return CP_ERR; }
    if (c.n_found == 0) {
        cp_free(c.found);
        cp_strbuf sb;
        cp_sb_init(&sb);
        if (c.n_excluded && cfg->kind != CP_TARGETS_REGEX && (cfg->exclude || cfg->exclude_regex))
            cp_sb_append(&sb, "No modules were targeted for adaptation. This might be caused by a combination of mismatched "
                              "target modules and excluded modules. Please check your `target_modules` and `exclude_modules` "
                              "configuration. You may also have only targeted modules that are marked to be saved "
                              "(`modules_to_save`).");
        else if (cfg->kind == CP_TARGETS_REGEX)
            cp_sb_printf(&sb, "Target modules %s not found in the base model. Please check the target modules and try again.",
                         cfg->regex);
        else {
            char **list = (char **)c.targets;
            cp_sb_append(&sb, "Target modules ");
            python_set(&sb, list, c.n_targets);
            cp_sb_append(&sb, " not found in the base model. Please check the target modules and try again.");
        }
        if (cfg->layers)
            cp_sb_append(&sb, " Note: You specified 'layers_to_transform'. Please check if your layer indices are correct.");
        char *msg = cp_sb_finish(&sb);
        cp_status st = cp_error("%s", msg ? msg : "no target modules found");
        cp_free(msg);
        cp_free_names(names, n_names);
        return st;
    }
    cp_free_names(names, n_names);
    *out = c.found;
    *n_out = c.n_found;
    return CP_OK;
}
