/*
 * dist_train.c — the trainer's checks at the start of a data-parallel run (train/dist.h): that every
 * rank was started with the same configuration, and that the output directory rank 0 writes is the
 * one every rank sees (checkpoints nobody else could resume from are refused before step 1).
 *
 * The configuration is compared by four 64-bit FNV hashes gathered from every rank, so the message
 * says what differs and on which ranks: the training options (every TrainingArguments and LoRA field
 * except the file paths, which may differ between hosts), the data as read (example and token
 * counts), the model's config, and the adapter's trainable values after its seeded initialisation or
 * its checkpoint (a different seed, rank, target list or checkpoint changes them).
 */
#include "train/trainer.h"
#include "core/alloc.h"
#include "io/fsutil.h"
#include "models/model.h"
#include "train/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define H(h, field) (h = cp_dist_hash(h, &(field), sizeof(field)))

static uint64_t options_hash(const cp_train_options *o) {
    uint64_t h = CP_DIST_HASH0;
    H(h, o->validation_split); H(h, o->strict); H(h, o->max_seq_length); H(h, o->learning_rate); H(h, o->weight_decay);
    H(h, o->adam_beta1); H(h, o->adam_beta2); H(h, o->adam_epsilon); H(h, o->max_grad_norm); H(h, o->num_train_epochs);
    H(h, o->max_steps); H(h, o->per_device_train_batch_size); H(h, o->gradient_accumulation_steps);
    H(h, o->lr_scheduler_type); H(h, o->warmup_steps); H(h, o->warmup_ratio); H(h, o->logging_steps); H(h, o->eval_steps);
    H(h, o->save_steps); H(h, o->seed); H(h, o->gradient_checkpointing); H(h, o->overwrite_output_dir);
    H(h, o->max_train_samples); H(h, o->max_eval_samples); H(h, o->model_dropout); H(h, o->max_source_length);
    H(h, o->max_target_length); H(h, o->lora.r); H(h, o->lora.alpha); H(h, o->lora.dropout);
    const char *strings[] = {o->text_field, o->adapter_name, o->task_type, o->text_pair_field, o->label_field, o->source_field,
                             o->target_field, o->source_prefix, o->lora.target_modules, o->lora.bias, o->lora.modules_to_save};
    for (size_t i = 0; i < sizeof strings / sizeof *strings; i++) h = cp_dist_hash_str(h, strings[i]);
    const int has[] = {o->eval_data_path != NULL, o->peft_config_path != NULL, o->resume_from != NULL, o->output_dir != NULL};
    return cp_dist_hash(h, has, sizeof has);
}

static uint64_t data_hash(const cp_trainer *t) {
    cp_trainer_info in;
    cp_trainer_get_info(t, &in);
    uint64_t h = CP_DIST_HASH0;
    H(h, in.train_examples); H(h, in.train_tokens); H(h, in.train_loss_tokens); H(h, in.eval_examples);
    return h;
}

static uint64_t model_hash(const cp_model *m) {
    const cp_model_config *c = &m->config;
    uint64_t h = cp_dist_hash_str(CP_DIST_HASH0, c->model_type);
    H(h, c->vocab_size); H(h, c->hidden_size); H(h, c->num_layers); H(h, c->num_heads); H(h, c->intermediate_size);
    H(h, c->max_positions);
    return cp_dist_hash_str(h, c->torch_dtype);
}

static uint64_t adapter_hash(const cp_trainer *t) {
    uint64_t h = CP_DIST_HASH0;
    for (int i = 0; i < t->n_params; i++) {
        const cp_param *p = t->params[i];
        h = cp_dist_hash_str(h, p->name);
        h = cp_dist_hash(h, p->data, (size_t)p->numel * sizeof(float));
    }
    return h;
}

/* The ranks whose hash differs from rank 0's, as "1, 3" (at most a line). */
static void differing(const uint64_t *all, int n, char *buf, size_t cap) {
    size_t o = 0;
    buf[0] = '\0';
    for (int r = 1; r < n && o + 16 < cap; r++)
        if (all[r] != all[0]) o += (size_t)snprintf(buf + o, cap - o, "%s%d", o ? ", " : "", r);
}

static cp_status same_configuration(cp_trainer *t) {
    const int N = cp_dist_size();
    const uint64_t mine[4] = {options_hash(&t->o), data_hash(t), model_hash(t->m), adapter_hash(t)};
    const char *what[4] = {"training options (the command line)", "training data (examples or tokens read)",
                           "model (config.json)", "adapter (its initial values: --seed, the LoRA flags, --peft-config or the checkpoint)"};
    uint64_t *all = cp_malloc((size_t)N * sizeof *all, "the ranks' hashes");
    if (!all) cp_dist_abort(1); /* a collective follows: this rank cannot take part */
    cp_status st = CP_OK;
    for (int k = 0; k < 4; k++) {
        cp_dist_gather_u64(mine[k], all, "comparing the ranks' configurations");
        char ranks[256];
        differing(all, N, ranks, sizeof ranks);
        if (ranks[0] && st == CP_OK)
            st = cp_error("the ranks were started with different %s: rank%s %s differ%s from rank 0; every rank must run the "
                          "same arguments on the same files", what[k], strchr(ranks, ',') ? "s" : "", ranks, strchr(ranks, ',') ? "" : "s");
    }
    cp_free(all);
    return st; /* every rank saw the same hashes: the same verdict everywhere */
}

/* Rank 0 writes <output_dir>/.cpeft-dist-probe with a token no other directory can hold (host, pid,
 * time); every rank reads it back there. */
static cp_status shared_output_dir(cp_trainer *t) {
    if (!t->o.output_dir) return CP_OK;
    char token[256] = "";
    char *path = cp_path_join(t->o.output_dir, ".cpeft-dist-probe");
    if (!path) cp_dist_abort(1);
    cp_status st = CP_OK;
    if (cp_dist_rank() == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(token, sizeof token, "%s %d %lld.%09ld", cp_dist_host(), (int)getpid(), (long long)ts.tv_sec, ts.tv_nsec);
        st = cp_write_file_atomic(path, token, strlen(token));
    }
    if (cp_dist_agree(st) != CP_OK) { cp_free(path); return CP_ERR; }
    cp_dist_broadcast(token, sizeof token, "sharing the output directory's probe");
    if (cp_dist_rank() != 0) {
        char seen[256] = "";
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(seen, 1, sizeof seen - 1, f) : 0;
        if (f) fclose(f);
        seen[n] = '\0';
        if (strcmp(seen, token))
            st = cp_error("--output-dir %s is not the directory rank 0 (%s) writes: this rank does not see the file %s rank 0 "
                          "just wrote there, so it could not resume from the checkpoints; put --output-dir on a file system "
                          "every host shares", t->o.output_dir, strtok(token, " "), path);
    }
    st = cp_dist_agree(st);
    if (cp_dist_barrier("removing the output directory's probe") == CP_OK && cp_dist_rank() == 0) unlink(path);
    cp_free(path);
    return st;
}

cp_status cp_trainer_dist_check(cp_trainer *t) {
    if (cp_dist_size() == 1) return CP_OK;
    if (same_configuration(t) != CP_OK) return cp_dist_agree(CP_ERR);
    return shared_output_dir(t);
}
