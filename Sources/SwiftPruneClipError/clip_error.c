// The AVX2 kernel declared in include/swiftprune_clip_error.h, compiled out of
// line by SwiftPM's clang (one call per group and batch of candidates), so its
// register allocation does not depend on the Swift caller it would be inlined into.
#include "swiftprune_clip_error.h"

#if defined(__x86_64__)
#include <immintrin.h>

/// Evaluates `K` (1 or 2, a constant after inlining) candidates; see
/// swiftprune_clip_errors_f32.
static inline __attribute__((always_inline, target("avx2,fma"))) void swiftprune_clip_errors_k(
    const float *x, long count, const float *scales, const float *lower, const float *upper, const int K,
    double *sums) {
#pragma clang fp contract(off)
    __m256 s[2], y[2], lo[2], hi[2];
    __m256d a[2], b[2];
    for (int k = 0; k < K; k++) {
        s[k] = _mm256_set1_ps(scales[k]);
        y[k] = _mm256_set1_ps(1.0f / scales[k]);  // RN(1/s): Markstein's condition below
        lo[k] = _mm256_set1_ps(lower[k]);
        hi[k] = _mm256_set1_ps(upper[k]);
        a[k] = _mm256_setzero_pd();
        b[k] = _mm256_setzero_pd();
    }
    for (long i = 0; i + 8 <= count; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        for (int k = 0; k < K; k++) {
            // The correctly rounded quotient v / s without a division (vdivps: one per 5 cycles):
            // q0 = RN(v·y) is within 1 ulp of v/s, the remainder v − q0·s is exact in one FMA, and
            // RN(q0 + rem·y) = RN(v/s) (Markstein's theorem, y = RN(1/s); no underflow or
            // overflow for the scales the caller admits).
            const __m256 q0 = _mm256_mul_ps(v, y[k]);
            const __m256 rem = _mm256_fnmadd_ps(q0, s[k], v);
            __m256 t = _mm256_fmadd_ps(rem, y[k], q0);
            // Never NaN (finite values, finite nonzero scale): min/max equal the quantizer's clamp.
            t = _mm256_min_ps(_mm256_max_ps(t, lo[k]), hi[k]);
            // Round half to even, as the quantizer's roundedToInt32.
            const __m256 r = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            // The Float reconstruction q·s, then the difference in Float (kept unfused).
            const __m256 e = _mm256_sub_ps(v, _mm256_mul_ps(r, s[k]));
            const __m256d e0 = _mm256_cvtps_pd(_mm256_castps256_ps128(e));
            const __m256d e1 = _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1));
            // A float's square is exact in double, so the FMA is the plain sum of squares.
            a[k] = _mm256_fmadd_pd(e0, e0, a[k]);
            b[k] = _mm256_fmadd_pd(e1, e1, b[k]);
        }
    }
    for (int k = 0; k < K; k++) {
        _mm256_storeu_pd(sums + 8 * k, a[k]);
        _mm256_storeu_pd(sums + 8 * k + 4, b[k]);
    }
}

__attribute__((target("avx2,fma"))) void swiftprune_clip_errors_f32(
    const float *x, long count, const float *scales, const int32_t *zeroPoints, int32_t qmin, int32_t qmax,
    int candidates, double *errors) {
    // Two candidates per pass: four float64 chains hide the FMA latency, and their
    // constants and accumulators fit the 16 ymm registers (with 3 or 4 the compiler
    // spilled accumulators to the stack inside the loop: 2.7 -> 3.4 ns per 8 values
    // and candidate).
    float lower[2], upper[2];
    double sums[16];
    for (int k = 0; k < candidates; k += 2) {
        const int n = candidates - k >= 2 ? 2 : 1;
        for (int j = 0; j < n; j++) {
            lower[j] = (float)(qmin - zeroPoints[k + j]);
            upper[j] = (float)(qmax - zeroPoints[k + j]);
        }
        if (n == 2) {
            swiftprune_clip_errors_k(x, count, scales + k, lower, upper, 2, sums);
        } else {
            swiftprune_clip_errors_k(x, count, scales + k, lower, upper, 1, sums);
        }
        // Lanes 0-3 plus lanes 4-7, then the four sums in order: what Swift's
        // `(low + high).sum()` computes (SIMD sum() adds the lanes one by one).
        for (int j = 0; j < n; j++) {
            const double *a = sums + 8 * j, *b = a + 4;
            errors[k + j] = (((a[0] + b[0]) + (a[1] + b[1])) + (a[2] + b[2])) + (a[3] + b[3]);
        }
    }
}

