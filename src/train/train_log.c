/*
 * train_log.c — log_history, the best metric, trainer_state.json and the rotation of checkpoints, as
 * transformers' Trainer keeps them; see train_log.h.
 *
 * The state is built as a cJSON tree and printed by cp_json_dump_python, which is json.dumps(indent=2,
 * sort_keys=True); floats are raw items holding Python's repr (so 1.0 prints "1.0", NaN "NaN" and
 * infinity "Infinity", as json.dumps writes them), integers plain numbers.
 */
#include "train/train_log.h"
#include "core/alloc.h"
#include "core/pyfmt.h"
#include "core/strbuf.h"
#include "io/fsutil.h"
#include "io/json.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

cp_status cp_train_log_init(cp_train_log *l) {
    memset(l, 0, sizeof *l);
    l->history = cJSON_CreateArray();
    return l->history ? CP_OK : cp_error("out of memory (the log history)");
}

void cp_train_log_free(cp_train_log *l) {
    cJSON_Delete(l->history);
    cp_free(l->best_model_checkpoint);
    memset(l, 0, sizeof *l);
}

/* A raw cJSON item with json.dumps's text of x. */
static cJSON *py_float(double x) {
    char buf[40];
    const char *s = isnan(x) ? "NaN" : isinf(x) ? (x > 0 ? "Infinity" : "-Infinity") : cp_py_float_repr(x, buf, sizeof buf);
    return cJSON_CreateRaw(s);
}

void cp_train_log_set(cJSON *entry, const char *key, double value) {
    if (entry) cJSON_AddItemToObject(entry, key, py_float(value));
}

void cp_train_log_set_int(cJSON *entry, const char *key, int64_t value) {
    if (entry) cJSON_AddItemToObject(entry, key, cJSON_CreateNumber((double)value));
}

cJSON *cp_train_log_entry(cp_train_log *l, int64_t step, double epoch) {
    cJSON *e = cJSON_CreateObject();
    if (!e) return NULL;
    cp_train_log_set_int(e, "step", step);
    cp_train_log_set(e, "epoch", epoch);
    cJSON_AddItemToArray(l->history, e);
    return e;
}

/* The number an entry holds under key (raw items are parsed back), 0 when absent. */
static int entry_number(const cJSON *e, const char *key, double *v) {
    const cJSON *it = cJSON_GetObjectItem(e, key);
    if (!it) return 0;
    if (cJSON_IsNumber(it)) { *v = it->valuedouble; return 1; }
    if (cJSON_IsRaw(it) && it->valuestring) {
        const char *s = it->valuestring;
        *v = !strcmp(s, "NaN") ? NAN : !strcmp(s, "Infinity") ? INFINITY : !strcmp(s, "-Infinity") ? -INFINITY : strtod(s, NULL);
        return 1;
    }
    return 0;
}

cp_status cp_train_log_update_best(cp_train_log *l, const cJSON *entry, const char *metric, int greater, int64_t step, int *is_best) {
    *is_best = 0;
    char key[256];
    snprintf(key, sizeof key, "%s%s", strncmp(metric, "eval_", 5) ? "eval_" : "", metric);
    double v;
    if (!entry_number(entry, key, &v)) {
        cp_strbuf sb;
        cp_sb_init(&sb);
        const cJSON *it;
        cJSON_ArrayForEach(it, entry) cp_sb_printf(&sb, "%s'%s'", sb.len ? ", " : "", it->string);
        char *have = cp_sb_finish(&sb);
        cp_status st = cp_error("--metric-for-best-model is '%s', which is not among the evaluation metrics; they are [%s]", key,
                                have ? have : "");
        cp_free(have);
        return st;
    }
    if (!l->has_best || (greater ? v > l->best_metric : v < l->best_metric)) { /* np.greater / np.less: NaN is never better */
        if (l->has_best || !isnan(v)) {
            l->has_best = 1;
            l->best_metric = v;
            l->best_global_step = step;
            *is_best = 1;
        }
    }
    return CP_OK;
}

