/*
 * checkpoint.c — opening a model directory's safetensors files (single or sharded) and indexing
 * their tensors by name; see checkpoint.h.
 *
 * A sharded checkpoint is trusted no more than a single file: every shard named by the index must
 * exist and hold the tensors the index assigns to it, and a name may appear in only one shard.
 */
#include "io/checkpoint.h"
#include "core/alloc.h"
#include "io/json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = cp_malloc(n, "a path");
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int entry_cmp(const void *a, const void *b) {
    return strcmp(((const cp_ckpt_entry *)a)->name, ((const cp_ckpt_entry *)b)->name);
}

static cp_status add_file(cp_checkpoint *ck, const char *file_name) {
    char *path = join(ck->dir, file_name);
    if (!path) return CP_ERR;
    cp_safetensors *files = cp_realloc(ck->files, (size_t)(ck->n_files + 1) * sizeof *files, "the shard list");
    if (!files) { cp_free(path); return CP_ERR; }
    ck->files = files;
    cp_status st = cp_st_open(&ck->files[ck->n_files], path);
    cp_free(path);
    if (st != CP_OK) return CP_ERR;
    ck->n_files++;
    return CP_OK;
}

static cp_status build_index(cp_checkpoint *ck) {
    int total = 0;
    for (int f = 0; f < ck->n_files; f++) total += ck->files[f].n_tensors;
    ck->entries = cp_calloc((size_t)total, sizeof *ck->entries, "the tensor index");
    if (!ck->entries && total) return CP_ERR;
    for (int f = 0; f < ck->n_files; f++)
        for (int i = 0; i < ck->files[f].n_tensors; i++) {
            cp_ckpt_entry *e = &ck->entries[ck->n_entries++];
            e->name = ck->files[f].tensors[i].name;
            e->tensor = &ck->files[f].tensors[i];
            e->file_index = f;
        }
    qsort(ck->entries, (size_t)ck->n_entries, sizeof *ck->entries, entry_cmp);
    for (int i = 1; i < ck->n_entries; i++)
        if (strcmp(ck->entries[i - 1].name, ck->entries[i].name) == 0)
            return cp_error("%s: tensor \"%s\" appears in both %s and %s", ck->dir, ck->entries[i].name,
                            cp_checkpoint_file_of(ck, &ck->entries[i - 1]),
                            cp_checkpoint_file_of(ck, &ck->entries[i]));
    return CP_OK;
}

static cp_status open_sharded(cp_checkpoint *ck, const char *index_path) {
    cJSON *root;
    if (cp_json_read_file(index_path, &root) != CP_OK) return CP_ERR;
    const cJSON *map = cp_json_field(root, "weight_map");
    cp_status st = CP_OK;
    if (!map || !cJSON_IsObject(map)) {
        st = cp_error("%s: field \"weight_map\": expected an object mapping tensor names to files, found %s",
                      index_path, cp_json_type_name(map));
        goto done;
    }
    /* Open each distinct shard once, in order of first mention. */
    const cJSON *item;
    cJSON_ArrayForEach(item, map) {
        if (!cJSON_IsString(item)) {
            st = cp_error("%s: weight_map[\"%s\"]: expected a file name, found %s", index_path,
                          item->string, cp_json_type_name(item));
            goto done;
        }
        const char *fname = item->valuestring;
        if (strchr(fname, '/') || strcmp(fname, "..") == 0) {
            st = cp_error("%s: weight_map[\"%s\"]: shard \"%s\" must be a file in the model directory",
                          index_path, item->string, fname);
            goto done;
        }
        int seen = 0;
        for (int f = 0; f < ck->n_files && !seen; f++) {
            const char *base = strrchr(ck->files[f].path, '/');
            seen = strcmp(base ? base + 1 : ck->files[f].path, fname) == 0;
        }
        if (seen) continue;
        char *path = join(ck->dir, fname);
        if (!path) { st = CP_ERR; goto done; }
        int exists = file_exists(path);
        cp_free(path);
        if (!exists) {
            st = cp_error("%s: shard \"%s\" (listed for tensor \"%s\") does not exist", index_path, fname,
                          item->string);
            goto done;
        }
        if ((st = add_file(ck, fname)) != CP_OK) goto done;
    }
    if ((st = build_index(ck)) != CP_OK) goto done;
    /* Every tensor the index names must be in the shard it names. */
    cJSON_ArrayForEach(item, map) {
        cp_ckpt_entry *e = cp_checkpoint_find(ck, item->string);
        if (!e) {
            st = cp_error("%s: tensor \"%s\" is listed in the index but missing from shard \"%s\"", index_path,
                          item->string, item->valuestring);
            goto done;
        }
        const char *actual = cp_checkpoint_file_of(ck, e);
        if (strcmp(actual, item->valuestring) != 0) {
            st = cp_error("%s: tensor \"%s\" is listed in shard \"%s\" but found in \"%s\"", index_path,
                          item->string, item->valuestring, actual);
            goto done;
        }
    }
done:
    cJSON_Delete(root);
    return st;
}

