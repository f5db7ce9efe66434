/* Memory floors of the memory-bound rows of issue 18 (benchmarks/memory_floor.py builds and loads this):
 * the least work each operation must do, as plain AVX2 loops with no arithmetic worth the name.
 *   read_sum_squares: read n floats once (a slice-norm or magnitude pass reads its weights once).
 *   stream_fill:      write n bytes with non-temporal stores (a mask or output written once, no
 *                     read for ownership).
 *   dequantize_stream: int8 codes times one scale into float32 with non-temporal stores: read 1 byte,
 *                     write 4 per element (the dequantize row's true floor).
 *   read_streams:     read n floats as 1..8 interleaved streams with or without software prefetch
 *                     (`memory_floor.py --read-ceiling`: one core's real read ceiling).
 * Pointers passed to the stream functions must be 32-byte aligned and n a multiple of 32. */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

float read_sum_squares(const float *a, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 32 <= n; i += 32) {
        __m256 x0 = _mm256_loadu_ps(a + i), x1 = _mm256_loadu_ps(a + i + 8);
        __m256 x2 = _mm256_loadu_ps(a + i + 16), x3 = _mm256_loadu_ps(a + i + 24);
        s0 = _mm256_fmadd_ps(x0, x0, s0); s1 = _mm256_fmadd_ps(x1, x1, s1);
        s2 = _mm256_fmadd_ps(x2, x2, s2); s3 = _mm256_fmadd_ps(x3, x3, s3);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    return _mm256_cvtss_f32(s);
}

void stream_fill(uint8_t *out, size_t n, uint8_t value) {
    __m256i v = _mm256_set1_epi8((char)value);
    for (size_t i = 0; i + 32 <= n; i += 32) _mm256_stream_si256((__m256i *)(out + i), v);
    _mm_sfence();
}

void dequantize_stream(const int8_t *q, size_t n, float scale, float *out) {
    __m256 s = _mm256_set1_ps(scale);
    for (size_t i = 0; i + 32 <= n; i += 32) {
        for (int j = 0; j < 32; j += 8) {
            __m256i wide = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + i + j)));
            _mm256_stream_ps(out + i + j, _mm256_mul_ps(_mm256_cvtepi32_ps(wide), s));
        }
    }
    _mm_sfence();
}

/* The sum of squares of n floats read as `streams` interleaved streams: the buffer is cut into that many
 * equal parts and each step reads 64 bytes of every part. With `distance` > 0 each stream is also
 * prefetched that many bytes ahead, with prefetcht0 (hint 0) or prefetchnta (hint 1). Up to 8 streams;
 * entries past the last whole step of each part are not read. */
float read_streams(const float *a, size_t n, int streams, size_t distance, int hint) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t part = n / (size_t)streams;
    for (size_t i = 0; i + 16 <= part; i += 16) {
        for (int j = 0; j < streams; j++) {
            const float *q = a + (size_t)j * part + i;
            if (distance && hint == 0) _mm_prefetch((const char *)q + distance, _MM_HINT_T0);
            if (distance && hint == 1) _mm_prefetch((const char *)q + distance, _MM_HINT_NTA);
            __m256 x0 = _mm256_loadu_ps(q), x1 = _mm256_loadu_ps(q + 8);
            if (j & 1) { s2 = _mm256_fmadd_ps(x0, x0, s2); s3 = _mm256_fmadd_ps(x1, x1, s3); }
            else { s0 = _mm256_fmadd_ps(x0, x0, s0); s1 = _mm256_fmadd_ps(x1, x1, s1); }
        }
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    return _mm256_cvtss_f32(s);
}
