/*
 * fsutil.c — careful file-system helpers; see fsutil.h.
 */
#include "io/fsutil.h"
#include "core/alloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

void cp_dir_abort(char **staging) {
    if (!*staging) return;
    DIR *d = opendir(*staging);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char *p = cp_path_join(*staging, e->d_name);
            if (p) unlink(p);
            cp_free(p);
        }
        closedir(d);
    }
    rmdir(*staging);
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
