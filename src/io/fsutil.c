/*
 * fsutil.c — careful file-system helpers; see fsutil.h.
 */
#include "io/fsutil.h"
#include "core/alloc.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static cp_fs_hook_fn fs_hook;
void cp_fs_set_hook(cp_fs_hook_fn hook) { fs_hook = hook; }
int cp_fs_hook(const char *step) { return fs_hook ? fs_hook(step) : 0; }

char *cp_path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = cp_malloc(n, "a path");
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int cp_path_exists(const char *path) { struct stat st; return stat(path, &st) == 0; }
int cp_is_dir(const char *path) { struct stat st; return stat(path, &st) == 0 && S_ISDIR(st.st_mode); }

cp_status cp_mkdirs(const char *path) {
    char buf[4096];
    if (strlen(path) >= sizeof buf) return cp_error("%s: path too long", path);
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return cp_error("%s: cannot create directory: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return cp_error("%s: cannot create directory: %s", buf, strerror(errno));
    if (!cp_is_dir(buf)) return cp_error("%s: exists and is not a directory", buf);
    return CP_OK;
}

cp_status cp_dir_begin(const char *final, char **staging) {
    size_t n = strlen(final) + 32;
    *staging = cp_malloc(n, "a path");
    if (!*staging) return CP_ERR;
    snprintf(*staging, n, "%s.partial-%d", final, (int)getpid());
    /* make sure the parent exists */
    char *parent = cp_strdup(final);
    if (!parent) { cp_free(*staging); *staging = NULL; return CP_ERR; }
    char *slash = strrchr(parent, '/');
    cp_status st = CP_OK;
    if (slash && slash != parent) { *slash = '\0'; st = cp_mkdirs(parent); }
    cp_free(parent);
    if (st == CP_OK && mkdir(*staging, 0755) != 0 && errno != EEXIST)
        st = cp_error("%s: cannot create directory: %s", *staging, strerror(errno));
    if (st != CP_OK) { cp_free(*staging); *staging = NULL; }
    return st;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)ftw;
    int r = flag == FTW_DP ? rmdir(path) : unlink(path);
    return r != 0 && errno != ENOENT ? -1 : 0;
}

/* rm -r without following links; 0 or -1 with errno (the current error message is left alone). */
static int remove_tree(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return errno == ENOENT ? 0 : -1;
    return S_ISDIR(sb.st_mode) ? nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) : unlink(path);
}

cp_status cp_remove_tree(const char *path) {
    if (remove_tree(path) != 0) return cp_error("%s: cannot remove: %s", path, strerror(errno));
    return CP_OK;
}

void cp_dir_abort(char **staging) {
    if (!*staging) return;
    if (remove_tree(*staging) != 0) cp_warn("%s: cannot remove: %s", *staging, strerror(errno));
    cp_free(*staging);
    *staging = NULL;
}

cp_status cp_dir_commit(char **staging, const char *final) {
    if (!cp_path_exists(final)) {
        if (rename(*staging, final) != 0) {
            cp_status st = cp_error("%s: cannot move into place: %s", final, strerror(errno));
            cp_dir_abort(staging);
            return st;
        }
        cp_free(*staging);
        *staging = NULL;
        return CP_OK;
    }
    if (!cp_is_dir(final)) { cp_dir_abort(staging); return cp_error("%s: exists and is not a directory", final); }
    DIR *d = opendir(*staging);
    if (!d) { cp_dir_abort(staging); return cp_error("%s: cannot read: %s", final, strerror(errno)); }
    struct dirent *e;
    cp_status st = CP_OK;
    while (st == CP_OK && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *from = cp_path_join(*staging, e->d_name), *to = cp_path_join(final, e->d_name);
        if (!from || !to || rename(from, to) != 0) st = cp_error("%s: cannot move into place: %s", to ? to : final, strerror(errno));
        cp_free(from);
        cp_free(to);
    }
    closedir(d);
    cp_dir_abort(staging);
    return st;
}

/* fsyncs the directory holding `path`, so that a rename in it survives a power cut (best effort). */
static void sync_parent(const char *path) {
    char *parent = cp_strdup(path);
    if (!parent) return;
    char *slash = strrchr(parent, '/');
    const char *dir = slash ? (slash == parent ? "/" : (*slash = '\0', parent)) : ".";
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) { fsync(fd); close(fd); }
    cp_free(parent);
}

/* Swaps `staging` and `final` (both exist) in one step. Returns 1 when done, 0 when the file system
 * cannot (the caller falls back), -1 on another error (reported). */
static int exchange(const char *staging, const char *final) {
    if (cp_fs_hook("replace:exchange")) return 0;
    if (renameat2(AT_FDCWD, staging, AT_FDCWD, final, RENAME_EXCHANGE) == 0) return 1;
    if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP || errno == EOPNOTSUPP) return 0;
    cp_error("%s: cannot swap in the new directory: %s", final, strerror(errno));
    return -1;
}

