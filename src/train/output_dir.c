/*
 * output_dir.c — a training run's output directory: lock, refusal of an occupied directory, cleanup of
 * killed runs' leftovers, and the atomic commit of the final adapter; see output_dir.h for the layout.
 *
 * The order of the commit is what makes it atomic: every top-level name is first made a link into
 * `adapter/` (a name the old adapter lacks dangles, so it stays absent), and only then is `adapter`
 * itself repointed, by one rename. A kill before that rename leaves the old adapter readable and a
 * fresh "adapter-step-N" directory that nothing points to, which the next run's cleanup removes; a
 * kill after it leaves the old directory unreferenced, removed the same way.
 */
#include "train/output_dir.h"
#include "core/alloc.h"
#include "io/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LINK_NAME "adapter"
/* the adapter files written at the top level even when the new adapter lacks one (then it dangles) */
static const char *const standard_files[] = {"adapter_config.json", "adapter_model.safetensors"};

/* "adapter-step-<digits>" or "adapter-previous", each optionally "-<digits>": the names this module
 * gives final-adapter directories, and the only ones its cleanup removes. */
static int is_adapter_dir_name(const char *s) {
    if (strncmp(s, "adapter-", 8)) return 0;
    s += 8;
    if (!strncmp(s, "step-", 5)) {
        s += 5;
        if (*s < '0' || *s > '9') return 0;
        while (*s >= '0' && *s <= '9') s++;
    } else if (!strncmp(s, "previous", 8)) {
        s += 8;
    } else {
        return 0;
    }
    if (!*s) return 1;
    if (*s++ != '-' || *s < '0' || *s > '9') return 0;
    while (*s >= '0' && *s <= '9') s++;
    return !*s;
}

/* The first entry of `dir` other than the lock file, copied into name (empty when there is none). */
static cp_status first_entry(const char *dir, char *name, size_t cap) {
    name[0] = '\0';
    DIR *d = opendir(dir);
    if (!d) return cp_error("%s: cannot read: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, CP_LOCK_FILE)) continue;
        snprintf(name, cap, "%s", e->d_name);
        break;
    }
    closedir(d);
    return CP_OK;
}

static cp_status refuse_if_occupied(const char *path, const char *reuse_flags) {
    char first[256];
    if (first_entry(path, first, sizeof first) != CP_OK) return CP_ERR;
    if (!first[0]) return CP_OK;
    return cp_error("%s: the output directory exists and is not empty (it holds \"%s\"); give %s to write into it", path,
                    first, reuse_flags);
}

/* The target of <out>/adapter into buf ("" when there is no such link). */
static cp_status current_target(const char *out, char *buf, size_t cap) {
    buf[0] = '\0';
    char *link = cp_path_join(out, LINK_NAME);
    if (!link) return CP_ERR;
    struct stat sb;
    cp_status st = CP_OK;
    if (lstat(link, &sb) == 0) {
        ssize_t n = S_ISLNK(sb.st_mode) ? readlink(link, buf, cap - 1) : -1;
        if (n < 0 || (size_t)n >= cap - 1)
            st = cp_error("%s exists and is not cpeft's link to the final adapter; move it out of the way", link);
        else buf[n] = '\0';
    } else if (errno != ENOENT) {
        st = cp_error("%s: %s", link, strerror(errno));
    }
    cp_free(link);
    return st;
}

/* Removes final-adapter directories of `out` that <out>/adapter does not point to. */
static cp_status remove_orphans(const char *out, int *n) {
    char cur[512];
    if (current_target(out, cur, sizeof cur) != CP_OK) return CP_ERR;
    DIR *d = opendir(out);
    if (!d) return cp_error("%s: cannot read: %s", out, strerror(errno));
    cp_status st = CP_OK;
    struct dirent *e;
    while (st == CP_OK && (e = readdir(d))) {
        if (!is_adapter_dir_name(e->d_name) || !strcmp(e->d_name, cur)) continue;
        char *p = cp_path_join(out, e->d_name);
        struct stat sb;
        if (!p) st = CP_ERR;
        else if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode) && (st = cp_remove_tree(p)) == CP_OK) (*n)++;
        cp_free(p);
    }
    closedir(d);
    return st;
}

