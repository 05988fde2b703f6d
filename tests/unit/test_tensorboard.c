/*
 * test_tensorboard.c — TensorBoard event files (src/train/tb_writer.c):
 *   - CRC-32C against its published check value, and the TFRecord mask
 *   - a file written from fixed scalars is byte-identical to tests/fixtures/tensorboard/
 *     events.out.tfevents.fixture, and what the tensorboard package's EventAccumulator read from that
 *     file (tests/fixtures/tensorboard/scalars.json, written by
 *     tests/reference/read_tensorboard_fixture.py) is the scalars written: tags, steps, float32 values
 *   - an independent reader here checks every record's framing and both CRCs and decodes the Event
 *     protobuf; a `cpeft train --report-to tensorboard` run's file holds, under the Trainer's names,
 *     exactly the values of its metrics.jsonl (as float32)
 * CPEFT_WRITE_TB_FIXTURE=PATH writes the fixture file to PATH and exits (to regenerate it).
 */
#include "test.h"
#include "../run_cmd.h"
#include "train/tb_writer.h"
#include "core/alloc.h"
#include "io/fsutil.h"
#include "io/json.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *bin(void) {
    const char *b = getenv("CPEFT_BIN");
    return b ? b : "build/cpeft";
}

/* ---- an independent reader ------------------------------------------------------------------------ */

static uint32_t ref_crc32c(const uint8_t *p, size_t n) { /* bitwise, no table */
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    }
    return ~c;
}
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint32_t unmask(uint32_t m) { uint32_t r = m - 0xa282ead8u; return (r >> 17) | (r << 15); }

typedef struct {
    double wall_time;
    int64_t step;
    char version[32];
    char tag[128];
    float value;
    int has_value;
} event;

static uint64_t varint(const uint8_t *p, size_t n, size_t *i, int *bad) {
    uint64_t v = 0;
    for (int s = 0; s < 64; s += 7) {
        if (*i >= n) { *bad = 1; return 0; }
        uint8_t b = p[(*i)++];
        v |= (uint64_t)(b & 0x7f) << s;
        if (!(b & 0x80)) return v;
    }
    *bad = 1;
    return 0;
}

/* Decodes the fields of a message this file family uses: Event {1 wall_time, 2 step, 3 file_version,
 * 5 summary {1 value {1 tag, 2 simple_value}}}. */
static int decode(const uint8_t *p, size_t n, event *e, int level) {
    size_t i = 0;
    int bad = 0;
    while (i < n && !bad) {
        uint64_t key = varint(p, n, &i, &bad);
        int field = (int)(key >> 3), wt = (int)(key & 7);
        if (wt == 0) {
            uint64_t v = varint(p, n, &i, &bad);
            if (level == 0 && field == 2) e->step = (int64_t)v;
        } else if (wt == 1) {
            if (i + 8 > n) return 0;
            if (level == 0 && field == 1) memcpy(&e->wall_time, p + i, 8);
            i += 8;
        } else if (wt == 5) {
            if (i + 4 > n) return 0;
            if (level == 2 && field == 2) { memcpy(&e->value, p + i, 4); e->has_value = 1; }
            i += 4;
        } else if (wt == 2) {
            uint64_t len = varint(p, n, &i, &bad);
            if (bad || i + len > n) return 0;
            if (level == 0 && field == 3) snprintf(e->version, sizeof e->version, "%.*s", (int)len, (const char *)p + i);
            else if (level == 0 && field == 5 && !decode(p + i, len, e, 1)) return 0;
            else if (level == 1 && field == 1 && !decode(p + i, len, e, 2)) return 0;
            else if (level == 2 && field == 1) snprintf(e->tag, sizeof e->tag, "%.*s", (int)len, (const char *)p + i);
            i += len;
        } else {
            return 0;
        }
    }
    return !bad && i == n;
}

/* Reads every record of an event file, checking the framing and both CRCs; returns the count (-1 on a
 * defect, reported). */
static int read_events(const char *path, event *ev, int cap) {
    char *data = NULL;
    size_t len = 0;
    if (cp_read_file(path, &data, &len) != CP_OK) { CHECK(0, "%s: %s", path, cp_last_error()); return -1; }
    const uint8_t *p = (const uint8_t *)data;
    size_t at = 0;
    int n = 0;
    while (at < len) {
        if (at + 12 > len) { CHECK(0, "%s: a truncated record header at byte %zu", path, at); n = -1; break; }
        uint64_t size = 0;
        for (int k = 0; k < 8; k++) size |= (uint64_t)p[at + k] << (8 * k);
        if (unmask(le32(p + at + 8)) != ref_crc32c(p + at, 8)) { CHECK(0, "%s: record %d: bad length CRC", path, n); n = -1; break; }
        if (at + 12 + size + 4 > len) { CHECK(0, "%s: record %d: truncated", path, n); n = -1; break; }
        if (unmask(le32(p + at + 12 + size)) != ref_crc32c(p + at + 12, size)) { CHECK(0, "%s: record %d: bad data CRC", path, n); n = -1; break; }
        if (n < cap) {
            memset(&ev[n], 0, sizeof ev[n]);
            if (!decode(p + at + 12, size, &ev[n], 0)) { CHECK(0, "%s: record %d: not an Event", path, n); n = -1; break; }
        }
        n++;
        at += 12 + size + 4;
    }
    cp_free(data);
    return n;
}