cp_status cp_dir_replace(char **staging, const char *final) {
    struct stat sb;
    cp_status st = CP_OK;
    int swapped;
    if (lstat(final, &sb) != 0) {
        if (errno != ENOENT || rename(*staging, final) != 0) st = cp_error("%s: cannot move into place: %s", final, strerror(errno));
    } else if (!S_ISDIR(sb.st_mode)) {
        st = cp_error("%s: exists and is not a directory", final);
    } else if ((swapped = exchange(*staging, final)) == 1) {
        cp_fs_hook("replace:swapped"); /* *staging now names the old directory */
    } else if (swapped < 0) {
        st = CP_ERR;
    } else {
        /* no RENAME_EXCHANGE here: old aside, new in place; a kill in between leaves only the old one,
         * under "<final>.old-<pid>", which cp_dir_clean_stale moves back */
        size_t n = strlen(final) + 32;
        char *old = cp_malloc(n, "a path");
        if (!old) return CP_ERR;
        snprintf(old, n, "%s.old-%d", final, (int)getpid());
        if (rename(final, old) != 0) {
            st = cp_error("%s: cannot move the old directory aside: %s", final, strerror(errno));
        } else {
            cp_fs_hook("replace:aside");
            if (rename(*staging, final) != 0) {
                st = cp_error("%s: cannot move into place: %s", final, strerror(errno));
                rename(old, final);
            } else {
                cp_fs_hook("replace:swapped");
                cp_free(*staging);
                *staging = old; /* removed below, as the exchange's old directory is */
                old = NULL;
            }
        }
        cp_free(old);
    }
    if (st == CP_OK) sync_parent(final);
    cp_dir_abort(staging); /* the old directory, or the new one after a failure */
    return st;
}

cp_status cp_symlink_replace(const char *target, const char *link) {
    if (cp_fs_hook("symlink")) return cp_error("%s: cannot create a symbolic link: %s", link, strerror(EPERM));
    size_t n = strlen(link) + 32;
    char *tmp = cp_malloc(n, "a path");
    if (!tmp) return CP_ERR;
    snprintf(tmp, n, "%s.link-%d", link, (int)getpid());
    unlink(tmp);
    cp_status st = CP_OK;
    if (symlink(target, tmp) != 0) st = cp_error("%s: cannot create a symbolic link: %s", link, strerror(errno));
    else if (rename(tmp, link) != 0) {
        st = cp_error("%s: cannot replace: %s", link, strerror(errno));
        unlink(tmp);
    } else sync_parent(link);
    cp_free(tmp);
    return st;
}

int cp_temp_name_pid(const char *name, size_t *base_len) {
    static const char *const marks[] = {".partial-", ".tmp.", ".old-", ".link-"};
    size_t len = strlen(name), digits = 0;
    while (digits < len && name[len - 1 - digits] >= '0' && name[len - 1 - digits] <= '9') digits++;
    if (digits == 0 || digits > 9) return 0;
    for (int k = 0; k < 4; k++) {
        size_t m = strlen(marks[k]);
        if (len - digits > m && !strncmp(name + len - digits - m, marks[k], m)) {
            if (base_len) *base_len = len - digits - m;
            return atoi(name + len - digits);
        }
    }
    return 0;
}

static int process_alive(int pid) { return pid == (int)getpid() || kill(pid, 0) == 0 || errno == EPERM; }

cp_status cp_dir_clean_stale(const char *dir, int *n_removed) {
    *n_removed = 0;
    DIR *d = opendir(dir);
    if (!d) return cp_error("%s: cannot read: %s", dir, strerror(errno));
    cp_status st = CP_OK;
    struct dirent *e;
    while (st == CP_OK && (e = readdir(d))) {
        size_t base;
        int pid = cp_temp_name_pid(e->d_name, &base);
        if (pid <= 0 || process_alive(pid)) continue;
        char *path = cp_path_join(dir, e->d_name);
        if (!path) { st = CP_ERR; break; }
        int restored = 0;
        if (strstr(e->d_name + base, ".old-") == e->d_name + base) {
            char *orig = cp_strdup(path);
            if (orig) {
                orig[strlen(dir) + 1 + base] = '\0';
                struct stat sb;
                if (lstat(orig, &sb) != 0 && errno == ENOENT) {
                    if (rename(path, orig) != 0) st = cp_error("%s: cannot move back to %s: %s", path, orig, strerror(errno));
                    restored = 1;
                }
                cp_free(orig);
            }
        }
        if (!restored && st == CP_OK) st = cp_remove_tree(path);
        if (st == CP_OK) (*n_removed)++;
        cp_free(path);
    }
    closedir(d);
    return st;
}