cp_status cp_output_dir_open(cp_output_dir *od, const char *path, int reuse, const char *reuse_flags, const char *holder,
                             int *n_cleaned) {
    memset(od, 0, sizeof *od);
    od->lock_fd = -1;
    *n_cleaned = 0;
    if (cp_mkdirs(path) != CP_OK) return CP_ERR;
    /* An existing lock file is locked before anything is read; a new one is only created once the
     * directory is known to be usable (a refused directory gains no file), then checked again, as a
     * run that ended meanwhile may have filled it. */
    int fd;
    if (cp_dir_lock(path, holder, 0, &fd) != CP_OK) goto busy;
    if (!reuse && refuse_if_occupied(path, reuse_flags) != CP_OK) { cp_dir_unlock(&fd); return CP_ERR; }
    if (fd < 0) {
        if (cp_dir_lock(path, holder, 1, &fd) != CP_OK) goto busy;
        if (!reuse && refuse_if_occupied(path, reuse_flags) != CP_OK) { cp_dir_unlock(&fd); return CP_ERR; }
    }
    od->lock_fd = fd;
    od->path = cp_strdup(path);
    int stale = 0, orphans = 0;
    if (!od->path || cp_dir_clean_stale(path, &stale) != CP_OK || remove_orphans(path, &orphans) != CP_OK) {
        cp_output_dir_close(od);
        return CP_ERR;
    }
    *n_cleaned = stale + orphans;
    return CP_OK;
busy:
    if (strstr(cp_last_error(), " is in use by "))
        cp_error_context("cannot write to the output directory; wait for that run to end or choose another one");
    return CP_ERR;
}

void cp_output_dir_close(cp_output_dir *od) {
    if (!od) return;
    if (od->path || od->lock_fd >= 0) cp_dir_unlock(&od->lock_fd);
    cp_free(od->path);
    od->path = NULL;
}

char *cp_output_dir_fresh_adapter_name(const char *out, int64_t step) {
    char name[64];
    for (int k = 1;; k++) {
        if (k == 1) snprintf(name, sizeof name, "adapter-step-%lld", (long long)step);
        else snprintf(name, sizeof name, "adapter-step-%lld-%d", (long long)step, k);
        char *p = cp_path_join(out, name);
        if (!p) return NULL;
        struct stat sb;
        int taken = lstat(p, &sb) == 0;
        cp_free(p);
        if (!taken) return cp_strdup(name);
    }
}

/* ---- the commit -------------------------------------------------------------------------------- */

typedef struct { char names[16][256]; int n; } name_list;

static void list_add(name_list *l, const char *s) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->names[i], s)) return;
    if (l->n < 16) snprintf(l->names[l->n++], sizeof l->names[0], "%s", s);
}

/* Whether <out>/<f> is already the link "adapter/<f>". */
static int is_our_link(const char *out, const char *f) {
    char *p = cp_path_join(out, f), want[300], got[300];
    if (!p) return 0;
    snprintf(want, sizeof want, LINK_NAME "/%s", f);
    ssize_t n = readlink(p, got, sizeof got - 1);
    cp_free(p);
    if (n < 0) return 0;
    got[n] = '\0';
    return !strcmp(got, want);
}

static cp_status link_top(const char *out, const char *f) {
    char target[300];
    snprintf(target, sizeof target, LINK_NAME "/%s", f);
    char *p = cp_path_join(out, f);
    cp_status st = p ? cp_symlink_replace(target, p) : CP_ERR;
    cp_free(p);
    return st;
}

/* Whether symbolic links can be made in `out` (a probe link, removed again). */
static int links_work(const char *out) {
    if (cp_fs_hook("symlink")) return 0;
    char probe[64];
    snprintf(probe, sizeof probe, ".cpeft-probe.link-%d", (int)getpid());
    char *p = cp_path_join(out, probe);
    if (!p) return 1;
    unlink(p);
    int ok = symlink(LINK_NAME, p) == 0 || (errno != EPERM && errno != EOPNOTSUPP && errno != ENOSYS);
    unlink(p);
    cp_free(p);
    return ok;
}

/* Moves regular top-level adapter files (an older cpeft's layout) into "adapter-previous" and links
 * them there, without changing what any name reads at any instant. */
