/*
 * vfloat.h — one vector of floats for the few-row kernels compiled per instruction set
 * (gemm_skinny16.c, gemm_quant.c): VL lanes of `vf` with load, store, broadcast, fused multiply-add
 * and a horizontal sum. AVX-512: 16 lanes, AVX2: 8, otherwise a scalar float (VL 1). Include it in a
 * file built once per ISA variant (kernels/isa.h); it picks the variant the file is compiled for.
 */
#ifndef CP_KERNELS_VFLOAT_H
#define CP_KERNELS_VFLOAT_H

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#define CP_VF_INLINE static inline __attribute__((always_inline))

#if defined(__AVX512F__)
#define VL 16
typedef __m512 vf;
CP_VF_INLINE vf vzero(void) { return _mm512_setzero_ps(); }
CP_VF_INLINE vf vload(const float *p) { return _mm512_loadu_ps(p); }
CP_VF_INLINE void vstore(float *p, vf v) { _mm512_storeu_ps(p, v); }
CP_VF_INLINE vf vbcast(float x) { return _mm512_set1_ps(x); }
CP_VF_INLINE vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
CP_VF_INLINE float vsum(vf v) { return _mm512_reduce_add_ps(v); }
#elif defined(__AVX2__)
#define VL 8
typedef __m256 vf;
CP_VF_INLINE vf vzero(void) { return _mm256_setzero_ps(); }
CP_VF_INLINE vf vload(const float *p) { return _mm256_loadu_ps(p); }
CP_VF_INLINE void vstore(float *p, vf v) { _mm256_storeu_ps(p, v); }
CP_VF_INLINE vf vbcast(float x) { return _mm256_set1_ps(x); }
CP_VF_INLINE vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
CP_VF_INLINE float vsum(vf v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#else
#define VL 1
typedef float vf;
CP_VF_INLINE vf vzero(void) { return 0.0f; }
CP_VF_INLINE vf vload(const float *p) { return *p; }
CP_VF_INLINE void vstore(float *p, vf v) { *p = v; }
CP_VF_INLINE vf vbcast(float x) { return x; }
CP_VF_INLINE vf vfma(vf a, vf b, vf c) { return a * b + c; }
CP_VF_INLINE float vsum(vf v) { return v; }
#endif

#endif
