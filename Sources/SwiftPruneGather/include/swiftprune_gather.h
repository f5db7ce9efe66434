// AVX2 gathers for the Swift kernels. `_mm256_i32gather_ps` is a C macro
// (its scale must be a compile-time constant), which Swift does not import;
// this static inline wrapper is imported and inlined instead. Callers are
// compiled for x86-64-v3 (AVX2), so the target attribute adds nothing there;
// it lets this header compile in a C file built for the x86-64 baseline.
#ifndef SWIFTPRUNE_GATHER_H
#define SWIFTPRUNE_GATHER_H

#if defined(__x86_64__)
#include <immintrin.h>

/// The 8 floats `base[indices[0]] ... base[indices[7]]` (`vgatherdps`); every
/// index must address memory the caller may read.
static inline __attribute__((always_inline, target("avx2"))) __m256 swiftprune_gather8_f32(const float *base,
                                                                                         __m256i indices) {
    return _mm256_i32gather_ps(base, indices, 4);
}
#endif

#endif
