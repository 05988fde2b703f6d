/*
 * output_dir.h — the output directory of a training run: taken with an exclusive lock, refused when
 * it already holds something (unless the run overwrites or resumes), cleaned of what killed runs
 * left half-written, and given its final adapter in one atomic step.
 *
 * Layout of the final adapter (PeftModel.from_pretrained(out) reads the first two names):
 *
 *   out/adapter_config.json        -> adapter/adapter_config.json        (symbolic links, made once)
 *   out/adapter_model.safetensors  -> adapter/adapter_model.safetensors
 *   out/adapter                    -> adapter-step-N                     (the commit point)
 *   out/adapter-step-N/            the complete adapter, written under a temporary name first
 *
 * Committing a new adapter repoints `adapter` with one rename, so at every instant (a kill included)
 * the two top-level names resolve into the same directory: the old complete adapter or the new one.
 * A directory whose top-level adapter files are regular files (written by an older cpeft) is first
 * moved into the layout without changing what those names read. Where the file system has no
 * symbolic links, the files are copied into place one by one, with a warning that this is not atomic.
 */
#ifndef CP_TRAIN_OUTPUT_DIR_H
#define CP_TRAIN_OUTPUT_DIR_H

#include <stdint.h>

#include "core/error.h"

typedef struct {
    char *path;
    int lock_fd;   /* the flock on <path>/.cpeft-lock, -1 when not held */
} cp_output_dir;

/* Creates `path` if needed and locks it for this process (`holder` is recorded in the lock file and
 * named to a second run, which is refused). Unless `reuse`, a directory that holds anything already
 * is refused, naming `reuse_flags` as the way to allow it. Then removes the temporary names of dead
 * processes (cp_dir_clean_stale) and final-adapter directories nothing points to; *n_cleaned counts
 * them. On error nothing in the directory has changed. */
cp_status cp_output_dir_open(cp_output_dir *od, const char *path, int reuse, const char *reuse_flags, const char *holder,
                             int *n_cleaned);
/* Releases the lock and frees od->path. Safe on a zeroed or closed struct. */
void cp_output_dir_close(cp_output_dir *od);

/* A name "adapter-step-<step>" (with "-2", "-3", ... when taken) that does not exist in `out`, for the
 * final adapter's directory (caller frees). */
char *cp_output_dir_fresh_adapter_name(const char *out, int64_t step);
/* Makes the complete adapter directory <out>/<name> the final adapter, as the header describes, and
 * removes the one it replaces. */
cp_status cp_output_dir_commit_adapter(const char *out, const char *name);

/* Test hook (see cp_fs_set_hook): each step of cp_output_dir_commit_adapter calls cp_fs_hook with
 * "commit:<step>" (legacy-copied, legacy-linked, linked, switched). */

#endif
