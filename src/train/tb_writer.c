/*
 * tb_writer.c — TensorBoard event files: the protobuf encoding of the two Event kinds cpeft writes,
 * TFRecord framing with masked CRC-32C, and the file; see tb_writer.h.
 *
 * Protobuf wire format used: a field's key is the varint (number << 3 | wire type); wire type 0 is a
 * varint, 1 eight little-endian bytes (double), 2 a varint length then the bytes (strings, nested
 * messages), 5 four little-endian bytes (float).
 */
#include "train/tb_writer.h"
#include "core/alloc.h"
#include "io/fsutil.h"

#include <errno.h>
#include <string.h>

uint32_t cp_crc32c(const void *data, size_t n) {
    static uint32_t table[256];
    static int ready;
    if (!ready) { /* idempotent: a race writes the same values */
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1)));
            table[i] = c;
        }
        ready = 1;
    }
    const uint8_t *p = data;
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

uint32_t cp_tfrecord_mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

/* ---- protobuf ------------------------------------------------------------------------------------ */

typedef struct { uint8_t *p; size_t n, cap; } pbuf;

static void put(pbuf *b, const void *src, size_t n) {
    if (b->n + n <= b->cap) memcpy(b->p + b->n, src, n);
    b->n += n; /* past cap: counted, not written (the caller sees the overflow) */
}
static void put_varint(pbuf *b, uint64_t v) {
    uint8_t t[10];
    size_t k = 0;
    do { t[k++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0)); v >>= 7; } while (v);
    put(b, t, k);
}
static void put_le(pbuf *b, uint64_t v, int bytes) {
    uint8_t t[8];
    for (int i = 0; i < bytes; i++) t[i] = (uint8_t)(v >> (8 * i));
    put(b, t, (size_t)bytes);
}
static void put_bytes(pbuf *b, int field, const void *s, size_t n) {
    put_varint(b, (uint64_t)field << 3 | 2);
    put_varint(b, n);
    put(b, s, n);
}

size_t cp_tb_encode_event(uint8_t *buf, size_t cap, double wall_time, int64_t step, const char *file_version, const char *tag,
                          float value) {
    pbuf b = {buf, 0, cap};
    uint64_t wt;
    memcpy(&wt, &wall_time, 8);
    put_varint(&b, 1 << 3 | 1); /* wall_time */
    put_le(&b, wt, 8);
    if (step) { put_varint(&b, 2 << 3 | 0); put_varint(&b, (uint64_t)step); } /* step (proto3: 0 is not written) */
    if (file_version) {
        put_bytes(&b, 3, file_version, strlen(file_version));
    } else {
        /* Summary { Value { tag, simple_value } }: the inner messages first, to know their lengths */
        uint8_t v[1100], s[1110];
        pbuf vb = {v, 0, sizeof v}, sb = {s, 0, sizeof s};
        put_bytes(&vb, 1, tag, strlen(tag));
        uint32_t f;
        memcpy(&f, &value, 4);
        put_varint(&vb, 2 << 3 | 5);
        put_le(&vb, f, 4);
        if (vb.n > vb.cap) return 0;
        put_bytes(&sb, 1, v, vb.n);
        if (sb.n > sb.cap) return 0;
        put_bytes(&b, 5, s, sb.n);
    }
    return b.n <= cap ? b.n : 0;
}

/* ---- the file ------------------------------------------------------------------------------------ */

static cp_status write_record(cp_tb_writer *w, const uint8_t *data, size_t n) {
    uint8_t head[12];
    for (int i = 0; i < 8; i++) head[i] = (uint8_t)((uint64_t)n >> (8 * i));
    uint32_t c = cp_tfrecord_mask(cp_crc32c(head, 8));
    for (int i = 0; i < 4; i++) head[8 + i] = (uint8_t)(c >> (8 * i));
    uint32_t d = cp_tfrecord_mask(cp_crc32c(data, n));
    uint8_t tail[4] = {(uint8_t)d, (uint8_t)(d >> 8), (uint8_t)(d >> 16), (uint8_t)(d >> 24)};
    if (fwrite(head, 1, 12, w->f) != 12 || fwrite(data, 1, n, w->f) != n || fwrite(tail, 1, 4, w->f) != 4 || fflush(w->f) != 0)
        return cp_error("%s: cannot write: %s", w->path, strerror(errno));
    return CP_OK;
}

cp_status cp_tb_open_path(cp_tb_writer *w, const char *path, double wall_time) {
    memset(w, 0, sizeof *w);
    if (!(w->path = cp_strdup(path))) return CP_ERR;
    if (!(w->f = fopen(path, "wb"))) {
        cp_status st = cp_error("%s: cannot create the TensorBoard event file: %s", path, strerror(errno));
        cp_tb_close(w);
        return st;
    }
    uint8_t buf[64];
    size_t n = cp_tb_encode_event(buf, sizeof buf, wall_time, 0, "brain.Event:2", NULL, 0);
    cp_status st = write_record(w, buf, n);
    if (st != CP_OK) cp_tb_close(w);
    return st;
}

cp_status cp_tb_open(cp_tb_writer *w, const char *dir, double wall_time, const char *host, int pid) {
    memset(w, 0, sizeof *w);
    if (cp_mkdirs(dir) != CP_OK) return CP_ERR;
    char name[512];
    snprintf(name, sizeof name, "events.out.tfevents.%lld.%s.%d.0", (long long)wall_time, host, pid);
    char *path = cp_path_join(dir, name);
    cp_status st = path ? cp_tb_open_path(w, path, wall_time) : CP_ERR;
    cp_free(path);
    return st;
}

cp_status cp_tb_add_scalar(cp_tb_writer *w, const char *tag, double value, int64_t step, double wall_time) {
    if (!w->f) return CP_OK;
    if (strlen(tag) > 1000) return cp_error("TensorBoard tag \"%.40s...\" is too long", tag);
    uint8_t buf[1200];
    size_t n = cp_tb_encode_event(buf, sizeof buf, wall_time, step, NULL, tag, (float)value);
    if (!n) return cp_error("TensorBoard event for \"%s\" does not fit", tag);
    return write_record(w, buf, n);
}

void cp_tb_close(cp_tb_writer *w) {
    if (w->f) fclose(w->f);
    cp_free(w->path);
    memset(w, 0, sizeof *w);
}