static cp_status adopt_legacy(const char *out, const name_list *files) {
    name_list legacy = {.n = 0};
    for (int i = 0; i < files->n; i++) {
        char *p = cp_path_join(out, files->names[i]);
        struct stat sb;
        if (p && stat(p, &sb) == 0 && S_ISREG(sb.st_mode) && !is_our_link(out, files->names[i])) list_add(&legacy, files->names[i]);
        cp_free(p);
    }
    if (!legacy.n) return CP_OK;
    char name[64] = "adapter-previous";
    for (int k = 2;; k++) {
        char *p = cp_path_join(out, name);
        struct stat sb;
        int taken = !p || lstat(p, &sb) == 0;
        cp_free(p);
        if (!taken) break;
        snprintf(name, sizeof name, "adapter-previous-%d", k);
    }
    char *dir = cp_path_join(out, name), *staging = NULL;
    cp_status st = dir ? cp_dir_begin(dir, &staging) : CP_ERR;
    for (int i = 0; st == CP_OK && i < legacy.n; i++) {
        char *src = cp_path_join(out, legacy.names[i]), *dst = cp_path_join(staging, legacy.names[i]);
        st = src && dst ? cp_copy_file(src, dst) : CP_ERR;
        cp_free(src);
        cp_free(dst);
    }
    if (st == CP_OK) st = cp_dir_replace(&staging, dir);
    else cp_dir_abort(&staging);
    cp_free(dir);
    if (st != CP_OK) return st;
    cp_fs_hook("commit:legacy-copied");
    char *link = cp_path_join(out, LINK_NAME);
    st = link ? cp_symlink_replace(name, link) : CP_ERR;
    cp_free(link);
    for (int i = 0; st == CP_OK && i < legacy.n; i++) st = link_top(out, legacy.names[i]);
    if (st == CP_OK) cp_fs_hook("commit:legacy-linked");
    return st;
}

/* Without symbolic links: each file copied over its top-level name (atomic per file only). */
static cp_status commit_by_copy(const char *out, const char *dir, const name_list *files) {
    cp_warn("%s: the file system cannot make symbolic links; the final adapter's files are replaced one by one, "
            "so a kill in between could leave them from different runs", out);
    cp_status st = CP_OK;
    for (int i = files->n - 1; st == CP_OK && i >= 0; i--) { /* adapter_config.json last */
        char *src = cp_path_join(dir, files->names[i]), *dst = cp_path_join(out, files->names[i]);
        struct stat sb;
        if (!src || !dst) st = CP_ERR;
        else if (stat(src, &sb) == 0) st = cp_copy_file(src, dst);
        cp_free(src);
        cp_free(dst);
    }
    if (st == CP_OK) st = cp_remove_tree(dir);
    return st;
}

cp_status cp_output_dir_commit_adapter(const char *out, const char *name) {
    char cur[512];
    if (current_target(out, cur, sizeof cur) != CP_OK) return CP_ERR;
    char *dir = cp_path_join(out, name);
    if (!dir) return CP_ERR;
    name_list files = {.n = 0};
    for (int i = 0; i < 2; i++) list_add(&files, standard_files[i]);
    DIR *d = opendir(dir);
    if (!d) { cp_status st = cp_error("%s: cannot read: %s", dir, strerror(errno)); cp_free(dir); return st; }
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') list_add(&files, e->d_name);
    closedir(d);
    if (!links_work(out)) {
        cp_status st = commit_by_copy(out, dir, &files);
        cp_free(dir);
        return st;
    }
    cp_free(dir);
    cp_status st = CP_OK;
    if (!cur[0]) {
        if ((st = adopt_legacy(out, &files)) != CP_OK) return st;
        if ((st = current_target(out, cur, sizeof cur)) != CP_OK) return st;
    }
    /* every top-level name a link into adapter/ before adapter moves */
    for (int i = 0; st == CP_OK && i < files.n; i++)
        if (!is_our_link(out, files.names[i])) st = link_top(out, files.names[i]);
    if (st != CP_OK) return st;
    cp_fs_hook("commit:linked");
    char *link = cp_path_join(out, LINK_NAME);
    st = link ? cp_symlink_replace(name, link) : CP_ERR; /* the commit point */
    cp_free(link);
    if (st != CP_OK) return st;
    cp_fs_hook("commit:switched");
    if (cur[0] && strcmp(cur, name) && is_adapter_dir_name(cur)) {
        char *old = cp_path_join(out, cur);
        if (old && cp_remove_tree(old) != CP_OK) cp_warn("%s", cp_last_error());
        cp_free(old);
    }
    return CP_OK;
}
