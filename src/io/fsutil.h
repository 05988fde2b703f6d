/*
 * fsutil.h — file-system steps that must not lose data: directories written under a temporary
 * name and moved into place (or swapped with the old one in a single step), files copied or written
 * through a temporary name and renamed, symbolic links repointed in one rename, the leftovers of
 * killed writers found by the process id in their names, and an exclusive lock on a directory.
 *
 * Temporary names carry the writer's process id: "<name>.partial-<pid>" (a directory being
 * written), "<name>.tmp.<pid>" (a file being written), "<name>.old-<pid>" (a directory moved aside
 * by cp_dir_replace where the file system cannot exchange) and "<name>.link-<pid>" (a new symbolic
 * link). cp_dir_clean_stale removes those of processes that no longer exist.
 */
#ifndef CP_IO_FSUTIL_H
#define CP_IO_FSUTIL_H

#include <stddef.h>

#include "core/error.h"

/* mkdir -p. */
cp_status cp_mkdirs(const char *path);
int cp_path_exists(const char *path);
int cp_is_dir(const char *path);
/* "<dir>/<name>" (caller frees). */
char *cp_path_join(const char *dir, const char *name);

/* Starts writing directory `final`: creates and returns "<final>.partial-<pid>" in *staging. */
cp_status cp_dir_begin(const char *final, char **staging);
/* Moves everything written into place: renames the staging directory to `final` when `final`
 * does not exist, else renames each file over its counterpart in `final`. Frees *staging. */
cp_status cp_dir_commit(char **staging, const char *final);
/* Removes the staging directory and its files. Frees *staging. */
void cp_dir_abort(char **staging);
/* Puts the complete directory *staging in place of `final` in one step, so that a reader (or a kill
 * at any instant) sees the old directory or the new one, never a mixture: a rename when `final`
 * does not exist; else renameat2(RENAME_EXCHANGE) swaps the two and the old one (now under the
 * staging name) is removed. Where the file system cannot exchange, `final` is first renamed to
 * "<final>.old-<pid>": a kill between that rename and the next leaves no `final`, and
 * cp_dir_clean_stale moves the old one back. Frees *staging (and removes it on failure). */
cp_status cp_dir_replace(char **staging, const char *final);
/* Removes `path` and everything under it; symbolic links are removed, never followed. A missing
 * path is not an error. */
cp_status cp_remove_tree(const char *path);
/* Makes `link` a symbolic link to `target` in one step: a new link "<link>.link-<pid>" renamed over
 * it (a regular file or link at `link` is replaced; a directory is an error). */
cp_status cp_symlink_replace(const char *target, const char *link);
/* The process id in a temporary name of the kinds above (".partial-", ".tmp.", ".old-", ".link-"
 * followed by digits at the end), or 0 when `name` is not one; *base_len, when given, is the length
 * of the name before the suffix. */
int cp_temp_name_pid(const char *name, size_t *base_len);
/* Removes from directory `dir` (not below it) the temporary names of processes that no longer exist;
 * an "<x>.old-<pid>" directory is renamed back to <x> when <x> is missing. Call it only while no
 * other writer can be at work in `dir` (hold cp_dir_lock). *n_removed counts what was cleaned. */
cp_status cp_dir_clean_stale(const char *dir, int *n_removed);

/* Takes an exclusive lock (flock) on "<dir>/.cpeft-lock", which then records `holder` (e.g.
 * "cpeft train, pid 123"). With create == 0 a missing lock file is not created: *fd = -1 and CP_OK.
 * When another process holds the lock the error names it: "<dir> is in use by <holder>". The lock
 * lasts until cp_dir_unlock or the process ends. */
#define CP_LOCK_FILE ".cpeft-lock"
cp_status cp_dir_lock(const char *dir, const char *holder, int create, int *fd);
void cp_dir_unlock(int *fd);

/* Test hook: called with the name of each step of cp_dir_replace and cp_symlink_replace
 * ("replace:exchange" before the exchange — a nonzero return makes it act as a file system without
 * RENAME_EXCHANGE —, "replace:aside" between the two renames of the fallback, "replace:swapped"
 * before the old directory is removed, "symlink" before a link is created — nonzero: act as a file
 * system without symbolic links). NULL (the default): no hook. */
typedef int (*cp_fs_hook_fn)(const char *step);
void cp_fs_set_hook(cp_fs_hook_fn hook);
int cp_fs_hook(const char *step);

/* Writes `len` bytes to path via "<path>.tmp.<pid>" + fsync + rename. */
cp_status cp_write_file_atomic(const char *path, const void *data, size_t len);
cp_status cp_copy_file(const char *src, const char *dst);
/* Reads a whole file (NUL-terminated; *len without the NUL). */
cp_status cp_read_file(const char *path, char **data, size_t *len);

/* Maps the regular file `path` read-only: *map (munmap it with *size) and *size. A file shorter than
 * `small` bytes is not mapped (mmap cannot map an empty file): its bytes go to small_buf, *size says
 * how many, and *map is NULL, so the caller's parser can say what the short file lacks. */
cp_status cp_map_file(const char *path, size_t small, void *small_buf, void **map, size_t *size);
/* A file format's reader over a mapped file: zeroes obj (obj_size bytes, so that the reader's close
 * is safe after any error), cp_map_file, then parse(obj, bytes, size, path). On success the mapping
 * stays and *map, *size (fields of obj) are set after parse: the reader's close unmaps it; when
 * parse fails it is unmapped. A file shorter than `small` (at most 64) bytes is handed to parse
 * from a buffer, and parse must refuse it (it cannot hold the format's header). */
cp_status cp_map_parse(const char *path, size_t small, cp_status (*parse)(void *obj, const void *bytes, size_t size,
                                                                          const char *name),
                       void *obj, size_t obj_size, void **map, size_t *size);

#endif
