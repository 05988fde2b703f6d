/*
 * hook.c — the list of PEFT hooks on a module: find, attach, detach, free, print. See hook.h.
 */
#include "models/hook.h"

cp_hook *cp_hook_find(const cp_module *m, const cp_hook_ops *ops) {
    for (cp_hook *h = m ? m->hooks : NULL; h; h = h->next)
        if (h->ops == ops) return h;
    return NULL;
}

void cp_hook_attach(cp_module *m, cp_hook *h) {
    cp_hook **p = &m->hooks;
    while (*p) p = &(*p)->next;
    h->next = NULL;
    *p = h;
}

void cp_hook_detach(cp_module *m, cp_hook *h) {
    for (cp_hook **p = &m->hooks; *p; p = &(*p)->next)
        if (*p == h) {
            *p = h->next;
            h->next = NULL;
            return;
        }
}

static int free_visit(cp_module *m, void *ctx) {
    (void)ctx;
    while (m->hooks) {
        cp_hook *h = m->hooks;
        m->hooks = h->next;
        if (h->ops->free) h->ops->free(h);
    }
    return 0;
}

void cp_hook_free_all(cp_module *root) {
    if (root) cp_module_visit(root, free_visit, NULL);
}

/* The hook that prints m, leaving `skip` out: an outermost one (a wrapper around the others, as
 * ModulesToSaveWrapper) first, else the last attached that prints. */
static const cp_hook *printer(const cp_module *m, const cp_hook *skip) {
    const cp_hook *found = NULL;
    for (const cp_hook *h = m->hooks; h; h = h->next) {
        if (h == skip || !h->ops->repr) continue;
        if (h->ops->outermost) return h;
        found = h;
    }
    return found;
}

char *cp_hook_repr(const cp_module *m) {
    const cp_hook *h = printer(m, NULL);
    return h ? h->ops->repr(h, m) : NULL;
}

char *cp_hook_repr_wrap(const cp_module *m, void *ctx) {
    (void)ctx;
    return m->hooks ? cp_hook_repr(m) : NULL;
}

char *cp_hook_repr_inner(const cp_module *m, const cp_hook *h) {
    const cp_hook *inner = printer(m, h);
    return inner ? inner->ops->repr(inner, m) : cp_module_repr_plain_with(m, cp_hook_repr_wrap, NULL);
}
