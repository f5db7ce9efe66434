// The float32 scan declared in include/swiftprune_bracket_scan.h, compiled out of line by SwiftPM's
// clang. Written in Swift, the same intrinsics compiled to each signed compare rewritten as an
// unsigned min + compare (+ not), since the keys were provably non-negative, and constants reloaded
// from the stack: callgrind counted 30.2M instructions for a 1e7 scan there, 23.6M here (3.0 -> 2.4
// per value, the in-bracket records included).
#include "swiftprune_bracket_scan.h"

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx2")))
int64_t swiftprune_scan_float_bracket(const float *v, int64_t count, const swiftprune_float_bracket *bracket,
                                      bool *mask, bool streamed, uint64_t *keys, bool **places,
                                      uint32_t *histogram, swiftprune_bracket_totals *totals) {
    const uint32_t lo_key = bracket->lo, shift = bracket->shift, magnitude_bits = bracket->magnitude_bits;
    const __m256i magnitude = _mm256_set1_epi32((int)magnitude_bits);
    const __m256i lo = _mm256_set1_epi32((int)lo_key);
    const __m256i guess = _mm256_set1_epi32((int)bracket->guess);
    const __m256i hi = _mm256_set1_epi32((int)bracket->hi);
    const __m256i ones = _mm256_set1_epi8(1);
    // Lane order after the two packs is 0 4 1 5 2 6 3 7 (in 32-bit units): put it back.
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const int64_t prefetch = bracket->prefetch_bytes;
    __m256i worst = _mm256_setzero_si256(), below = _mm256_setzero_si256();
    int64_t i = 0, found = 0;
    for (; i + 32 <= count; i += 32) {
        const char *raw = (const char *)(v + i);
        if (prefetch > 0) {
            _mm_prefetch(raw + prefetch, _MM_HINT_T0);
            _mm_prefetch(raw + prefetch + 64, _MM_HINT_T0);
        }
        const __m256i k0 = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)raw), magnitude);
        const __m256i k1 = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(raw + 32)), magnitude);
        const __m256i k2 = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(raw + 64)), magnitude);
        const __m256i k3 = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(raw + 96)), magnitude);
        worst = _mm256_max_epi32(worst, _mm256_max_epi32(_mm256_max_epi32(k0, k1), _mm256_max_epi32(k2, k3)));
        const __m256i g0 = _mm256_cmpgt_epi32(k0, hi), g1 = _mm256_cmpgt_epi32(k1, hi);
        const __m256i g2 = _mm256_cmpgt_epi32(k2, hi), g3 = _mm256_cmpgt_epi32(k3, hi);
        const __m256i l0 = _mm256_cmpgt_epi32(lo, k0), l1 = _mm256_cmpgt_epi32(lo, k1);
        const __m256i l2 = _mm256_cmpgt_epi32(lo, k2), l3 = _mm256_cmpgt_epi32(lo, k3);
        // Compare masks are -1: subtracting counts (at most 4 per lane and step).
        below = _mm256_sub_epi32(_mm256_sub_epi32(below, _mm256_add_epi32(l0, l1)), _mm256_add_epi32(l2, l3));
        const __m256i m0 = _mm256_cmpgt_epi32(k0, guess), m1 = _mm256_cmpgt_epi32(k1, guess);
        const __m256i m2 = _mm256_cmpgt_epi32(k2, guess), m3 = _mm256_cmpgt_epi32(k3, guess);
        const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(m0, m1), _mm256_packs_epi32(m2, m3));
        const __m256i bytes = _mm256_and_si256(_mm256_permutevar8x32_epi32(packed, order), ones);
        if (streamed) {
            _mm256_stream_si256((__m256i *)(mask + i), bytes);
        } else {
            _mm256_storeu_si256((__m256i *)(mask + i), bytes);
        }
        const uint32_t outside = (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_or_si256(g0, l0)))
            | (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_or_si256(g1, l1))) << 8
            | (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_or_si256(g2, l2))) << 16
            | (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_or_si256(g3, l3))) << 24;
        uint32_t inside = ~outside;
        // The first two entries of the group go through two record slots written whether or not
        // the group has them: no branch. About 2% of keys are inside the bracket, so half the
        // groups hold none, and a loop over the set bits mispredicted about once per group (the
        // scan of 1e7 took 4.45 ms CPU with it, 3.15 with the slots; a C harness of this kernel,
        // 31 interleaved rounds). An empty slot writes its record just past `found` (inside the
        // caller's room of `count`, as found <= i + 1) from lane 31 (in bounds). The rare third
        // and later entries take the loop. The histogram counts the records after the loop (in
        // L1 by then): in the slots it cost as many instructions again (3.50 -> 3.26 ms).
        for (int slot = 0; slot < 2; slot++) {
            const uint32_t lane = (uint32_t)__builtin_ctz(inside | 0x80000000u);
            const uint32_t present = inside != 0;
            uint32_t key;
            __builtin_memcpy(&key, v + i + lane, 4);
            key &= magnitude_bits;
            keys[found] = key;
            places[found] = mask + i + lane;
            found += present;
            inside &= inside - 1;
        }
        while (inside != 0) {
            const int64_t at = i + __builtin_ctz(inside);
            uint32_t key;
            __builtin_memcpy(&key, v + at, 4);
            key &= magnitude_bits;
            keys[found] = key;
            places[found] = mask + at;
            found += 1;
            inside &= inside - 1;
        }
    }
    for (int64_t j = 0; j < found; j++) histogram[((uint32_t)keys[j] - lo_key) >> shift] += 1;
    uint32_t lanes[8], counts[8];
    _mm256_storeu_si256((__m256i *)lanes, worst);
    _mm256_storeu_si256((__m256i *)counts, below);
    uint32_t largest = 0;
    int64_t under = 0;
    for (int lane = 0; lane < 8; lane++) {
        largest = lanes[lane] > largest ? lanes[lane] : largest;
        under += counts[lane];
    }
    totals->worst = largest;
    totals->below = under;
    totals->found = found;
    return i;
}

#else

int64_t swiftprune_scan_float_bracket(const float *v, int64_t count, const swiftprune_float_bracket *bracket,
                                      bool *mask, bool streamed, uint64_t *keys, bool **places,
                                      uint32_t *histogram, swiftprune_bracket_totals *totals) {
    (void)v; (void)count; (void)bracket; (void)mask; (void)streamed; (void)keys; (void)places; (void)histogram;
    totals->worst = 0;
    totals->below = 0;
    totals->found = 0;
    return 0;
}

#endif
