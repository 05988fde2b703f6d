/*
 * compress.c — magic numbers, and gzip / zstd decompression into one buffer; see compress.h.
 *
 * Both decoders stream into a buffer that doubles as it fills, so the decompressed size need not be
 * known (gzip records it only modulo 4 GiB, zstd frames may omit it). A gzip file may hold several
 * members one after another (cat a.gz b.gz) and a zstd file several frames; each is read as gzip -d
 * and zstd -d read them. A stream that ends early is "truncated", with the compressed size read.
 */
#include "io/compress.h"
#include "core/alloc.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>
#include <zstd.h>

static const char hint_archive[] = "extract the file from the archive first";
static const char hint_table[] = "cpeft has no reader for it (Debian 12 packages no C or C++ Parquet / Arrow library; "
                                 "Apache Arrow's libparquet comes only from Apache's own repository); convert it to JSONL "
                                 "first, e.g. with datasets: "
                                 "load_dataset(\"parquet\", data_files=FILE)[\"train\"].to_json(\"data.jsonl\")";

static const cp_file_kind k_gzip = {"gzip", 1, ""}, k_zstd = {"zstd", 1, ""},
                          k_xz = {"xz-compressed data", 0, "decompress it first (xz -d FILE) or compress it with gzip or zstd instead"},
                          k_bzip2 = {"bzip2-compressed data", 0, "decompress it first (bunzip2 FILE) or compress it with gzip or zstd instead"},
                          k_lz4 = {"lz4-compressed data", 0, "decompress it first (lz4 -d FILE) or compress it with gzip or zstd instead"},
                          k_compress = {"compress (.Z) data", 0, "decompress it first (uncompress FILE)"},
                          k_zip = {"a zip archive", 0, hint_archive}, k_7z = {"a 7-Zip archive", 0, hint_archive},
                          k_rar = {"a RAR archive", 0, hint_archive}, k_tar = {"a tar archive", 0, hint_archive},
                          k_parquet = {"a Parquet file", 0, hint_table}, k_arrow = {"an Arrow file", 0, hint_table},
                          k_npy = {"a NumPy array", 0, ""}, k_pickle = {"a Python pickle", 0, ""},
                          k_hdf5 = {"an HDF5 file", 0, ""}, k_sqlite = {"an SQLite database", 0, ""},
                          k_pdf = {"a PDF document", 0, "extract its text first"};

const cp_file_kind *cp_sniff_format(const void *data, size_t n) {
    const unsigned char *b = data;
#define AT(off, lit) (n >= (off) + sizeof(lit) - 1 && !memcmp(b + (off), lit, sizeof(lit) - 1))
    if (AT(0, "\x1f\x8b")) return &k_gzip;
    if (AT(0, "\x28\xb5\x2f\xfd") || (n >= 4 && (b[0] & 0xf0) == 0x50 && AT(1, "\x2a\x4d\x18"))) return &k_zstd; /* frame, skippable frame */
    if (AT(0, "\xfd" "7zXZ\0")) return &k_xz;
    if (AT(0, "BZh") && n >= 10 && b[3] >= '1' && b[3] <= '9' && (AT(4, "\x31\x41\x59\x26\x53\x59") || AT(4, "\x17\x72\x45\x38\x50\x90")))
        return &k_bzip2;
    if (AT(0, "\x04\x22\x4d\x18") || AT(0, "\x02\x21\x4c\x18")) return &k_lz4;
    if (AT(0, "\x1f\x9d")) return &k_compress;
    if (AT(0, "PK\x03\x04") || AT(0, "PK\x05\x06") || AT(0, "PK\x07\x08")) return &k_zip;
    if (AT(0, "7z\xbc\xaf\x27\x1c")) return &k_7z;
    if (AT(0, "Rar!\x1a\x07")) return &k_rar;
    if (AT(257, "ustar")) return &k_tar;
    if (AT(0, "PAR1") && n >= 8 && !memcmp(b + n - 4, "PAR1", 4)) return &k_parquet;
    if (AT(0, "ARROW1") || AT(0, "FEA1")) return &k_arrow;
    if (AT(0, "\x93NUMPY")) return &k_npy;
    if (n >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5) return &k_pickle;
    if (AT(0, "\x89HDF\r\n\x1a\n")) return &k_hdf5;
    if (AT(0, "SQLite format 3")) return &k_sqlite;
    if (AT(0, "%PDF-")) return &k_pdf;
#undef AT
    return NULL;
}

const cp_file_kind *cp_format_of_name(const char *path) {
    static const struct { const char *ext; const cp_file_kind *kind; } table[] = {
        {".gz", &k_gzip}, {".gzip", &k_gzip}, {".zst", &k_zstd}, {".zstd", &k_zstd}, {".xz", &k_xz},
        {".bz2", &k_bzip2}, {".lz4", &k_lz4}, {".Z", &k_compress}, {".zip", &k_zip}, {".7z", &k_7z},
        {".rar", &k_rar}, {".tar", &k_tar}, {".parquet", &k_parquet}, {".arrow", &k_arrow}};
    size_t n = strlen(path);
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        size_t m = strlen(table[i].ext);
        if (n > m && path[n - m - 1] != '/' && !strcmp(path + n - m, table[i].ext)) return table[i].kind;
    }
    return NULL;
}