/* ---- the fixture ------------------------------------------------------------------------------------ */

typedef struct { const char *tag; int64_t step; double value; } scalar;
static const scalar fixture_scalars[] = {
    {"train/loss", 2, 3.2571}, {"train/grad_norm", 2, 1.25}, {"train/learning_rate", 2, 8.333333333333333e-3}, {"train/epoch", 2, 0.25},
    {"eval/loss", 2, 3.0125}, {"eval/runtime", 2, 0.0123},
    {"train/loss", 4, 2.875}, {"train/grad_norm", 4, 0.875}, {"train/learning_rate", 4, 5e-3}, {"train/epoch", 4, 0.5},
    {"eval/loss", 4, 2.75}, {"eval/accuracy", 4, 0.625}, {"train/train_loss", 4, 3.06605},
};
#define N_FIXTURE (int)(sizeof fixture_scalars / sizeof *fixture_scalars)
static const double FIXTURE_T0 = 1700000000.25;

static cp_status write_fixture(const char *path) {
    cp_tb_writer w;
    if (cp_tb_open_path(&w, path, FIXTURE_T0) != CP_OK) return CP_ERR;
    cp_status st = CP_OK;
    for (int i = 0; i < N_FIXTURE && st == CP_OK; i++)
        st = cp_tb_add_scalar(&w, fixture_scalars[i].tag, fixture_scalars[i].value, fixture_scalars[i].step, FIXTURE_T0 + 0.5 * (i + 1));
    cp_tb_close(&w);
    return st;
}

TEST(crc32c_and_mask) {
    CHECK(cp_crc32c("123456789", 9) == 0xe3069283u, "CRC-32C check value: %08x", cp_crc32c("123456789", 9));
    CHECK(cp_crc32c("", 0) == 0, "CRC-32C of nothing");
    uint8_t buf[300];
    for (int i = 0; i < 300; i++) buf[i] = (uint8_t)(i * 7 + 3);
    CHECK(cp_crc32c(buf, 300) == ref_crc32c(buf, 300), "table and bitwise CRC-32C agree");
    CHECK(unmask(cp_tfrecord_mask(0x12345678u)) == 0x12345678u, "mask round trip");
}

TEST(fixture_bytes_and_tensorboard_reading) {
    char path[] = "/tmp/cpeft-tb-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "temp file");
    if (fd < 0) return;
    close(fd);
    CHECK_OK(write_fixture(path));
    char out[256], cmd[512];
    snprintf(cmd, sizeof cmd, "cmp %s tests/fixtures/tensorboard/events.out.tfevents.fixture 2>&1", path);
    CHECK(run_cmd(out, sizeof out, cmd) == 0, "the event file differs from the fixture: %s", out);
    event ev[32];
    int n = read_events(path, ev, 32);
    CHECK(n == N_FIXTURE + 1, "%d records, expected %d", n, N_FIXTURE + 1);
    if (n >= 1) CHECK(!strcmp(ev[0].version, "brain.Event:2") && ev[0].wall_time == FIXTURE_T0, "first record: file_version %s", ev[0].version);
    for (int i = 0; i < N_FIXTURE && i + 1 < n; i++) {
        const event *e = &ev[i + 1];
        CHECK(!strcmp(e->tag, fixture_scalars[i].tag) && e->step == fixture_scalars[i].step && e->has_value &&
                  e->value == (float)fixture_scalars[i].value && e->wall_time == FIXTURE_T0 + 0.5 * (i + 1),
              "record %d: %s step %lld value %g", i + 1, e->tag, (long long)e->step, (double)e->value);
    }
    unlink(path);
    /* what tensorboard's EventAccumulator read from the fixture */
    cJSON *root = NULL;
    CHECK_OK(cp_json_read_file("tests/fixtures/tensorboard/scalars.json", &root));
    const cJSON *sc = root ? cJSON_GetObjectItem(root, "scalars") : NULL;
    int seen = 0;
    double max_diff = 0;
    for (int i = 0; i < N_FIXTURE; i++) {
        const cJSON *list = cJSON_GetObjectItem(sc, fixture_scalars[i].tag), *it;
        int found = 0;
        cJSON_ArrayForEach(it, list) {
            const cJSON *st = cJSON_GetObjectItem(it, "step"), *v = cJSON_GetObjectItem(it, "value"), *wt = cJSON_GetObjectItem(it, "wall_time");
            if (!st || (int64_t)st->valuedouble != fixture_scalars[i].step) continue;
            found = 1;
            double d = fabs(v->valuedouble - (double)(float)fixture_scalars[i].value);
            max_diff = fmax(max_diff, d);
            CHECK(d == 0, "%s step %lld: tensorboard read %.9g, written %.9g", fixture_scalars[i].tag, (long long)fixture_scalars[i].step,
                  v->valuedouble, (double)(float)fixture_scalars[i].value);
            CHECK(wt && wt->valuedouble == FIXTURE_T0 + 0.5 * (i + 1), "%s: wall_time", fixture_scalars[i].tag);
        }
        CHECK(found, "tensorboard did not read %s at step %lld", fixture_scalars[i].tag, (long long)fixture_scalars[i].step);
        seen += found;
    }
    const cJSON *fv = root ? cJSON_GetObjectItem(root, "file_version") : NULL;
    CHECK(fv && cJSON_IsString(fv) && !strcmp(fv->valuestring, "brain.Event:2"), "tensorboard's file_version");
    printf("  tensorboard's EventAccumulator read %d of %d scalars back, max difference %g\n", seen, N_FIXTURE, max_diff);
    cJSON_Delete(root);
}

