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
#include <stdint.h>

/// For each candidate `k < candidates` (scale `scales[k]`, zero point
/// `zeroPoints[k]` on the grid [qmin, qmax]) and the first `count` rounded
/// down to a multiple of 8 values of `x`: with `t = clamp(x / scales[k],
/// qmin − zero, qmax − zero)` (the correctly rounded float quotient) rounded
/// half to even and `e = x − t·scales[k]` (product and difference rounded to
/// float), the float64 sums of `e²` per lane (lanes 0-3 and 4-7 of each block
/// of 8, accumulated block by block in order), then reduced as
/// `((l0 + h0) + (l1 + h1)) + (l2 + h2)) + (l3 + h3)`; written to
/// `errors[k]`. Every scale must lie in [2⁻⁶⁴, 2⁶⁴] and every `|x / scale|`
/// be below 2¹⁰⁰ (no underflow or overflow in the quotient's correction, so
/// it is exact).
void swiftprune_clip_errors_f32(const float *x, long count, const float *scales, const int32_t *zeroPoints,
                                int32_t qmin, int32_t qmax, int candidates, double *errors);

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