cp_status cp_dir_lock(const char *dir, const char *holder, int create, int *fd) {
    *fd = -1;
    char *path = cp_path_join(dir, CP_LOCK_FILE);
    if (!path) return CP_ERR;
    int f = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0644);
    if (f < 0) {
        cp_status st = !create && errno == ENOENT ? CP_OK : cp_error("%s: cannot write: %s", path, strerror(errno));
        cp_free(path);
        return st;
    }
    cp_free(path);
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        if (err == EWOULDBLOCK) {
            char who[256];
            ssize_t n = pread(f, who, sizeof who - 1, 0);
            close(f);
            while (n > 0 && (who[n - 1] == '\n' || who[n - 1] == '\0')) n--;
            who[n > 0 ? n : 0] = '\0';
            return cp_error("%s is in use by %s", dir, n > 0 ? who : "another process");
        }
        /* a file system without locks (some network mounts): run, but say that nothing guards it */
        cp_warn("%s: cannot lock (%s); a second run on this directory would not be detected", dir, strerror(err));
    }
    if (ftruncate(f, 0) != 0 || pwrite(f, holder, strlen(holder), 0) < 0 || pwrite(f, "\n", 1, (off_t)strlen(holder)) < 0) {
        cp_status st = cp_error("%s/" CP_LOCK_FILE ": cannot write: %s", dir, strerror(errno));
        close(f);
        return st;
    }
    *fd = f;
    return CP_OK;
}

void cp_dir_unlock(int *fd) {
    if (*fd >= 0) close(*fd); /* closing the last descriptor releases the flock */
    *fd = -1;
}

cp_status cp_write_file_atomic(const char *path, const void *data, size_t len) {
    size_t n = strlen(path) + 32;
    char *tmp = cp_malloc(n, "a path");
    if (!tmp) return CP_ERR;
    snprintf(tmp, n, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { cp_status st = cp_error("%s: cannot write: %s", path, strerror(errno)); cp_free(tmp); return st; }
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            cp_status st = cp_error("%s: write failed: %s", path, strerror(errno));
            close(fd);
            unlink(tmp);
            cp_free(tmp);
            return st;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        cp_status st = cp_error("%s: cannot finish writing: %s", path, strerror(errno));
        unlink(tmp);
        cp_free(tmp);
        return st;
    }
    cp_free(tmp);
    return CP_OK;
}

cp_status cp_read_file(const char *path, char **data, size_t *len) {
    *data = NULL;
    if (cp_is_dir(path)) return cp_error("%s: is a directory, expected a file", path);
    FILE *f = fopen(path, "rb");
    if (!f) return cp_error("%s: cannot open: %s", path, strerror(errno));
    /* read in chunks: works for pipes and /dev/stdin as well as regular files */
    size_t cap = 1 << 16, n = 0;
    char *buf = cp_malloc(cap + 1, path);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        char *bigger = cp_realloc(buf, 2 * cap + 1, path);
        if (!bigger) { cp_free(buf); buf = NULL; break; }
        buf = bigger;
        cap *= 2;
    }
    int failed = ferror(f);
    fclose(f);
    if (!buf) return CP_ERR;
    if (failed) { cp_free(buf); return cp_error("%s: read error", path); }
    buf[n] = '\0';
    *data = buf;
    if (len) *len = n;
    return CP_OK;
}

cp_status cp_copy_file(const char *src, const char *dst) {
    char *data;
    size_t len;
    if (cp_read_file(src, &data, &len) != CP_OK) return CP_ERR;
    cp_status st = cp_write_file_atomic(dst, data, len);
    cp_free(data);
    return st;
}

cp_status cp_map_parse(const char *path, size_t small, cp_status (*parse)(void *obj, const void *bytes, size_t size,
                                                                          const char *name),
                       void *obj, size_t obj_size, void **map, size_t *size) {
    memset(obj, 0, obj_size);
    uint8_t head[64];
    void *m;
    size_t n;
    if (small > sizeof head) return cp_error("%s: cp_map_parse: %zu header bytes is more than it holds", path, small);
    if (cp_map_file(path, small, head, &m, &n) != CP_OK) return CP_ERR;
    if (!m) return parse(obj, head, n, path) == CP_OK ? cp_error("%s: too short", path) : CP_ERR;
    if (parse(obj, m, n, path) != CP_OK) {
        munmap(m, n);
        return CP_ERR;
    }
    *map = m; /* after parse, which may clear the object that holds *map */
    *size = n;
    return CP_OK;
}

cp_status cp_map_file(const char *path, size_t small, void *small_buf, void **map, size_t *size) {
    *map = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cp_error("%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int err = errno;
        close(fd);
        return cp_error("%s: cannot stat: %s", path, strerror(err));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return cp_error("%s: not a regular file", path);
    }
    size_t n = (size_t)sb.st_size;
    if (n < small) {
        ssize_t got = read(fd, small_buf, n);
        close(fd);
        *size = got < 0 ? 0 : (size_t)got;
        return CP_OK;
    }
    void *m = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (m == MAP_FAILED) return cp_error("%s: cannot map %zu bytes: %s", path, n, strerror(err));
    *map = m;
    *size = n;
    return CP_OK;
}
