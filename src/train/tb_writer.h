/*
 * tb_writer.h — TensorBoard event files, written as TensorFlow's EventFileWriter (and torch's
 * SummaryWriter) writes them, without TensorFlow or protobuf:
 *
 *   file    <logging_dir>/events.out.tfevents.<unix time>.<host>.<pid>.0
 *   record  TFRecord framing: uint64 length (little-endian), uint32 masked CRC-32C of those 8 bytes,
 *           the payload, uint32 masked CRC-32C of the payload; mask(c) = ((c >> 15) | (c << 17)) +
 *           0xa282ead8
 *   payload an Event protobuf (tensorflow/core/util/event.proto): wall_time (1, double), step (2,
 *           int64), and either file_version (3, "brain.Event:2": the first record of every file) or
 *           summary (5): a Summary with one Value {tag (1), simple_value (2, float)} — a scalar, as
 *           SummaryWriter.add_scalar writes it
 *
 * Each scalar is flushed to the file as it is written, so a TensorBoard watching the directory sees a
 * run live. Not here: which scalars a run logs (trainer.c: the Trainer's TensorBoardCallback names,
 * train/loss, eval/loss, ...).
 */
#ifndef CP_TRAIN_TB_WRITER_H
#define CP_TRAIN_TB_WRITER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/error.h"

typedef struct {
    FILE *f;
    char *path;   /* the event file */
} cp_tb_writer;

/* CRC-32C (Castagnoli, reflected polynomial 0x82f63b78), and TFRecord's mask of it. */
uint32_t cp_crc32c(const void *data, size_t n);
uint32_t cp_tfrecord_mask(uint32_t crc);

/* Creates `dir` if needed and a new event file there named for wall_time, host and pid, holding the
 * file_version event. */
cp_status cp_tb_open(cp_tb_writer *w, const char *dir, double wall_time, const char *host, int pid);
/* The same at an exact path (tests). */
cp_status cp_tb_open_path(cp_tb_writer *w, const char *path, double wall_time);
/* One scalar event (value as float, as add_scalar stores it), written and flushed. */
cp_status cp_tb_add_scalar(cp_tb_writer *w, const char *tag, double value, int64_t step, double wall_time);
void cp_tb_close(cp_tb_writer *w);

/* The Event protobuf of a scalar (file_version NULL) or of the version record (tag NULL): its bytes
 * into buf (cap bytes), the length returned (0 when it does not fit). */
size_t cp_tb_encode_event(uint8_t *buf, size_t cap, double wall_time, int64_t step, const char *file_version, const char *tag,
                          float value);

#endif