/* ---- the output buffer ------------------------------------------------------------------------- */

typedef struct { char *p; size_t len, cap, limit; } outbuf;

/* Room for at least one more byte (and the final NUL); errors name what and the limit. */
static cp_status grow(outbuf *o, const char *what, const char *format) {
    if (o->len + 1 < o->cap) return CP_OK;
    if (o->limit && o->len >= o->limit)
        return cp_error("%s: the %s data decompresses to more than %zu bytes, the limit here", what, format, o->limit);
    size_t cap = o->cap ? 2 * o->cap : 1 << 16;
    if (o->limit && cap > o->limit + 1) cap = o->limit + 1;
    char *p = cp_realloc(o->p, cap, what);
    if (!p) return CP_ERR;
    o->p = p;
    o->cap = cap;
    return CP_OK;
}

/* ---- gzip -------------------------------------------------------------------------------------- */

static cp_status gunzip(const char *what, const unsigned char *in, size_t n, outbuf *o) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) return cp_error("%s: cannot start the gzip decoder", what);
    size_t pos = 0; /* bytes of `in` consumed */
    cp_status st = CP_OK;
    int ended = 0;
    while (st == CP_OK) {
        if ((st = grow(o, what, "gzip")) != CP_OK) break;
        size_t chunk = n - pos < (size_t)1 << 30 ? n - pos : (size_t)1 << 30;
        size_t room = o->cap - 1 - o->len < (size_t)1 << 30 ? o->cap - 1 - o->len : (size_t)1 << 30;
        z.next_in = (unsigned char *)in + pos;
        z.avail_in = (uInt)chunk;
        z.next_out = (unsigned char *)o->p + o->len;
        z.avail_out = (uInt)room;
        int r = inflate(&z, Z_NO_FLUSH);
        pos += chunk - z.avail_in;
        o->len += room - z.avail_out;
        if (r == Z_STREAM_END) {
            ended = 1;
            if (pos == n) break;
            if (n - pos >= 2 && in[pos] == 0x1f && in[pos + 1] == 0x8b) { /* another member */
                inflateReset(&z);
                ended = 0;
                continue;
            }
            st = cp_error("%s: %zu bytes after the end of the gzip data at offset %zu are not gzip data", what, n - pos, pos);
        } else if (r == Z_DATA_ERROR || r == Z_NEED_DICT) {
            st = cp_error("%s: the gzip data is corrupt at compressed offset %zu (%s)", what, pos, z.msg ? z.msg : "invalid data");
        } else if (r == Z_MEM_ERROR) {
            st = cp_error("%s: out of memory decompressing gzip data", what);
        } else if (r == Z_BUF_ERROR || r == Z_OK) {
            if (pos == n && z.avail_out > 0) break; /* all input read, the decoder wants more */
        } else {
            st = cp_error("%s: gzip decoder error %d at compressed offset %zu", what, r, pos);
        }
    }
    inflateEnd(&z);
    if (st == CP_OK && !ended) st = cp_error("%s: the gzip data is truncated (it ends after %zu bytes, inside the stream)", what, n);
    return st;
}

/* ---- zstd -------------------------------------------------------------------------------------- */

static cp_status unzstd(const char *what, const unsigned char *in, size_t n, outbuf *o) {
    ZSTD_DCtx *d = ZSTD_createDCtx();
    if (!d) return cp_error("%s: cannot start the zstd decoder", what);
    /* windows up to 2 GiB (zstd --long=31); with a limit, up to the limit (at least 1 MiB) */
    int wlog = 31;
    if (o->limit) {
        wlog = 20;
        while (wlog < 31 && ((size_t)1 << wlog) < o->limit) wlog++;
    }
    ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, wlog);
    ZSTD_inBuffer ib = {in, n, 0};
    size_t last = 1; /* 0 once a frame has just ended */
    cp_status st = CP_OK;
    while (st == CP_OK) {
        if ((st = grow(o, what, "zstd")) != CP_OK) break;
        ZSTD_outBuffer ob = {o->p + o->len, o->cap - 1 - o->len, 0};
        size_t before = ib.pos;
        last = ZSTD_decompressStream(d, &ob, &ib);
        o->len += ob.pos;
        if (ZSTD_isError(last)) {
            st = cp_error("%s: the zstd data is corrupt near compressed offset %zu (%s)", what, before, ZSTD_getErrorName(last));
            break;
        }
        if (ib.pos == n && ob.pos < ob.size) break; /* all input read and the output not full: done */
    }
    ZSTD_freeDCtx(d);
    if (st == CP_OK && last != 0) st = cp_error("%s: the zstd data is truncated (it ends after %zu bytes, inside a frame)", what, n);
    return st;
}

cp_status cp_decompress(const char *what, const cp_file_kind *kind, const void *in, size_t n, size_t limit, char **out,
                        size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    outbuf o = {.limit = limit};
    cp_status st = kind == &k_gzip ? gunzip(what, in, n, &o)
                 : kind == &k_zstd ? unzstd(what, in, n, &o)
                                   : cp_error("%s: cpeft cannot decompress %s", what, kind ? kind->name : "this format");
    if (st != CP_OK) { cp_free(o.p); return CP_ERR; }
    o.p[o.len] = '\0'; /* each decoder leaves one byte free past len */
    *out = o.p;
    *out_len = o.len;
    return CP_OK;
}
