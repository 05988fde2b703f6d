/*
 * skinny.c — few-row matrix products for decoding steps; see skinny.h. Compiled once per
 * instruction set (CP_KERNEL names each copy: cp_skinny_nt_avx512, ...; see dispatch.h).
 *
 * Both kernels are plain C that GCC vectorises at the variant's width; what makes them fast is the
 * blocking. NT keeps eight independent dot products in flight (four weight rows against two input
 * rows), so the FMA latency chain of a single reduction does not bound it and each load feeds two
 * FMAs; NN accumulates four weight rows into a block of output columns per load and store of the
 * accumulator.
 */
#include "kernels/isa.h"
#include "kernels/skinny.h"

#include <string.h>

CP_DECLARE_KERNELS_OF(CP_ISA)

/* Below this many multiply-adds the work stays on one thread (a LoRA rank-8 side path). */
#define SKINNY_PARALLEL_MIN 65536

void CP_KERNEL(cp_skinny_nt)(float *out, const float *in, const float *W, int64_t N, int64_t C, int64_t OC, int accumulate) {
    // out[n, o] = Σ_c in[n, c] · W[o, c]: each W row is read once (four at a time), against the N rows of `in`
    const int64_t n4 = OC / 4;
#pragma omp parallel for schedule(static) if (N * C * OC > SKINNY_PARALLEL_MIN)
    for (int64_t q = 0; q < n4 + (OC % 4); q++) {
        if (q < n4) {
            const int64_t o = 4 * q;
            const float *w0 = W + o * C, *w1 = w0 + C, *w2 = w1 + C, *w3 = w2 + C;
            int64_t n = 0;
            for (; n + 2 <= N; n += 2) { /* two input rows: eight dot products share the loads */
                const float *x = in + n * C, *z = x + C;
                float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f, t0 = 0.0f, t1 = 0.0f, t2 = 0.0f, t3 = 0.0f;
#pragma omp simd reduction(+ : s0, s1, s2, s3, t0, t1, t2, t3)
                for (int64_t c = 0; c < C; c++) {
                    s0 += x[c] * w0[c];
                    s1 += x[c] * w1[c];
                    s2 += x[c] * w2[c];
                    s3 += x[c] * w3[c];
                    t0 += z[c] * w0[c];
                    t1 += z[c] * w1[c];
                    t2 += z[c] * w2[c];
                    t3 += z[c] * w3[c];
                }
                float *y = out + n * OC + o, *u = y + OC;
                if (accumulate) { y[0] += s0; y[1] += s1; y[2] += s2; y[3] += s3; u[0] += t0; u[1] += t1; u[2] += t2; u[3] += t3; }
                else { y[0] = s0; y[1] = s1; y[2] = s2; y[3] = s3; u[0] = t0; u[1] = t1; u[2] = t2; u[3] = t3; }
            }
            for (; n < N; n++) {
                const float *x = in + n * C;
                float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
                for (int64_t c = 0; c < C; c++) {
                    s0 += x[c] * w0[c];
                    s1 += x[c] * w1[c];
                    s2 += x[c] * w2[c];
                    s3 += x[c] * w3[c];
                }
                float *y = out + n * OC + o;
                if (accumulate) { y[0] += s0; y[1] += s1; y[2] += s2; y[3] += s3; }
                else { y[0] = s0; y[1] = s1; y[2] = s2; y[3] = s3; }
            }
        } else { /* the last OC % 4 rows */
            const int64_t o = 4 * n4 + (q - n4);
            const float *w = W + o * C;
            for (int64_t n = 0; n < N; n++) {
                const float *x = in + n * C;
                float s = 0.0f;
#pragma omp simd reduction(+ : s)
                for (int64_t c = 0; c < C; c++) s += x[c] * w[c];
                out[n * OC + o] = accumulate ? out[n * OC + o] + s : s;
            }
        }
    }
}

#define NN_COLS 256 /* output columns per task: N×256 floats of accumulators stay in L1 while W streams */

void CP_KERNEL(cp_skinny_nn)(float *out, const float *in, const float *W, int64_t N, int64_t C, int64_t OC, int accumulate) {
    for (int64_t n0 = CP_SKINNY_MAX_ROWS; n0 < N; n0 += CP_SKINNY_MAX_ROWS) /* more rows: in groups */
        CP_KERNEL(cp_skinny_nn)(out + n0 * OC, in + n0 * C, W, N - n0 < CP_SKINNY_MAX_ROWS ? N - n0 : CP_SKINNY_MAX_ROWS,
                                C, OC, accumulate);
    if (N > CP_SKINNY_MAX_ROWS) N = CP_SKINNY_MAX_ROWS;
    // out[n, :] += Σ_c in[n, c] · W[c, :]: W is read once, four rows at a time, in column blocks
    const int64_t n_blocks = (OC + NN_COLS - 1) / NN_COLS;
#pragma omp parallel for schedule(static) if (N * C * OC > SKINNY_PARALLEL_MIN)
    for (int64_t blk = 0; blk < n_blocks; blk++) {
        const int64_t o0 = blk * NN_COLS, no = OC - o0 < NN_COLS ? OC - o0 : NN_COLS;
        float acc[CP_SKINNY_MAX_ROWS][NN_COLS];
        for (int64_t n = 0; n < N; n++) {
            if (accumulate) memcpy(acc[n], out + n * OC + o0, (size_t)no * sizeof(float));
            else memset(acc[n], 0, (size_t)no * sizeof(float));
        }
        int64_t c = 0;
        for (; c + 4 <= C; c += 4) {
            const float *w0 = W + c * OC + o0, *w1 = w0 + OC, *w2 = w1 + OC, *w3 = w2 + OC;
            for (int64_t n = 0; n < N; n++) {
                const float *x = in + n * C + c;
                const float x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
                float *a = acc[n];
#pragma omp simd
                for (int64_t j = 0; j < no; j++) a[j] += x0 * w0[j] + x1 * w1[j] + x2 * w2[j] + x3 * w3[j];
            }
        }
        for (; c < C; c++) {
            const float *w = W + c * OC + o0;
            for (int64_t n = 0; n < N; n++) {
                const float x = in[n * C + c];
                float *a = acc[n];
#pragma omp simd
                for (int64_t j = 0; j < no; j++) a[j] += x * w[j];
            }
        }
        for (int64_t n = 0; n < N; n++) memcpy(out + n * OC + o0, acc[n], (size_t)no * sizeof(float));
    }
}