/* A training run's event file holds what its metrics.jsonl says, under the Trainer's names. */
TEST(train_run_reports_to_tensorboard) {
    static char out[65536];
    char dir[] = "/tmp/cpeft-tbrun-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "temp dir");
    CHECK(run_cmdf(out, sizeof out, "mkdir -p %s/tm && cp tests/fixtures/eval/gpt2_vocab/config.json tests/fixtures/eval/gpt2_vocab/model.safetensors "
                   "../shared/data/gpt2-tokenizer/tokenizer.json %s/tm/ && %s train --model %s/tm --data ../shared/data/alpaca-subset/alpaca_tiny.json "
                   "--max-steps 4 --per-device-train-batch-size 2 --learning-rate 1e-2 --logging-steps 2 --eval-steps 2 --save-steps 0 "
                   "--max-seq-length 48 --seed 3 --target-modules c_attn --progress lines --validation-split 0.1 --report-to tensorboard "
                   "--logging-dir %s/tb --output-dir %s/out", dir, dir, bin(), dir, dir, dir) == 0, "%s", out);
    CHECK(run_cmdf(out, sizeof out, "ls %s/tb/events.out.tfevents.* | head -1", dir) == 0 && strstr(out, "events.out.tfevents."), "%s", out);
    char *nl = strchr(out, '\n');
    if (nl) *nl = '\0';
    event ev[128];
    int n = read_events(out, ev, 128);
    CHECK(n > 1 && !strcmp(ev[0].version, "brain.Event:2"), "%d records", n);
    /* metrics.jsonl, line by line: each key's value at its step must be in the events */
    char path[256];
    snprintf(path, sizeof path, "%s/out/metrics.jsonl", dir);
    char *text = NULL;
    size_t len;
    CHECK_OK(cp_read_file(path, &text, &len));
    int compared = 0;
    for (char *line = text; line && *line;) {
        char *end = strchr(line, '\n');
        if (end) *end = '\0';
        cJSON *j = cJSON_Parse(line);
        const cJSON *st = j ? cJSON_GetObjectItem(j, "step") : NULL, *it;
        const cJSON *obj = st ? j : NULL;
        cJSON_ArrayForEach(it, obj) {
            const char *k = it->string, *tag = NULL;
            if (!strcmp(k, "loss")) tag = "train/loss";
            else if (!strcmp(k, "grad_norm")) tag = "train/grad_norm";
            else if (!strcmp(k, "learning_rate")) tag = "train/learning_rate";
            else if (!strcmp(k, "eval_loss")) tag = "eval/loss";
            if (!tag) continue;
            int found = 0;
            for (int i = 1; i < n && i < 128; i++)
                if (!strcmp(ev[i].tag, tag) && ev[i].step == (int64_t)st->valuedouble) {
                    found = 1;
                    /* metrics.jsonl prints 6 decimals (%.6e for the rate): compare at that precision */
                    double tol = !strcmp(k, "learning_rate") ? 1e-6 * fabs(it->valuedouble) : 6e-7 + 1e-7 * fabs(it->valuedouble);
                    CHECK(fabs((double)ev[i].value - it->valuedouble) <= tol, "%s at step %lld: event %.9g, metrics.jsonl %.9g", tag,
                          (long long)st->valuedouble, (double)ev[i].value, it->valuedouble);
                }
            CHECK(found, "%s at step %lld is not in the event file", tag, (long long)st->valuedouble);
            compared++;
        }
        cJSON_Delete(j);
        line = end ? end + 1 : NULL;
    }
    cp_free(text);
    printf("  %d records; %d metrics.jsonl values found in the event file\n", n, compared);
    CHECK(compared >= 7, "only %d values compared", compared);
    snprintf(path, sizeof path, "rm -rf %s", dir);
    run_cmd(out, sizeof out, path);
}

int main(void) {
    const char *w = getenv("CPEFT_WRITE_TB_FIXTURE");
    if (w) return write_fixture(w) == CP_OK ? 0 : 1;
    RUN(crc32c_and_mask);
    RUN(fixture_bytes_and_tensorboard_reading);
    RUN(train_run_reports_to_tensorboard);
    return test_summary();
}