char *cp_trainer_state_json(const cp_train_log *l, const cp_trainer_state_info *in) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON_AddItemToObject(root, "best_global_step", l->best_global_step ? cJSON_CreateNumber((double)l->best_global_step) : cJSON_CreateNull());
    cJSON_AddItemToObject(root, "best_metric", l->has_best ? py_float(l->best_metric) : cJSON_CreateNull());
    cJSON_AddItemToObject(root, "best_model_checkpoint",
                          l->best_model_checkpoint ? cJSON_CreateString(l->best_model_checkpoint) : cJSON_CreateNull());
    cJSON_AddItemToObject(root, "epoch", py_float(in->epoch));
    cJSON_AddNumberToObject(root, "eval_steps", (double)in->eval_steps);
    cJSON_AddNumberToObject(root, "global_step", (double)in->global_step);
    cJSON_AddBoolToObject(root, "is_hyper_param_search", 0);
    cJSON_AddBoolToObject(root, "is_local_process_zero", 1);
    cJSON_AddBoolToObject(root, "is_world_process_zero", 1);
    cJSON_AddItemReferenceToObject(root, "log_history", l->history);
    cJSON_AddNumberToObject(root, "logging_steps", (double)in->logging_steps);
    cJSON_AddNumberToObject(root, "max_steps", (double)in->max_steps);
    cJSON_AddNumberToObject(root, "num_input_tokens_seen", 0); /* include_num_input_tokens_seen is off */
    cJSON_AddNumberToObject(root, "num_train_epochs", (double)in->num_train_epochs);
    cJSON_AddNumberToObject(root, "save_steps", (double)in->save_steps);
    /* TrainerControl as it stands when the Trainer saves */
    cJSON *cbs = cJSON_AddObjectToObject(root, "stateful_callbacks");
    cJSON *ctl = cbs ? cJSON_AddObjectToObject(cbs, "TrainerControl") : NULL;
    cJSON *args = ctl ? cJSON_AddObjectToObject(ctl, "args") : NULL;
    if (args) {
        cJSON_AddBoolToObject(args, "should_epoch_stop", 0);
        cJSON_AddBoolToObject(args, "should_evaluate", 0);
        cJSON_AddBoolToObject(args, "should_log", 0);
        cJSON_AddBoolToObject(args, "should_save", 1);
        cJSON_AddBoolToObject(args, "should_training_stop", in->should_training_stop);
        cJSON_AddObjectToObject(ctl, "attributes");
    }
    cJSON_AddNumberToObject(root, "total_flos", 0); /* cpeft does not count floating-point operations */
    cJSON_AddNumberToObject(root, "train_batch_size", (double)in->train_batch_size);
    cJSON_AddNullToObject(root, "trial_name");
    cJSON_AddNullToObject(root, "trial_params");
    char *text = cp_json_dump_python(root);
    cJSON_Delete(root); /* the history is a reference: not freed */
    if (!text) return NULL;
    size_t n = strlen(text);
    char *out = cp_malloc(n + 2, "trainer_state.json");
    if (out) { memcpy(out, text, n); out[n] = '\n'; out[n + 1] = '\0'; }
    free(text);
    return out;
}

/* A number item read back as json.dumps wrote it: integral values of integer keys stay numbers,
 * every other number becomes a raw float again (so 1.0 keeps its ".0" when rewritten). */
static cJSON *as_written(const cJSON *it) {
    if (!cJSON_IsNumber(it)) return cJSON_Duplicate(it, 1);
    if (it->string && !strcmp(it->string, "step")) return cJSON_CreateNumber(it->valuedouble);
    return py_float(it->valuedouble);
}

