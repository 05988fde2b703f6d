/*
 * dtype.h — element types as safetensors names them, and conversions between the float ones.
 *
 * cpeft computes in f32. Checkpoints may hold F32, F16 or BF16; those are widened on load (F32 is
 * used in place, memory-mapped). The enum lists every safetensors dtype so that the reader can
 * validate any file, in the format's own "alignment order" (the writer sorts by it).
 *
 * After them come ggml's block-quantized weight formats (Q8_0, Q4_0, Q4_1, Q4_K, Q6_K, Q5_0, Q5_1, Q5_K): never a
 * safetensors dtype (cp_dtype_from_name does not know them), only what a frozen matrix weight may
 * be held in (`--quantize`, GGUF). A row of such a weight is a whole number of blocks; the byte
 * layouts are ggml's (io/ggml_quant.h).
 */
#ifndef CP_CORE_DTYPE_H
#define CP_CORE_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    CP_BOOL, CP_F4, CP_F6_E2M3, CP_F6_E3M2, CP_U8, CP_I8, CP_F8_E5M2, CP_F8_E4M3, CP_F8_E8M0,
    CP_F8_E4M3FNUZ, CP_F8_E5M2FNUZ, CP_I16, CP_U16, CP_F16, CP_BF16, CP_I32, CP_U32, CP_F32, CP_C64,
    CP_F64, CP_I64, CP_U64,
    CP_DTYPE_COUNT, /* the safetensors dtypes end here */
    CP_Q8_0 = 32, CP_Q4_0, CP_Q4_1, CP_Q4_K, CP_Q6_K, CP_Q5_0, CP_Q5_1, CP_Q5_K,
    CP_DTYPE_QUANT_END
} cp_dtype;

/* "F32" -> CP_F32; returns -1 for an unknown name. */
int cp_dtype_from_name(const char *name);
const char *cp_dtype_name(cp_dtype dt);
/* Size of one element in bits (F4 is 4, F6_* are 6, BOOL is 8). */
int cp_dtype_bits(cp_dtype dt);
/* Bytes for `numel` elements, or -1 when that is not a whole number of bytes (of blocks, for a
 * quantized format). */
int64_t cp_dtype_nbytes(cp_dtype dt, int64_t numel);
/* Whether dt is a block-quantized weight format (Q8_0, Q4_0, Q4_1, Q4_K, Q6_K, Q5_0, Q5_1, Q5_K). */
int cp_dtype_is_quantized(cp_dtype dt);
/* Elements per block and bytes per block of a quantized format (32/34, 32/18, 32/20, 256/144, 256/210, 32/22, 32/24, 256/176);
 * 1 and the element size for the others. */
int cp_dtype_block_elems(cp_dtype dt);
int cp_dtype_block_bytes(cp_dtype dt);
/* The float types cpeft can load as weights. */
int cp_dtype_is_loadable_float(cp_dtype dt);

float cp_f16_to_f32(uint16_t h);
float cp_bf16_to_f32(uint16_t b);
uint16_t cp_f32_to_f16(float f);   /* round to nearest even, as torch .half() */
uint16_t cp_f32_to_bf16(float f);  /* round to nearest even, as torch .bfloat16() */

/* Widens n elements of a loadable float type into f32 (src may be unaligned). */
void cp_convert_to_f32(float *dst, const void *src, cp_dtype src_dtype, size_t n);
/* Narrows n f32 elements into a loadable float type. */
void cp_convert_from_f32(void *dst, cp_dtype dst_dtype, const float *src, size_t n);

#endif
