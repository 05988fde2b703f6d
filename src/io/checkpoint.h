/*
 * checkpoint.h — a Hugging Face model directory's weights: model.safetensors, or the shards named
 * by model.safetensors.index.json. All files are memory-mapped and validated; tensors are looked up
 * by state-dict name. A directory with config.json and no weights opens with n_files == 0, so that
 * counting and printing work from the config alone (as PyTorch's meta device does).
 */
#ifndef CP_IO_CHECKPOINT_H
#define CP_IO_CHECKPOINT_H

#include "core/error.h"
#include "io/safetensors.h"

typedef struct {
    const char *name;          /* points into the safetensors tensor */
    const cp_st_tensor *tensor;
    int file_index;
    int used;                  /* set by the loader when a parameter takes it */
} cp_ckpt_entry;

typedef struct {
    char *dir;
    cp_safetensors *files;
    int n_files;
    cp_ckpt_entry *entries;    /* sorted by name */
    int n_entries;
    /* What else the tensors point into (a GGUF mapping, buffers a loader made), freed by
     * cp_checkpoint_close; NULL for a directory. */
    void *owner;
    void (*owner_free)(void *owner);
} cp_checkpoint;

/* Opens the weights of `dir`. Errors name the file at fault. */
cp_status cp_checkpoint_open(cp_checkpoint *ck, const char *dir);
/* A checkpoint over tensors built in memory (convert/gguf_load.c: a GGUF file's tensors under their
 * Hugging Face names): `file` (taken over; its path names the source in messages, map may be NULL)
 * becomes the only file; `owner` is freed with owner_free at close, after the file. On error
 * everything given is freed. */
cp_status cp_checkpoint_adopt(cp_checkpoint *ck, const char *dir, cp_safetensors *file, void *owner,
                              void (*owner_free)(void *owner));
cp_ckpt_entry *cp_checkpoint_find(cp_checkpoint *ck, const char *name);
/* The file name (inside dir) of an entry, for messages. */
const char *cp_checkpoint_file_of(const cp_checkpoint *ck, const cp_ckpt_entry *e);
void cp_checkpoint_close(cp_checkpoint *ck);

#endif
