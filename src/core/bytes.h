/*
 * bytes.h — little-endian integers and floats read from (and written to) byte buffers of file
 * formats (GGUF, ggml blocks, safetensors), whatever their alignment.
 */
#ifndef CP_CORE_BYTES_H
#define CP_CORE_BYTES_H

#include <stdint.h>
#include <string.h>

static inline uint16_t cp_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t cp_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t cp_le64(const uint8_t *p) { return (uint64_t)cp_le32(p) | (uint64_t)cp_le32(p + 4) << 32; }
static inline float cp_le_f32(const uint8_t *p) {
    uint32_t b = cp_le32(p);
    float f;
    memcpy(&f, &b, 4);
    return f;
}
static inline double cp_le_f64(const uint8_t *p) {
    uint64_t b = cp_le64(p);
    double d;
    memcpy(&d, &b, 8);
    return d;
}
static inline void cp_put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

#endif
