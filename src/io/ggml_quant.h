/*
 * ggml_quant.h — ggml's tensor types (the element types of GGUF tensors): names, block geometry,
 * and dequantization to f32. The GGUF file reader is gguf.h, which includes this.
 */
#ifndef CP_IO_GGML_QUANT_H
#define CP_IO_GGML_QUANT_H

#include <stdint.h>

#include "core/dtype.h"
#include "core/error.h"

/* ggml tensor types, numbered as in ggml.h (gaps are retired types). */
typedef enum {
    CP_GGML_F32 = 0, CP_GGML_F16 = 1, CP_GGML_Q4_0 = 2, CP_GGML_Q4_1 = 3, CP_GGML_Q5_0 = 6,
    CP_GGML_Q5_1 = 7, CP_GGML_Q8_0 = 8, CP_GGML_Q8_1 = 9, CP_GGML_Q2_K = 10, CP_GGML_Q3_K = 11,
    CP_GGML_Q4_K = 12, CP_GGML_Q5_K = 13, CP_GGML_Q6_K = 14, CP_GGML_Q8_K = 15,
    CP_GGML_IQ2_XXS = 16, CP_GGML_IQ2_XS = 17, CP_GGML_IQ3_XXS = 18, CP_GGML_IQ1_S = 19,
    CP_GGML_IQ4_NL = 20, CP_GGML_IQ3_S = 21, CP_GGML_IQ2_S = 22, CP_GGML_IQ4_XS = 23,
    CP_GGML_I8 = 24, CP_GGML_I16 = 25, CP_GGML_I32 = 26, CP_GGML_I64 = 27, CP_GGML_F64 = 28,
    CP_GGML_IQ1_M = 29, CP_GGML_BF16 = 30, CP_GGML_TQ1_0 = 34, CP_GGML_TQ2_0 = 35,
    CP_GGML_MXFP4 = 39, CP_GGML_NVFP4 = 40, CP_GGML_Q1_0 = 41,
    CP_GGML_TYPE_COUNT
} cp_ggml_type;

/* "Q4_K"; "type 31" style text for numbers that are not ggml types (uses a static buffer). */
const char *cp_ggml_type_name(int t);
/* Block geometry of a known type (elements per block, bytes per block); 0 when unknown. */
int cp_ggml_block_size(int t);
int cp_ggml_type_size(int t);
/* Whether cp_ggml_dequantize_row handles the type: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
 * Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K. */
int cp_ggml_can_dequantize(int t);
/* Whether the type is a block-quantized one (its f32 values are exact but the original
 * checkpoint's were rounded to it). F32/F16/BF16 are not. */
int cp_ggml_is_quantized(int t);

/* Dequantizes `n` elements (a multiple of the type's block size) of type `t` from `src` into
 * `dst`, following ggml's reference dequantize_row_* functions operation for operation, so the
 * values are bit-identical to ggml's and to the Python `gguf` package's. Returns CP_ERR for a type
 * that cp_ggml_can_dequantize rejects. */
cp_status cp_ggml_dequantize_row(int t, const void *src, float *dst, int64_t n);

/* The ggml type of a cpeft weight dtype (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K, Q5_0, Q5_1, Q5_K), or -1. */
int cp_ggml_type_of(cp_dtype dt);

/* Quantizes `n` f32 values (a multiple of the block size) into blocks of type `t` at `dst` with
 * ggml's reference quantizers (quantize_row_q8_0_ref, _q4_0_ref, _q4_1_ref, _q4_K_ref: no
 * importance matrix), operation for operation; Q8_0, Q4_0 and Q4_1 equal the Python `gguf`
 * package's quantize() byte for byte (tests/unit/test_ggml_quantize.c). CP_ERR for other types. */
cp_status cp_ggml_quantize_row(int t, const float *src, void *dst, int64_t n);

#endif