cp_status cp_checkpoint_open(cp_checkpoint *ck, const char *dir) {
    memset(ck, 0, sizeof *ck);
    struct stat sd;
    if (stat(dir, &sd) != 0) return cp_error("%s: cannot open model directory: %s", dir, strerror(errno));
    if (!S_ISDIR(sd.st_mode)) return cp_error("%s: not a directory", dir);
    ck->dir = cp_strdup(dir);
    if (!ck->dir) return CP_ERR;

    char *single = join(dir, "model.safetensors");
    char *index = join(dir, "model.safetensors.index.json");
    cp_status st = CP_OK;
    if (!single || !index) st = CP_ERR;
    else if (file_exists(single)) {
        st = add_file(ck, "model.safetensors");
        if (st == CP_OK) st = build_index(ck);
    } else if (file_exists(index)) {
        st = open_sharded(ck, index);
    } else {
        char *bin = join(dir, "pytorch_model.bin");
        if (bin && file_exists(bin))
            st = cp_error("%s: holds only pytorch_model.bin (a pickle); cpeft reads safetensors — convert it "
                          "with `model.save_pretrained(dir, safe_serialization=True)` in Python", dir);
        cp_free(bin);
    }
    cp_free(single);
    cp_free(index);
    if (st != CP_OK) cp_checkpoint_close(ck);
    return st;
}

cp_ckpt_entry *cp_checkpoint_find(cp_checkpoint *ck, const char *name) {
    cp_ckpt_entry key = {.name = name};
    return ck->n_entries ? bsearch(&key, ck->entries, (size_t)ck->n_entries, sizeof key, entry_cmp) : NULL;
}

const char *cp_checkpoint_file_of(const cp_checkpoint *ck, const cp_ckpt_entry *e) {
    const char *path = ck->files[e->file_index].path;
    const char *base = strrchr(path, '/');
    return base ? base + 1 : path;
}

cp_status cp_checkpoint_adopt(cp_checkpoint *ck, const char *dir, cp_safetensors *file, void *owner,
                              void (*owner_free)(void *owner)) {
    memset(ck, 0, sizeof *ck);
    ck->owner = owner;
    ck->owner_free = owner_free;
    ck->dir = cp_strdup(dir);
    ck->files = cp_malloc(sizeof *ck->files, "the file list");
    if (!ck->dir || !ck->files) {
        cp_st_close(file);
        cp_checkpoint_close(ck);
        return CP_ERR;
    }
    ck->files[0] = *file;
    ck->n_files = 1;
    memset(file, 0, sizeof *file);
    cp_status st = build_index(ck);
    if (st != CP_OK) cp_checkpoint_close(ck);
    return st;
}

void cp_checkpoint_close(cp_checkpoint *ck) {
    for (int f = 0; f < ck->n_files; f++) cp_st_close(&ck->files[f]);
    cp_free(ck->files);
    cp_free(ck->entries);
    cp_free(ck->dir);
    if (ck->owner_free) ck->owner_free(ck->owner);
    memset(ck, 0, sizeof *ck);
}
