// AVX2 lane shuffles for the Swift kernels. Swift's SIMD types have no
// shuffle operations and `_mm256_unpacklo_ps` & co. are not imported as
// callable functions, so these static inline wrappers are compiled by the
// importer's clang (SwiftPrune is built for x86-64-v3: AVX2 is the baseline).
#ifndef SWIFTPRUNE_SHUFFLE_H
#define SWIFTPRUNE_SHUFFLE_H

#if defined(__x86_64__) && defined(__AVX2__)
#include <immintrin.h>

/// Writes the transpose of the 8 × 8 float block at `src` (rows `srcStride`
/// floats apart) to `dst` (rows `dstStride` floats apart): eight 32-byte
/// loads, 24 in-register shuffles, eight 32-byte stores, where an element-wise
/// copy makes 64 scattered stores.
static inline __attribute__((always_inline)) void swiftprune_transpose_8x8_f32(
    const float *src, long srcStride, float *dst, long dstStride) {
    __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + srcStride);
    __m256 r2 = _mm256_loadu_ps(src + 2 * srcStride), r3 = _mm256_loadu_ps(src + 3 * srcStride);
    __m256 r4 = _mm256_loadu_ps(src + 4 * srcStride), r5 = _mm256_loadu_ps(src + 5 * srcStride);
    __m256 r6 = _mm256_loadu_ps(src + 6 * srcStride), r7 = _mm256_loadu_ps(src + 7 * srcStride);
    // Pairs of rows interleaved, then pairs of pairs, then the 128-bit halves exchanged.
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + dstStride, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * dstStride, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * dstStride, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * dstStride, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * dstStride, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * dstStride, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * dstStride, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#define SWIFTPRUNE_HAS_TRANSPOSE_8X8 1

/// Packs a 6 × 8 float block (6 rows `srcStride` floats apart, 8 values each)
/// depth-major for the 6 × 16 GEMM micro-kernel: `dst[6 * p + r] = src[r *
/// srcStride + p]`, 48 contiguous floats. The 8 × 8 transpose above with two
/// zero rows; each column is stored as 8 floats overlapping the next one's
/// first two, the last as 4 + 2 so nothing is written past `dst + 48`.
static inline __attribute__((always_inline)) void swiftprune_pack_6x8_f32(
    const float *src, long srcStride, float *dst) {
    __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + srcStride);
    __m256 r2 = _mm256_loadu_ps(src + 2 * srcStride), r3 = _mm256_loadu_ps(src + 3 * srcStride);
    __m256 r4 = _mm256_loadu_ps(src + 4 * srcStride), r5 = _mm256_loadu_ps(src + 5 * srcStride);
    __m256 zero = _mm256_setzero_ps();
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, zero, 0x44), u5 = _mm256_shuffle_ps(t4, zero, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, zero, 0x44), u7 = _mm256_shuffle_ps(t5, zero, 0xEE);
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + 6, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 12, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 18, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 24, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 30, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 36, _mm256_permute2f128_ps(u2, u6, 0x31));
    __m256 last = _mm256_permute2f128_ps(u3, u7, 0x31);
    _mm_storeu_ps(dst + 42, _mm256_castps256_ps128(last));
    _mm_storel_pi((__m64 *)(dst + 46), _mm256_extractf128_ps(last, 1));
}
#define SWIFTPRUNE_HAS_PACK_6X8 1
#else
#define SWIFTPRUNE_HAS_TRANSPOSE_8X8 0
#define SWIFTPRUNE_HAS_PACK_6X8 0
#endif

#endif
