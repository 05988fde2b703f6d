/*
 * model_labels.c — cp_model_load_labels: a model directory loaded for SEQ_CLS / TOKEN_CLS with the
 * label set given by the caller instead of config.json's, as
 *     AutoModelFor{Sequence,Token}Classification.from_pretrained(dir, num_labels=K, id2label=..., label2id=...)
 * builds it: the config's num_labels / id2label / problem_type are replaced before the architecture
 * builds its tree, so the classifier has K outputs. A checkpoint with a head of another size is an
 * error naming the tensor and both shapes (the binding's mis-shaped report), as from_pretrained fails
 * without ignore_mismatched_sizes.
 *
 * The loading steps are those of cp_model_load_task (model.c) with the override between the config
 * and the build. (A separate file so that model.c stays as the encoders work left it; folding the
 * override into cp_model_load_task as an optional argument would remove the repeated steps.)
 */
#include "core/alloc.h"
#include "models/model.h"

#include <stdio.h>
#include <string.h>

static cp_status override_labels(cp_model_config *c, const char *const *labels, int64_t n, cp_problem_type problem) {
    if (n < 1) return cp_error("num_labels: %lld (expected at least 1)", (long long)n);
    char **names = cp_calloc((size_t)n, sizeof *names, "id2label");
    if (!names) return CP_ERR;
    for (int64_t i = 0; i < n; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "LABEL_%lld", (long long)i);
        if (!(names[i] = cp_strdup(labels && labels[i] ? labels[i] : buf))) {
            for (int64_t k = 0; k < i; k++) cp_free(names[k]);
            cp_free(names);
            return CP_ERR;
        }
    }
    for (int64_t i = 0; c->id2label && i < c->num_labels; i++) cp_free(c->id2label[i]);
    cp_free(c->id2label);
    c->id2label = names;
    c->num_labels = n;
    c->problem_type = problem;
    return CP_OK;
}

cp_status cp_model_load_labels(cp_model **out, const char *dir, int flags, const char *task_type, const char *const *labels,
                               int64_t num_labels, const char *problem_type) {
    *out = NULL;
    cp_task task;
    cp_problem_type problem = CP_PROBLEM_AUTO;
    if (!dir || !task_type) return cp_error("cp_model_load_labels: no model directory or no task_type");
    if (cp_task_parse(task_type, &task) != CP_OK) return CP_ERR;
    if (task != CP_TASK_SEQ_CLS && task != CP_TASK_TOKEN_CLS)
        return cp_error("cp_model_load_labels: task_type %s has no labels (SEQ_CLS or TOKEN_CLS)", task_type);
    if (problem_type && cp_problem_type_parse(problem_type, &problem) != CP_OK) return CP_ERR;
    cp_model *m;
    if (cp_model_begin_load(&m, dir) != CP_OK) return CP_ERR;
    m->task = task;
    if (override_labels(&m->config, labels, num_labels, problem) != CP_OK) { cp_model_free(m); return CP_ERR; }
    return cp_model_end_load(m, flags, out);
}

const char *cp_model_label_name(const cp_model *m, int64_t id) {
    if (!m || (m->task != CP_TASK_SEQ_CLS && m->task != CP_TASK_TOKEN_CLS) || id < 0 || id >= m->config.num_labels ||
        !m->config.id2label)
        return NULL;
    return m->config.id2label[id];
}
