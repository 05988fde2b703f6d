/*
 * fsutil.h — file-system steps that must not lose data: directories written under a temporary
 * name and moved into place, files copied or written through a temporary name and renamed.
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

/* Writes `len` bytes to path via "<path>.tmp.<pid>" + fsync + rename. */
cp_status cp_write_file_atomic(const char *path, const void *data, size_t len);
cp_status cp_copy_file(const char *src, const char *dst);
/* Reads a whole file (NUL-terminated; *len without the NUL). */
cp_status cp_read_file(const char *path, char **data, size_t *len);

/* Maps the regular file `path` read-only: *map (munmap it with *size) and *size. A file shorter than
 * `small` bytes is not mapped (mmap cannot map an empty file): its bytes go to small_buf, *size says
 * how many, and *map is NULL, so the caller's parser can say what the short file lacks. */
cp_status cp_map_file(const char *path, size_t small, void *small_buf, void **map, size_t *size);

#endif
