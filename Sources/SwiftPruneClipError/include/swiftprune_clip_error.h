// The squared reconstruction errors of one group of floats under several
// quantization candidates at once, for the "mse" clipping search
// (QuantizationCalibration.bestClipping). Written with AVX2 intrinsics because
// Swift's SIMD8<Float> code for it ran on 128-bit halves with lane extractions
// for the float64 conversion (~8 ns per 8 values and candidate); here one
// load of 8 values serves two candidates, each with its own float64 chains.
// GPTQ's searched group ranges (float64 quotients, one sequential sum per
// candidate) get their own kernel: one candidate per float64 lane.
#ifndef SWIFTPRUNE_CLIP_ERROR_H
#define SWIFTPRUNE_CLIP_ERROR_H

#if defined(__x86_64__)

/// For each candidate `k < candidates` and the first `count` rounded
/// down to a multiple of 8 values of `x`: with `t = clamp(x / scales[k],
/// lower[k], upper[k])` rounded half to even (the correctly rounded quotient)
/// and `e = x − t·scales[k]` (product and difference rounded to float),
/// writes the float64 sums of `e²` over lanes 0-3 of each block of 8 to
/// `sums[8k ..< 8k+4]` and over lanes 4-7 to `sums[8k+4 ..< 8k+8]`, each
/// accumulated block by block in order. Every scale must lie in
/// [2⁻⁶⁴, 2⁶⁴] and every `|x / scale|` below 2¹⁰⁰ (no underflow or overflow
/// in the quotient's correction, so it is exact).
void swiftprune_clip_errors_f32(const float *x, long count, const float *scales, const float *lower,
                                const float *upper, int candidates, double *sums);

/// For each candidate `k < candidates` (any number): the float64 sum, in the
/// order of `x`, of `d²` (rounded, then added) over the `count` values of `x`,
/// where `t = clamp(x / scales[k], lower[k], upper[k])` with the quotient
/// correctly rounded in float64, rounded half to even, and `d = x − fl32(t ·
/// scales[k])` exact in float64; written to `errors[k]`. These are the
/// operations of GPTQ's searched group range (SearchedRange.error), one
/// candidate per float64 lane. Every scale must be finite and nonzero.
void swiftprune_clip_errors_f64_quotient(const float *x, long count, const float *scales, const float *lower,
                                         const float *upper, int candidates, double *errors);
#define SWIFTPRUNE_HAS_CLIP_ERRORS 1
#else
#define SWIFTPRUNE_HAS_CLIP_ERRORS 0
#endif

#endif