cp_status cp_train_log_load(cp_train_log *l, const char *path) {
    cJSON *root = NULL;
    if (cp_json_read_file(path, &root) != CP_OK) return CP_ERR;
    cJSON *hist = cJSON_CreateArray();
    cp_status st = hist ? CP_OK : cp_error("out of memory (the log history)");
    const cJSON *arr = cJSON_GetObjectItem(root, "log_history"), *e, *it;
    if (st == CP_OK && arr && !cJSON_IsArray(arr)) st = cp_error("%s: \"log_history\" is %s, not a list", path, cp_json_type_name(arr));
    if (st != CP_OK) arr = NULL;
    cJSON_ArrayForEach(e, arr) {
        if (!cJSON_IsObject(e)) { st = cp_error("%s: a \"log_history\" entry is %s, not an object", path, cp_json_type_name(e)); break; }
        cJSON *copy = cJSON_CreateObject();
        if (!copy) { st = cp_error("out of memory (the log history)"); break; }
        cJSON_ArrayForEach(it, e) cJSON_AddItemToObject(copy, it->string, as_written(it));
        cJSON_AddItemToArray(hist, copy);
    }
    const cJSON *bm = cp_json_field(root, "best_metric"), *bs = cp_json_field(root, "best_global_step"),
                *bc = cp_json_field(root, "best_model_checkpoint");
    if (st == CP_OK && ((bm && !cJSON_IsNumber(bm)) || (bs && !cJSON_IsNumber(bs)) || (bc && !cJSON_IsString(bc))))
        st = cp_error("%s: best_metric, best_global_step or best_model_checkpoint is not a number / number / string", path);
    char *ckpt = st == CP_OK && bc ? cp_strdup(bc->valuestring) : NULL;
    if (st == CP_OK && bc && !ckpt) st = CP_ERR;
    if (st != CP_OK) {
        cJSON_Delete(hist);
        cJSON_Delete(root);
        return st;
    }
    cp_train_log_free(l);
    l->history = hist;
    l->has_best = bm != NULL;
    l->best_metric = bm ? bm->valuedouble : 0;
    l->best_global_step = bs ? (int64_t)bs->valuedouble : 0;
    l->best_model_checkpoint = ckpt;
    cJSON_Delete(root);
    return CP_OK;
}

/* ---- rotation ------------------------------------------------------------------------------------ */

/* N of "checkpoint-N" (digits only), -1 for any other name. */
static int64_t checkpoint_step(const char *name) {
    if (strncmp(name, "checkpoint-", 11) || !name[11]) return -1;
    int64_t n = 0;
    for (const char *p = name + 11; *p; p++) {
        if (*p < '0' || *p > '9' || n > INT64_MAX / 10 - 10) return -1;
        n = n * 10 + (*p - '0');
    }
    return n;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

cp_status cp_checkpoints_rotate(const char *out, int64_t limit, const char *best, int *n_removed) {
    *n_removed = 0;
    if (limit <= 0) return CP_OK;
    DIR *d = opendir(out);
    if (!d) return cp_error("%s: cannot read: %s", out, strerror(errno));
    int64_t *steps = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    cp_status st = CP_OK;
    while (st == CP_OK && (e = readdir(d))) {
        int64_t s = checkpoint_step(e->d_name);
        if (s < 0) continue;
        char *p = cp_path_join(out, e->d_name);
        int dir = p && cp_is_dir(p);
        cp_free(p);
        if (!dir) continue;
        if (cp_grow(&steps, &cap, n + 1, sizeof *steps, 16, "checkpoints")) st = CP_ERR;
        else steps[n++] = s;
    }
    closedir(d);
    if (st != CP_OK || (int64_t)n <= limit) { cp_free(steps); return st; }
    qsort(steps, n, sizeof *steps, cmp_i64);
    const int64_t best_step = best ? checkpoint_step(best) : -1;
    const int64_t newest = steps[n - 1];
    const int64_t protected = 1 + (best_step >= 0 && best_step != newest);
    const int64_t keep = limit > protected ? limit : protected;
    int64_t remaining = (int64_t)n;
    for (size_t i = 0; i < n && remaining > keep && st == CP_OK; i++) {
        if (steps[i] == newest || steps[i] == best_step) continue;
        char name[64], aside[96];
        snprintf(name, sizeof name, "checkpoint-%lld", (long long)steps[i]);
        snprintf(aside, sizeof aside, "%s.partial-%d", name, (int)getpid());
        char *from = cp_path_join(out, name), *to = cp_path_join(out, aside);
        if (!from || !to) st = CP_ERR;
        else if (rename(from, to) != 0) st = cp_error("%s: cannot move aside for deletion: %s", from, strerror(errno));
        else {
            cp_fs_hook("rotate:moved"); /* a kill here must lose nothing the run still needs */
            st = cp_remove_tree(to);
        }
        if (st == CP_OK) { remaining--; (*n_removed)++; }
        cp_free(from);
        cp_free(to);
    }
    cp_free(steps);
    return st;
}