/// Evaluates 4·V (V = 1 or 2, a constant after inlining) candidates, one per
/// float64 lane; see swiftprune_clip_errors_f64_quotient.
static inline __attribute__((always_inline, target("avx2,fma"))) void swiftprune_lane_errors_k(
    const float *x, long count, const float *scales, const float *lower, const float *upper, const int V,
    double *errors) {
#pragma clang fp contract(off)
    __m256d s[2], y[2], lo[2], hi[2], total[2];
    __m128 sf[2];
    for (int v = 0; v < V; v++) {
        sf[v] = _mm_loadu_ps(scales + 4 * v);
        s[v] = _mm256_cvtps_pd(sf[v]);
        y[v] = _mm256_div_pd(_mm256_set1_pd(1.0), s[v]);  // RN(1/s) in float64
        lo[v] = _mm256_cvtps_pd(_mm_loadu_ps(lower + 4 * v));
        hi[v] = _mm256_cvtps_pd(_mm_loadu_ps(upper + 4 * v));
        total[v] = _mm256_setzero_pd();
    }
    for (long c = 0; c < count; c++) {
        const __m256d value = _mm256_set1_pd((double)x[c]);
        for (int v = 0; v < V; v++) {
            // RN(value / s) in float64 by Markstein's correction (exact for every float value and
            // nonzero float scale: float64 has the range for q0·s without underflow).
            const __m256d q0 = _mm256_mul_pd(value, y[v]);
            const __m256d rem = _mm256_fnmadd_pd(q0, s[v], value);
            __m256d t = _mm256_fmadd_pd(rem, y[v], q0);
            t = _mm256_min_pd(_mm256_max_pd(t, lo[v]), hi[v]);
            t = _mm256_round_pd(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            // The float reconstruction q·s (q exact in float), the difference exact in float64,
            // its square rounded, then added: the scalar loop's operations, lane by lane.
            const __m128 back = _mm_mul_ps(_mm256_cvtpd_ps(t), sf[v]);
            const __m256d d = _mm256_sub_pd(value, _mm256_cvtps_pd(back));
            total[v] = _mm256_add_pd(total[v], _mm256_mul_pd(d, d));
        }
    }
    for (int v = 0; v < V; v++) _mm256_storeu_pd(errors + 4 * v, total[v]);
}

__attribute__((target("avx2,fma"))) void swiftprune_clip_errors_f64_quotient(
    const float *x, long count, const float *scales, const float *lower, const float *upper, int candidates,
    double *errors) {
    // Eight candidates per pass (two vectors: two independent addition chains per value); the
    // last pass pads its lanes with copies of the last candidate and discards them.
    float ps[8], pl[8], pu[8];
    double pe[8];
    for (int k = 0; k < candidates; k += 8) {
        const int n = candidates - k < 8 ? candidates - k : 8;
        for (int j = 0; j < 8; j++) {
            const int from = k + (j < n ? j : n - 1);
            ps[j] = scales[from]; pl[j] = lower[from]; pu[j] = upper[from];
        }
        if (n > 4) {
            swiftprune_lane_errors_k(x, count, ps, pl, pu, 2, pe);
        } else {
            swiftprune_lane_errors_k(x, count, ps, pl, pu, 1, pe);
        }
        for (int j = 0; j < n; j++) errors[k + j] = pe[j];
    }
}
#endif
