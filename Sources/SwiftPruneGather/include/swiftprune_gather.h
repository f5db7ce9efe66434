// Gathers of eight floats for the Swift sparse matvec kernels, as static
// inline C that Swift imports and inlines.
//
// They use eight scalar loads (`vmovss` + `vinsertps` from memory), not the
// AVX2 gather instruction: on Zen 3 `vpgatherdps` is microcoded and ties up
// the load pipes for longer than eight plain loads do, which the other work
// of the loop (index loads, value loads) then waits for. C model of the 16-bit
// CSR loop, 4096², 10% dense, interleaved on this shared 2-core VM: median
// 1.44-1.53 ms with `vpgatherdps`, 1.02-1.24 ms with scalar loads.
// `_mm256_setr_ps` of eight loads is written here because clang lowers it to
// exactly that sequence; Swift's SIMD8 initializer does not promise to.
#ifndef SWIFTPRUNE_GATHER_H
#define SWIFTPRUNE_GATHER_H

#if defined(__x86_64__)
#include <immintrin.h>
#include <stdint.h>

/// The 8 floats `base[indices[0]] ... base[indices[7]]`; every index must
/// address memory the caller may read.
static inline __attribute__((always_inline, target("avx2"))) __m256 swiftprune_gather8_f32_u16(
    const float *base, const uint16_t *indices) {
    return _mm256_setr_ps(base[indices[0]], base[indices[1]], base[indices[2]], base[indices[3]],
                          base[indices[4]], base[indices[5]], base[indices[6]], base[indices[7]]);
}

/// As `swiftprune_gather8_f32_u16`, with 32-bit indices read as unsigned.
static inline __attribute__((always_inline, target("avx2"))) __m256 swiftprune_gather8_f32_u32(
    const float *base, const uint32_t *indices) {
    return _mm256_setr_ps(base[indices[0]], base[indices[1]], base[indices[2]], base[indices[3]],
                          base[indices[4]], base[indices[5]], base[indices[6]], base[indices[7]]);
}
#endif

#endif
