/*
 * swiftprune.h — the C ABI of swiftprune.
 *
 * Conventions (every function):
 *  - Returns an sp_status; SP_OK is 0. On any other status nothing is
 *    promised about output buffers, and sp_last_error() describes the
 *    failure in the calling thread.
 *  - Arrays are contiguous, C (row-major) order, passed as a pointer plus
 *    an element count or a shape. Inputs are never modified.
 *  - Output buffers are allocated by the caller and only filled here: no
 *    ownership crosses this boundary.
 *  - Functions are thread-safe and may be called concurrently; large work is
 *    parallelized internally (see sp_set_num_threads).
 */
#ifndef SWIFTPRUNE_H
#define SWIFTPRUNE_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int32_t sp_status;

/** Success. */
#define SP_OK 0
/** A value, a shape or a range is wrong (Python: ValueError). */
#define SP_ERR_VALUE 1
/** An argument is of the wrong kind (Python: TypeError). */
#define SP_ERR_TYPE 2
/** Out of memory, or a size overflows (Python: MemoryError). */
#define SP_ERR_MEMORY 3
/** A bug in swiftprune; please report it. */
#define SP_ERR_INTERNAL 4
/** A system call failed (file missing, a directory, no permission, disk full);
 *  sp_last_errno() gives the errno (Python: the matching OSError subclass). */
#define SP_ERR_OS 5

/* ---- library ----------------------------------------------------------- */

/** The library version, e.g. "0.1.0". Static storage; never NULL. */
const char *sp_version(void);

/**
 * The message of the last failed call made by this thread, or "" if none.
 * Valid until the next swiftprune call on the same thread.
 */
const char *sp_last_error(void);

/** The C errno of this thread's last SP_ERR_OS failure; 0 after other failures. */
int32_t sp_last_errno(void);

/** Sets the worker thread count; 0 restores the default
 *  (SWIFTPRUNE_NUM_THREADS, else the processor count).
 *  SP_ERR_VALUE if n < 0. */
sp_status sp_set_num_threads(int64_t n);

/** The worker thread count in force (>= 1). */
int64_t sp_get_num_threads(void);

/* ---- pruning ----------------------------------------------------------- */

/**
 * Magnitude pruning mask: mask_out[i] = false for exactly
 * k = round(sparsity * n) (ties to even) entries of smallest |w|, the lower
 * index first among equal magnitudes; true elsewhere.
 * w: n elements (may be NULL when n == 0); mask_out: n bools.
 * SP_ERR_VALUE: sparsity outside [0, 1], NaN or Inf in w, n < 0.
 */
sp_status sp_magnitude_mask_f32(const float *w, int64_t n, double sparsity, bool *mask_out);
/** As sp_magnitude_mask_f32, for double weights. */
sp_status sp_magnitude_mask_f64(const double *w, int64_t n, double sparsity, bool *mask_out);

/**
 * Global magnitude pruning over `count` tensors at once: exactly
 * k = round(sparsity * sum(sizes)) entries are pruned over all of them, those
 * of smallest |w|, the lower position in the concatenation (tensor order,
 * then index) first among equal magnitudes. ws[i]: sizes[i] elements;
 * masks_out[i]: sizes[i] bools (true = kept). Pointers may be NULL for
 * empty tensors.
 * SP_ERR_VALUE: sparsity outside [0, 1], NaN or Inf, a negative size.
 */
sp_status sp_global_magnitude_masks_f32(const float *const *ws, const int64_t *sizes, int64_t count,
                                        double sparsity, bool *const *masks_out);
/** As sp_global_magnitude_masks_f32, for double weights. */
sp_status sp_global_magnitude_masks_f64(const double *const *ws, const int64_t *sizes, int64_t count,
                                        double sparsity, bool *const *masks_out);

/**
 * Streaming statistics for exact global magnitude pruning over tensors that
 * are never in memory together (sharded checkpoints, cluster workers).
 * Counts the magnitude keys (the float32 bit pattern of |w|, 31 bits) of the
 * n elements of w that lie in [low, low + bins << shift), into
 * counts[(key - low) >> shift] (bins int64 entries, overwritten).
 * *low_bits_out: the OR of key & ((1 << shift) - 1) over counted keys (0 means
 * every bin holds one key value); *nonfinite_out: NaN/Inf count in all of w.
 * SP_ERR_VALUE: shift outside 0..31, bins outside 1..2^24, a range leaving
 * the 31-bit keys, n < 0, NULL pointers.
 */
sp_status sp_magnitude_histogram_f32(const float *w, int64_t n, uint32_t low, int32_t shift, int64_t bins,
                                     int64_t *counts, uint32_t *low_bits_out, int64_t *nonfinite_out);

/**
 * One tensor's keep-mask under a global magnitude threshold: mask_out[i] is
 * true where the key of |w[i]| is above `threshold`, false below it, and for
 * keys equal to it false for the first `pruned_ties` (C order), true after.
 * SP_ERR_VALUE: NaN/Inf in w, pruned_ties < 0, n < 0, NULL pointers.
 */
sp_status sp_magnitude_threshold_mask_f32(const float *w, int64_t n, uint32_t threshold, int64_t pruned_ties,
                                          bool *mask_out);

/**
 * Random mask: exactly k = round(sparsity * n) of the n entries false, every
 * such subset equally likely; Floyd's algorithm over xoshiro256** seeded by
 * SplitMix64(seed), so a seed always gives the same mask.
 * SP_ERR_VALUE: sparsity outside [0, 1], n < 0.
 */
sp_status sp_random_mask(int64_t n, double sparsity, uint64_t seed, bool *mask_out);

/**
 * N:M mask: in every run of m consecutive entries along `axis` (negative
 * counts from the end) of the C-order tensor w of the given shape, the n
 * entries of largest |w| are kept (ties: lower index kept).
 * w, mask_out: prod(shape) elements.
 * SP_ERR_VALUE: ndim == 0, axis out of range, not 1 <= n < m,
 * shape[axis] % m != 0, NaN or Inf.
 */
sp_status sp_nm_mask_f32(const float *w, const int64_t *shape, int64_t ndim, int64_t n, int64_t m,
                         int64_t axis, bool *mask_out);
/** As sp_nm_mask_f32, for double weights. */
sp_status sp_nm_mask_f64(const double *w, const int64_t *shape, int64_t ndim, int64_t n, int64_t m,
                         int64_t axis, bool *mask_out);

/**
 * Structured mask: round(amount * shape[axis]) whole slices along `axis`
 * are pruned, those of smallest `norm`-norm (1, 2 or INFINITY) over all the
 * other axes; ties: lower index pruned first (torch ln_structured).
 * w, mask_out: prod(shape) elements.
 * SP_ERR_VALUE: amount outside [0, 1], norm not 1/2/inf, ndim == 0, axis out
 * of range, NaN or Inf.
 */
sp_status sp_structured_mask_f32(const float *w, const int64_t *shape, int64_t ndim, double amount,
                                 int64_t axis, double norm, bool *mask_out);
/** As sp_structured_mask_f32, for double weights. */
sp_status sp_structured_mask_f64(const double *w, const int64_t *shape, int64_t ndim, double amount,
                                 int64_t axis, double norm, bool *mask_out);

/**
 * As sp_structured_mask_f32, but writes one bool per slice: keep_out[l] tells
 * whether slice l along `axis` is kept. keep_count must equal shape[axis].
 */
sp_status sp_structured_keep_f32(const float *w, const int64_t *shape, int64_t ndim, double amount,
                                 int64_t axis, double norm, bool *keep_out, int64_t keep_count);
/** As sp_structured_keep_f32, for double weights. */
sp_status sp_structured_keep_f64(const double *w, const int64_t *shape, int64_t ndim, double amount,
                                 int64_t axis, double norm, bool *keep_out, int64_t keep_count);

/**
 * Block mask of a rows x columns matrix: blocks of block_rows x
 * block_columns from the top-left, scored by mean |w| over their own entries
 * (edge blocks may be partial); round(sparsity * n_blocks) lowest-scored
 * blocks pruned, lower row-major block index first among ties.
 * SP_ERR_VALUE: sparsity outside [0, 1], block sides < 1, NaN or Inf.
 */
sp_status sp_block_mask_f32(const float *w, int64_t rows, int64_t columns, double sparsity,
                            int64_t block_rows, int64_t block_columns, bool *mask_out);
/** As sp_block_mask_f32, for double weights. */
sp_status sp_block_mask_f64(const double *w, int64_t rows, int64_t columns, double sparsity,
                            int64_t block_rows, int64_t block_columns, bool *mask_out);

/**
 * Wanda mask of a linear layer: w is (rows = out, columns = in), x is
 * (samples, columns); the score of w[r][c] is |w[r][c]| * ||x[:, c]||_2 and
 * every row gets exactly round(sparsity * columns) entries of smallest score
 * pruned (false), the lower column first among ties. mask_out: rows*columns.
 * SP_ERR_VALUE: sparsity outside [0, 1], negative sizes, NaN or Inf.
 */
sp_status sp_wanda_mask_f32(const float *w, int64_t rows, int64_t columns, const float *x, int64_t samples,
                            double sparsity, bool *mask_out);
/** As sp_wanda_mask_f32, for double inputs. */
sp_status sp_wanda_mask_f64(const double *w, int64_t rows, int64_t columns, const double *x, int64_t samples,
                            double sparsity, bool *mask_out);

/**
 * SparseGPT: prunes w (rows = out, columns = in) using the Hessian x^T x of
 * the calibration inputs x (samples, columns), with optimal-brain-surgeon
 * updates of the kept weights; w_out (rows*columns, caller-allocated)
 * receives the pruned, updated weights. n == m == 0: unstructured, exactly
 * round(sparsity * rows * columns) pruned; else n:m (keep n of every m
 * consecutive columns per row, 1 <= n < m, columns % m == 0, block_size % m
 * == 0; sparsity ignored). damp: fraction of mean(diag(H)) added to the
 * diagonal.
 * SP_ERR_VALUE: bad sizes, pattern, block_size < 1, damp < 0, NaN or Inf, a
 * Hessian that is not positive definite.
 */
sp_status sp_sparsegpt_f32(const float *w, int64_t rows, int64_t columns, const float *x, int64_t samples,
                           double sparsity, int64_t n, int64_t m, int64_t block_size, double damp, float *w_out);
/** As sp_sparsegpt_f32, for double inputs and output. */
sp_status sp_sparsegpt_f64(const double *w, int64_t rows, int64_t columns, const double *x, int64_t samples,
                           double sparsity, int64_t n, int64_t m, int64_t block_size, double damp, double *w_out);

/**
 * Streaming calibration Hessian: h += x^T x, where x is (samples, features)
 * row-major and h a caller-owned (features, features) row-major double
 * matrix (zero it before the first batch). Products by the packed syrk
 * kernel in the input's precision (float32 for _f32, as reference
 * GPTQ/SparseGPT) on chunks of 4096 samples, each chunk added in double.
 * SP_ERR_VALUE: negative sizes, NULL buffers, NaN or Inf in x.
 */
sp_status sp_hessian_accumulate_f32(const float *x, int64_t samples, int64_t features, double *h);
/** As sp_hessian_accumulate_f32, for double inputs (products in double). */
sp_status sp_hessian_accumulate_f64(const double *x, int64_t samples, int64_t features, double *h);
/**
 * As sp_hessian_accumulate_f32 / _f64, with a caller-owned scratch of
 * scratch_count >= features * features elements for the partial sums (its
 * contents on entry are ignored and on return unspecified). Passing the same
 * scratch to every batch spares the allocation, page faults and zeroing of a
 * fresh features^2 buffer per call (64 MB at 4096 features).
 * SP_ERR_VALUE: as sp_hessian_accumulate_f32, or a NULL / too small scratch.
 */
sp_status sp_hessian_accumulate_scratch_f32(const float *x, int64_t samples, int64_t features, double *h,
                                            float *scratch, int64_t scratch_count);
/** As sp_hessian_accumulate_scratch_f32, for double inputs and scratch. */
sp_status sp_hessian_accumulate_scratch_f64(const double *x, int64_t samples, int64_t features, double *h,
                                            double *scratch, int64_t scratch_count);

/**
 * SparseGPT from a precomputed Hessian h = x^T x (columns x columns, any
 * positive multiple, row-major; only read, never written: the pointer is not
 * const only to keep the signature of earlier releases). Otherwise as
 * sp_sparsegpt_f32: w (rows, columns) float64, rounded to float32 as the
 * algorithm runs in float32; w_out receives the pruned, updated weights.
 * SP_ERR_VALUE: bad sizes or pattern, block_size outside 1..65536, NaN/Inf in
 * w or h, a Hessian that is not positive definite after damping.
 * SP_ERR_MEMORY: columns > 32768, or the working copies cannot be allocated.
 */
sp_status sp_sparsegpt_hessian_f64(const double *w, int64_t rows, int64_t columns, double *h, double sparsity,
                                   int64_t n, int64_t m, int64_t block_size, double damp, double *w_out);
/** As sp_sparsegpt_hessian_f64 for float32 w and w_out (h only read, declared const). SparseGPT runs in
 * float32 whatever the entry (the factorization falls back to float64 only when float32 cannot factor h). */
sp_status sp_sparsegpt_hessian_f32(const float *w, int64_t rows, int64_t columns, const double *h, double sparsity,
                                   int64_t n, int64_t m, int64_t block_size, double damp, float *w_out);

/**
 * SparseGPT's joint sparsification and quantization: as
 * sp_sparsegpt_hessian_f32 (pattern by sparsity or n:m, block_size, damp; h
 * only read), and inside the column loop each kept weight is quantized to
 * `bits` (2..8, symmetric or affine) with one scale per row (group_size 0)
 * or per group of group_size columns (the scales of a group from the weights
 * updated so far when the group is reached); its rounding error is
 * compensated with the pruning error. Pruned weights are stored as the zero
 * point. Outputs as sp_quant_gptq_hessian_f32 (values rows*columns bytes,
 * n_scales scales and zero points).
 * SP_ERR_VALUE: as sp_sparsegpt_hessian_f32 and sp_quant_gptq_hessian_f32.
 */
sp_status sp_sparsegpt_quant_hessian_f32(const float *w, int64_t rows, int64_t columns, const double *h,
                                         double sparsity, int64_t n, int64_t m, int64_t block_size, double damp,
                                         int64_t bits, bool symmetric, int64_t group_size,
                                         void *values_out, float *scale_out, void *zero_point_out, int64_t n_scales);

/* ---- quantization ------------------------------------------------------ */

/*
 * Quantization layouts. A weight of shape `shape` (ndim extents) gets one
 * scale per tensor (has_axis == false, group_size == 0), one per index along
 * `axis` (negative axes count from the end), or, for 2-D weights, one per
 * group of `group_size` consecutive entries along the other dimension
 * (has_axis and group_size > 0). Scales and zero points are in C order of the
 * "scale shape": ndim extents, 1 where one scale covers the dimension,
 * shape[axis] along the axis, shape[d] / group_size along the grouped d.
 * SP_ERR_VALUE: axis out of range, group_size < 0 or not dividing, group_size
 * without an axis or on a tensor that is not 2-D.
 */

/** Calibration methods of sp_quant_quantize_*: the group's min and max, */
#define SP_CALIBRATION_MINMAX 0
/** the given percentile of |w| (NumPy's "linear" percentile), */
#define SP_CALIBRATION_PERCENTILE 1
/** or the clipping range minimizing the reconstruction MSE (never worse than minmax). */
#define SP_CALIBRATION_MSE 2

/** Fills scale_shape_out (ndim extents) with the scale shape of the layout.
 *  SP_ERR_VALUE: bad layout (see above), ndim outside 0..64. */
sp_status sp_quant_scale_shape(const int64_t *shape, int64_t ndim, bool has_axis, int64_t axis,
                               int64_t group_size, int64_t *scale_shape_out);

/**
 * Quantizes w (the product of shape elements) to `bits` (2..8) bits:
 * symmetric: q in [-qmax, qmax], qmax = 2^(bits-1)-1, scale = max|w|/qmax,
 * zero point 0, values_out and zero_point_out are int8; affine: q in
 * [0, 2^bits-1], range widened to include 0, scale = (max-min)/(2^bits-1),
 * zero point = clamp(round(-min/scale)), values_out and zero_point_out are
 * uint8. q = clamp(round_half_even(w / scale) + zero_point); scales are
 * computed in double and rounded to float; the division w / scale is done
 * in w's precision. An all-zero group gets scale 1.
 * n_scales: the product of the scale shape (see sp_quant_scale_shape).
 * `percentile` (0..100) is used by SP_CALIBRATION_PERCENTILE only.
 * SP_ERR_VALUE: bits outside 2..8, bad layout, NaN/Inf in w, bad method,
 * percentile outside [0, 100], n_scales not matching.
 */
sp_status sp_quant_quantize_f32(const float *w, const int64_t *shape, int64_t ndim, int64_t bits, bool symmetric,
                                bool has_axis, int64_t axis, int64_t group_size, int32_t method, double percentile,
                                void *values_out, float *scale_out, void *zero_point_out, int64_t n_scales);
/** As sp_quant_quantize_f32 for double weights (the division is done in double). */
sp_status sp_quant_quantize_f64(const double *w, const int64_t *shape, int64_t ndim, int64_t bits, bool symmetric,
                                bool has_axis, int64_t axis, int64_t group_size, int32_t method, double percentile,
                                void *values_out, float *scale_out, void *zero_point_out, int64_t n_scales);

/**
 * out = (q - zero_point) * scale in float, per group of the layout.
 * values (the product of shape elements) and zero_point (n_scales) are int8
 * when `symmetric`, else uint8; scale has n_scales floats; out has one float
 * per value. SP_ERR_VALUE: bad layout, n_scales not matching, NULL buffers.
 */
sp_status sp_quant_dequantize(const void *values, bool symmetric, const int64_t *shape, int64_t ndim,
                              bool has_axis, int64_t axis, int64_t group_size,
                              const float *scale, const void *zero_point, int64_t n_scales, float *out);

/**
 * The recipe "N:M magnitude prune along the rows + minmax quantization of the kept values per row or per
 * group of group_size columns" in one streaming pass over a rows x columns weight (C order), encoded into
 * the compressed file's layouts (see FusedNMQuantization in the Swift core). dtype: 0 float32 values,
 * 1 float16 or 2 bfloat16 bit patterns. With stored = rows*columns/m*n:
 * scales_out, zero_points_out (int8/uint8 by `symmetric`): rows*columns/group_size each;
 * nm_values_out and mask_values_out: (stored*bits + 7)/8 bytes; nm_positions_out: (stored*ceil(log2 m) + 7)/8;
 * mask_bits_out: (rows*columns + 7)/8 (np.packbits order). *mask_value_bytes_out: the bytes of
 * mask_values_out used; *nonzeros_out: codes other than their zero point; *norm_out, *difference_out:
 * sum w^2 and sum (w - dequantized)^2 in double.
 * SP_ERR_VALUE: bad options or sizes, NaN/Inf weights; SP_ERR_MEMORY: no room for the row scratch.
 */
sp_status sp_nm_quantize_encode(const void *weights, int32_t dtype, int64_t rows, int64_t columns, int64_t n, int64_t m,
                                int64_t bits, bool symmetric, int64_t group_size, float *scales_out,
                                void *zero_points_out, uint8_t *nm_values_out, uint8_t *nm_positions_out,
                                uint8_t *mask_bits_out, uint8_t *mask_values_out, int64_t *nonzeros_out,
                                int64_t *mask_value_bytes_out, double *norm_out, double *difference_out);

/** Packs the low `bits` (1..8) bits of n bytes as a little-endian bit stream (value i at bits
 *  [i*bits, (i+1)*bits), bit 0 = lowest bit of byte 0): packed_out holds (n*bits + 7)/8 bytes,
 *  unused high bits of the last one zero. bits = 4 gives two values per byte, low nibble first. */
sp_status sp_quant_pack_bits(const uint8_t *values, int64_t n, int32_t bits, uint8_t *packed_out);
/** Unpacks n values of `bits` bits from (n*bits + 7)/8 bytes; is_signed sign-extends each (int8 out). */
sp_status sp_quant_unpack_bits(const uint8_t *packed, int64_t n, int32_t bits, bool is_signed, uint8_t *values_out);

/**
 * Casts n values to float16 / bfloat16 bit patterns, round to nearest even,
 * subnormals kept, overflow to +-Inf, Inf kept, NaN kept NaN (float16:
 * NumPy's payload rule; bfloat16: payload truncated, quiet bit set). Float64
 * input is rounded once, directly. Never fails on values.
 */
sp_status sp_cast_float16_f32(const float *x, int64_t n, uint16_t *out);
/** As sp_cast_float16_f32 for double input. */
sp_status sp_cast_float16_f64(const double *x, int64_t n, uint16_t *out);
/** As sp_cast_float16_f32, to bfloat16. */
sp_status sp_cast_bfloat16_f32(const float *x, int64_t n, uint16_t *out);
/** As sp_cast_bfloat16_f32 for double input. */
sp_status sp_cast_bfloat16_f64(const double *x, int64_t n, uint16_t *out);

/**
 * GPTQ: quantizes the weight w (rows x cols, layout (out, in)) using the
 * calibration activations x (samples x cols) so that w x^T changes little:
 * H = x^T x / samples, dead columns zeroed, H += damp * mean(diag H) * I,
 * the upper Cholesky factor of H^-1, column-by-column quantization with error
 * compensation, lazy block updates. group_size 0: one scale per row (scale
 * shape (rows, 1)); else groups of group_size columns (scale shape
 * (rows, cols / group_size)). Outputs as sp_quant_quantize_f32 (int8/uint8
 * values and zero points by `symmetric`).
 * SP_ERR_VALUE: bits outside 2..8, group_size not dividing cols, damp < 0,
 * NaN/Inf in w or x, samples == 0 (with cols > 0), H not positive definite.
 */
sp_status sp_quant_gptq_f64(const double *w, int64_t rows, int64_t cols, const double *x, int64_t samples,
                            int64_t bits, bool symmetric, int64_t group_size, double damp,
                            void *values_out, float *scale_out, void *zero_point_out, int64_t n_scales);

/**
 * GPTQ from a precomputed Hessian h = x^T x (cols x cols, any positive
 * multiple, row-major; only read, never written: the pointer is not const
 * only to keep the signature of earlier releases), with the options of
 * the reference implementation: block_size (lazy-update width), act_order
 * (columns in decreasing diag(h); with groups, static groups), static_groups
 * (every group's scale from the weights before any update), mse_grid (0:
 * min-max scales; else the clipping range of each scale searched over
 * mse_grid shrink steps, up to 80%, for the least squared rounding error).
 * Outputs as sp_quant_gptq_f64; w is rounded to float32 (the algorithm runs
 * in float32, see sp_quant_gptq_hessian_f32).
 * SP_ERR_VALUE: as sp_quant_gptq_f64, plus block_size outside 1..65536,
 * mse_grid outside 0..10000, NaN/Inf in h.
 * SP_ERR_MEMORY: as sp_quant_gptq_hessian_f32, plus the float32 copy of w.
 */
sp_status sp_quant_gptq_hessian_f64(const double *w, int64_t rows, int64_t cols, double *h, int64_t bits,
                                    bool symmetric, int64_t group_size, double damp, int64_t block_size,
                                    bool act_order, bool static_groups, int64_t mse_grid,
                                    void *values_out, float *scale_out, void *zero_point_out, int64_t n_scales);

/**
 * As sp_quant_gptq_hessian_f64 for float32 weights (h, cols x cols float64,
 * only read, declared const). The whole algorithm runs in float32 as the
 * paper's code (the factorization falls back to float64 when float32 cannot
 * factor the damped Hessian); the f64 entries round w to float32 too.
 * SP_ERR_VALUE: as sp_quant_gptq_hessian_f64.
 * SP_ERR_MEMORY: the working copies (about 4 * (rows * cols + 3 * cols * cols)
 * bytes) cannot be allocated, or cols > 32768.
 */
sp_status sp_quant_gptq_hessian_f32(const float *w, int64_t rows, int64_t cols, const double *h, int64_t bits,
                                    bool symmetric, int64_t group_size, double damp, int64_t block_size,
                                    bool act_order, bool static_groups, int64_t mse_grid,
                                    void *values_out, float *scale_out, void *zero_point_out, int64_t n_scales);

/** k-means initializations of sp_cluster_fit_f32: linspace(min, max, k), */
#define SP_CLUSTER_INIT_LINEAR 0
/** or k-means++ (seeded), */
#define SP_CLUSTER_INIT_KMEANS_PLUS_PLUS 1
/** or the globally optimal clustering (dynamic programming, no iterations). */
#define SP_CLUSTER_INIT_OPTIMAL 2

/**
 * 1-D k-means of the n values of w into n_clusters (1..65536) centroids,
 * written ascending to centroids_out (n_clusters floats). Lloyd iterations on
 * the sorted values until the assignment is stable or max_iter; empty
 * clusters are relocated. Fewer distinct values than clusters: the distinct
 * values, the last repeated. n == 0: zeros. iterations_out (may be NULL)
 * receives the iterations run.
 * SP_ERR_VALUE: NaN/Inf in w, n_clusters out of range, max_iter < 0, bad init.
 */
sp_status sp_cluster_fit_f32(const float *w, int64_t n, int64_t n_clusters, int32_t init, int64_t max_iter,
                             uint64_t seed, float *centroids_out, int64_t *iterations_out);
/**
 * indices_out[i] = index of the centroid nearest to w[i] (a value midway
 * goes to the lower one); centroids ascending, finite, 1..256 of them.
 * SP_ERR_VALUE: NaN/Inf in w, centroids not ascending or too many.
 */
sp_status sp_cluster_assign_u8_f32(const float *w, int64_t n, const float *centroids, int64_t n_clusters,
                                   uint8_t *indices_out);
/** As sp_cluster_assign_u8_f32 with up to 65536 centroids and uint16 indices. */
sp_status sp_cluster_assign_u16_f32(const float *w, int64_t n, const float *centroids, int64_t n_clusters,
                                    uint16_t *indices_out);
/**
 * Batched palettization: w holds `rows` consecutive runs of `row_length`
 * values; each run is clustered on its own exactly as sp_cluster_fit_f32
 * followed by sp_cluster_assign (same init, max_iter, seed), its ascending
 * centroids written to centroids_out[r*n_clusters ..] (rows*n_clusters
 * floats) and its indices to indices_out[r*row_length ..], uint8 when
 * index_bytes == 1 (n_clusters <= 256) or uint16 when 2. Rows are spread
 * over the worker threads. iterations_out (may be NULL) receives the most
 * Lloyd iterations any row ran. rows*row_length == 0: zero centroids.
 * SP_ERR_VALUE: NaN/Inf in w, n_clusters out of range or too many for
 * index_bytes, max_iter < 0, bad init or index_bytes.
 */
sp_status sp_cluster_fit_rows_f32(const float *w, int64_t rows, int64_t row_length, int64_t n_clusters, int32_t init,
                                  int64_t max_iter, uint64_t seed, float *centroids_out, void *indices_out,
                                  int32_t index_bytes, int64_t *iterations_out);
/** out[i] = centroids[indices[i]]. SP_ERR_VALUE: an index >= n_clusters. */
sp_status sp_cluster_lookup_u8(const uint8_t *indices, int64_t n, const float *centroids, int64_t n_clusters,
                               float *out);
/** As sp_cluster_lookup_u8 with uint16 indices. */
sp_status sp_cluster_lookup_u16(const uint16_t *indices, int64_t n, const float *centroids, int64_t n_clusters,
                                float *out);

/* ---- low-rank factorization -------------------------------------------- */

/*
 * All factorizations compute in double precision internally and write
 * float results. w is a row-major m x n matrix (may be NULL when m*n == 0);
 * r = min(m, n). NaN or Inf in w gives SP_ERR_VALUE.
 */

/**
 * Thin SVD w = u diag(s) vt, singular values descending.
 * u_out: m*r floats (m x r), s_out: r floats, vt_out: r*n floats (r x n).
 * SP_ERR_VALUE: negative sizes, NULL buffers of non-zero size, NaN/Inf.
 */
sp_status sp_svd_f32(const float *w, int64_t m, int64_t n, float *u_out, float *s_out, float *vt_out);
/** As sp_svd_f32, for double weights (results are float). */
sp_status sp_svd_f64(const double *w, int64_t m, int64_t n, float *u_out, float *s_out, float *vt_out);

/**
 * Randomized truncated SVD of rank `rank` (0 <= rank <= min(m, n)) by block
 * Krylov iteration (SP_RSVD_KRYLOV; sp_randomized_svd_method_f32 also offers
 * scikit-learn's Halko-Martinsson-Tropp subspace iteration, whose block has
 * `oversample` extra test vectors, >= 0) with `power_iters` iterations
 * (< 0: 7 if rank < 0.1 min(m, n), else 4). Deterministic for a given seed.
 * u_out: m*rank floats, s_out: rank floats, vt_out: rank*n floats.
 */
sp_status sp_randomized_svd_f32(const float *w, int64_t m, int64_t n, int64_t rank, int64_t oversample,
                                int64_t power_iters, uint64_t seed, float *u_out, float *s_out, float *vt_out);
/** As sp_randomized_svd_f32, for double weights (results are float). */
sp_status sp_randomized_svd_f64(const double *w, int64_t m, int64_t n, int64_t rank, int64_t oversample,
                                int64_t power_iters, uint64_t seed, float *u_out, float *s_out, float *vt_out);

/** Methods of sp_randomized_svd_method_*: block Krylov (every power-iteration block kept, a block of
 *  max(ceil(rank / 2), ceil((rank + oversample) / (power_iters + 1))) vectors, Rayleigh-Ritz on their
 *  span; subspace iteration when that basis exceeds min(m, n)) or scikit-learn's subspace iteration. */
#define SP_RSVD_KRYLOV 0
#define SP_RSVD_SUBSPACE 1

/**
 * As sp_randomized_svd_f32 with the method chosen: SP_RSVD_KRYLOV (what
 * sp_randomized_svd_f32 uses) or SP_RSVD_SUBSPACE (the power iterations
 * described there). Any other `method` is SP_ERR_VALUE.
 */
sp_status sp_randomized_svd_method_f32(const float *w, int64_t m, int64_t n, int64_t rank, int64_t oversample,
                                       int64_t power_iters, uint64_t seed, int32_t method, float *u_out,
                                       float *s_out, float *vt_out);
/** As sp_randomized_svd_method_f32, for double weights (results are float). */
sp_status sp_randomized_svd_method_f64(const double *w, int64_t m, int64_t n, int64_t rank, int64_t oversample,
                                       int64_t power_iters, uint64_t seed, int32_t method, float *u_out,
                                       float *s_out, float *vt_out);

/** Rank selectors of sp_low_rank_*: `value` is the rank (an integer), the
 *  energy fraction in [0, 1], or the parameter ratio (> 0). */
#define SP_SELECT_RANK 0
#define SP_SELECT_ENERGY 1
#define SP_SELECT_RATIO 2
/** Methods of sp_low_rank_*: auto (randomized for a known rank <= min(m,n)/4
 *  when min(m,n) >= 128, else exact), exact SVD, randomized SVD. */
#define SP_LOW_RANK_AUTO 0
#define SP_LOW_RANK_SVD 1
#define SP_LOW_RANK_RANDOMIZED 2

/**
 * The rank sp_low_rank_* will return for SP_SELECT_RANK / SP_SELECT_RATIO,
 * or min(m, n) for SP_SELECT_ENERGY (an upper bound): the capacity to
 * allocate. SP_ERR_VALUE for a selector or value out of range.
 */
sp_status sp_low_rank_max_rank(int32_t selector, double value, int64_t m, int64_t n, int64_t *rank_out);

/**
 * Low-rank factors a (m x k) and b (k x n) with a @ b ~ w: a = U_k diag(s_k),
 * b = V_k^T. k is chosen by `selector`/`value` (see SP_SELECT_*), written to
 * *rank_out. a_out holds m*capacity floats and b_out capacity*n floats, with
 * capacity >= sp_low_rank_max_rank(...); the results are written compactly
 * (a with row stride k) at the start of each buffer. `seed` drives the
 * randomized method. SP_ERR_VALUE: bad selector/method/value, small
 * capacity, NaN/Inf.
 */
sp_status sp_low_rank_f32(const float *w, int64_t m, int64_t n, int32_t selector, double value, int32_t method,
                          uint64_t seed, int64_t capacity, float *a_out, float *b_out, int64_t *rank_out);
/** As sp_low_rank_f32, for double weights (results are float). */
sp_status sp_low_rank_f64(const double *w, int64_t m, int64_t n, int32_t selector, double value, int32_t method,
                          uint64_t seed, int64_t capacity, float *a_out, float *b_out, int64_t *rank_out);

/* ---- tensor core: matmul, sparse and quantized kernels ------------------ */

/**
 * out (m x n, row-major) = A @ B with A m x k and B k x n, float32, on the
 * blocked multithreaded SGEMM. `a` points at A in row-major order, or, when
 * a_transposed is true, at A^T (k x m) in row-major order (that is, A in
 * column-major order); likewise `b` / b_transposed (B^T is n x k). Pointers
 * may be NULL for empty matrices. SP_ERR_VALUE: negative sizes, NULL
 * pointers to non-empty matrices.
 */
sp_status sp_matmul_f32(const float *a, bool a_transposed, const float *b, bool b_transposed,
                        int64_t m, int64_t k, int64_t n, float *out);

/**
 * The sums of a relative Frobenius error over n float32 entries, in float64:
 * *norm_out = sum a[i]^2, *difference_out = sum (a[i] - b[i])^2 (one pass).
 * SP_ERR_VALUE: n < 0, NULL pointers (a, b may be NULL when n == 0).
 */
sp_status sp_squared_error_f32(const float *a, const float *b, int64_t n, double *norm_out, double *difference_out);
/** As sp_squared_error_f32 with a given as bfloat16 bit patterns (widened exactly). */
sp_status sp_squared_error_bf16_f32(const uint16_t *a, const float *b, int64_t n, double *norm_out,
                                    double *difference_out);

/*
 * Sparse and quantized layers. A weight matrix W has shape (rows, cols) =
 * (out_features, in_features), as a PyTorch Linear weight; every *_matmul
 * computes y = W @ x for x of shape (x_rows, batch) with x_rows == cols,
 * C order, into y of shape (rows, batch). batch may be 1 (a vector).
 * All of them run multithreaded (sp_set_num_threads).
 */

/**
 * CSR conversion, pass 1: counts the nonzeros of the C-order dense matrix
 * w (rows x cols) into indptr_out (rows + 1 int64, indptr_out[0] = 0,
 * cumulative) and their total into *nnz_out.
 * SP_ERR_VALUE: negative sizes, cols > INT32_MAX, NaN or Inf in w.
 */
sp_status sp_csr_count_f32(const float *w, int64_t rows, int64_t cols, int64_t *indptr_out, int64_t *nnz_out);

/**
 * CSR conversion, pass 2: writes the column indices (ascending per row) and
 * values of w's nonzeros into indices_out and data_out (nnz entries each),
 * at the offsets indptr from pass 1 (rows + 1 entries).
 * SP_ERR_VALUE: indptr does not describe w's nonzeros, bad sizes.
 */
sp_status sp_csr_fill_f32(const float *w, int64_t rows, int64_t cols, const int64_t *indptr, int64_t nnz,
                          int32_t *indices_out, float *data_out);

/**
 * y = W @ x for W in CSR form (indptr: rows + 1, indices and data: nnz
 * each, as scipy.sparse.csr_matrix; indices need not be sorted).
 * x: x_rows x batch floats; y: rows x batch floats (fully written).
 * SP_ERR_VALUE: x_rows != cols, indptr not non-decreasing from 0 to nnz,
 * a column index outside [0, cols), negative sizes.
 */
sp_status sp_csr_matmul_f32(int64_t rows, int64_t cols, const int64_t *indptr, const int32_t *indices,
                            const float *data, int64_t nnz, const float *x, int64_t x_rows, int64_t batch,
                            float *y);

/**
 * sp_csr_matmul_f32 with 16-bit column indices (cols <= 65536): 6 bytes per
 * nonzero instead of 8 for the one-vector product (batch == 1); wider
 * products widen the indices once per call. Same results.
 * SP_ERR_VALUE: as sp_csr_matmul_f32, or cols > 65536.
 */
sp_status sp_csr_matmul_u16_f32(int64_t rows, int64_t cols, const int64_t *indptr, const uint16_t *indices,
                                const float *data, int64_t nnz, const float *x, int64_t x_rows, int64_t batch,
                                float *y);

/**
 * The dense rows x cols matrix of a CSR matrix into out (duplicates summed).
 * SP_ERR_VALUE: as sp_csr_matmul_f32.
 */
sp_status sp_csr_to_dense_f32(int64_t rows, int64_t cols, const int64_t *indptr, const int32_t *indices,
                              const float *data, int64_t nnz, float *out);

/**
 * N:M compression of the C-order dense w (rows x cols): in each run of m
 * consecutive entries of a row, the n of largest |w| are kept (ties: the
 * lower index), in ascending order. values_out (float) and indices_out
 * (uint8, position inside the group) hold rows * cols / m * n entries each.
 * SP_ERR_VALUE: cols % m != 0, not 1 <= n <= m <= 255, NaN or Inf in w.
 */
sp_status sp_nm_compress_f32(const float *w, int64_t rows, int64_t cols, int64_t n, int64_t m,
                             float *values_out, uint8_t *indices_out);

/**
 * The N:M storage layout of runs of m elements (C order, run after run): from
 * each run, its marked entries (keep[i] != 0; at most n per run) filled up to n
 * with the run's first unmarked ones, in position order. values: runs * m
 * elements of element_bytes (1, 2, 4 or 8) each, copied as they are; stored_out:
 * runs * n elements; positions_out: runs * n positions in 0..m-1.
 * SP_ERR_VALUE: not 1 <= n < m <= 256, a bad element size, a run with more than n
 * marked entries.
 */
sp_status sp_nm_compact(const void *values, int64_t element_bytes, const uint8_t *keep, int64_t runs,
                        int64_t n, int64_t m, void *stored_out, uint8_t *positions_out);

/**
 * out[i] = w[i] * (keep[i] != 0) + 0 over count float32 entries (out may be w): pruned entries
 * and kept negative zeros become +0.0, bit-identical to NumPy's multiply by the mask then + 0.
 * SP_ERR_VALUE: count < 0, NULL pointers.
 */
sp_status sp_apply_mask_f32(const float *w, const uint8_t *keep, int64_t count, float *out);

/**
 * values[keep] as NumPy computes it: the count elements of values (element_bytes = 1, 2,
 * 4 or 8 each, copied as they are) whose keep flag is non-zero, in order, into kept_out
 * (room for `kept` elements). SP_ERR_VALUE: a bad element size, or a number of set
 * flags other than kept.
 */
sp_status sp_mask_compact(const void *values, int64_t element_bytes, const uint8_t *keep, int64_t count,
                          int64_t kept, void *kept_out);

/**
 * *count_out = rows * cols / m * n: the elements of values and of indices of an N:M
 * matrix, which the functions taking them read without a length (callers check their
 * arrays against it). SP_ERR_VALUE: bad layout (not 1 <= n <= m <= 255, cols % m != 0,
 * negative sizes); SP_ERR_MEMORY: rows * cols overflows.
 */
sp_status sp_nm_value_count(int64_t rows, int64_t cols, int64_t n, int64_t m, int64_t *count_out);

/**
 * y = W @ x for an N:M matrix (values, indices as from sp_nm_compress_f32, each of
 * sp_nm_value_count elements). SP_ERR_VALUE: bad layout or sizes, x_rows != cols, an index >= m.
 */
sp_status sp_nm_matmul_f32(int64_t rows, int64_t cols, int64_t n, int64_t m, const float *values,
                           const uint8_t *indices, const float *x, int64_t x_rows, int64_t batch, float *y);

/**
 * The matmul layout of an N:M matrix (NMPackedLayout in the Swift module): values
 * and indices regrouped in the order the product reads them. *bytes_out = its size.
 * SP_ERR_VALUE: bad layout; SP_ERR_MEMORY: a size that overflows.
 */
sp_status sp_nm_packed_bytes(int64_t rows, int64_t cols, int64_t n, int64_t m, int64_t *bytes_out);

/**
 * Fills packed_out (packed_bytes = sp_nm_packed_bytes) from values, indices as
 * from sp_nm_compress_f32. SP_ERR_VALUE: bad layout or sizes, an index >= m.
 */
sp_status sp_nm_pack(int64_t rows, int64_t cols, int64_t n, int64_t m, const float *values, const uint8_t *indices,
                     void *packed_out, int64_t packed_bytes);

/**
 * y = W @ x from the packed layout (sp_nm_pack): the sums of sp_nm_matmul_f32.
 * SP_ERR_VALUE: bad layout or sizes, x_rows != cols, an index >= m in packed;
 * SP_ERR_MEMORY: no room for the copy of x (cols x 64 floats).
 */
sp_status sp_nm_packed_matmul_f32(int64_t rows, int64_t cols, int64_t n, int64_t m, const void *packed,
                                  int64_t packed_bytes, const float *x, int64_t x_rows, int64_t batch, float *y);

/** The dense rows x cols matrix of an N:M matrix into out. Errors as sp_nm_matmul_f32. */
sp_status sp_nm_to_dense_f32(int64_t rows, int64_t cols, int64_t n, int64_t m, const float *values,
                             const uint8_t *indices, float *out);

/**
 * y = W @ x with W = scale[i] * (values[i, k] - zero_point[i]): int8 values
 * (rows x cols), float scale (rows), zero_point (rows int32, or NULL for 0).
 * x is quantized per column to 7-bit unsigned integers with a zero point
 * (see QuantizedMatmul in the Swift module) and the dot products are exact
 * integer arithmetic (AVX2 vpmaddubsw).
 * SP_ERR_VALUE: x_rows != cols, NaN or Inf in x, negative sizes.
 */
sp_status sp_quantized_matmul_i8(const int8_t *values, int64_t rows, int64_t cols, const float *scale,
                                 const int32_t *zero_point, const float *x, int64_t x_rows, int64_t batch,
                                 float *y);

/* ---- weight files ------------------------------------------------------- */

/*
 * safetensors files (https://github.com/huggingface/safetensors format):
 * 8 bytes little-endian header length N, N bytes of JSON, then the data.
 * Reading maps the file read-only and validates the whole header before
 * anything is returned; writing is streamed and atomic.
 *
 * dtype names are the format's own: "BOOL", "U8", "I8", "F8_E5M2",
 * "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "I64", "U64",
 * "F64". Data are little-endian, C order.
 *
 * Threads: an open file is read-only and may be used from several threads
 * at once (until it is closed); calls on one writer are serialized.
 */

/** An open safetensors file (opaque). */
typedef struct sp_safetensors_file sp_safetensors_file;
/** A safetensors file being written (opaque). */
typedef struct sp_safetensors_writer sp_safetensors_writer;

/** One tensor of a safetensors file. Strings are UTF-8 and need not be
 *  NUL-terminated when a length is given (names may contain NUL). */
typedef struct {
    const char *name;        /**< the tensor's name */
    int64_t name_length;     /**< bytes in name */
    const char *dtype;       /**< NUL-terminated dtype name, e.g. "F32" */
    int64_t ndim;            /**< number of dimensions (0 for a scalar) */
    const int64_t *shape;    /**< ndim dimensions (may be NULL when ndim == 0) */
    const void *data;        /**< nbytes bytes (may be NULL when nbytes == 0) */
    int64_t nbytes;          /**< dtype size * product(shape) */
} sp_tensor_record;

/**
 * Opens, memory-maps (read-only) and validates the safetensors file at the
 * NUL-terminated `path`; on success *file_out owns the mapping until
 * sp_safetensors_close. Validated: file length >= 8; header length N <=
 * 100,000,000 and 8 + N <= file size; the header starts with '{' and is
 * strict UTF-8 JSON (no duplicate keys); each tensor has exactly "dtype"
 * (a known name), "shape" (non-negative integers) and "data_offsets"
 * ([begin, end], begin <= end <= data size, end - begin = dtype size *
 * product(shape)); tensors neither overlap nor leave bytes uncovered;
 * "__metadata__", if present, maps strings to strings.
 * SP_ERR_VALUE: unreadable or invalid file (the message names the path and
 * the problem); SP_ERR_VALUE also when file_out or path is NULL.
 */
sp_status sp_safetensors_open(const char *path, sp_safetensors_file **file_out);

/** sp_safetensors_open_ex flag: memory-map the file (zero-copy `data`
 *  pointers). Without it the file is read on demand with pread. */
#define SP_SAFETENSORS_MMAP 1

/**
 * sp_safetensors_open with a choice of access. flags = SP_SAFETENSORS_MMAP
 * is sp_safetensors_open. flags = 0 reads only the header (with pread, no
 * mapping) and keeps the file open: records then have data = NULL and the
 * bytes come from sp_safetensors_read, so a file truncated or rewritten by
 * another process gives SP_ERR_VALUE (or the new bytes), never SIGBUS.
 * Non-regular files (FIFOs, sockets, devices, directories) are refused
 * without blocking. SP_ERR_VALUE as sp_safetensors_open; SP_ERR_MEMORY when
 * the header cannot be held in memory.
 */
sp_status sp_safetensors_open_ex(const char *path, int32_t flags, sp_safetensors_file **file_out);

/**
 * Copies the nbytes bytes of tensor `index` into `out` (exactly the
 * tensor's size), from the mapping or with pread. SP_ERR_VALUE: NULL
 * arguments, index out of range, nbytes not the tensor's size, or a failed
 * or short read (the file shrank since it was opened).
 */
sp_status sp_safetensors_read(const sp_safetensors_file *file, int64_t index, void *out, int64_t nbytes);

/** Unmaps and frees a file from sp_safetensors_open; NULL is ignored. Every
 *  pointer obtained from the file becomes invalid. */
void sp_safetensors_close(sp_safetensors_file *file);

/** The number of tensors in an open file (0 for NULL). */
int64_t sp_safetensors_tensor_count(const sp_safetensors_file *file);

/**
 * Describes tensor `index` (header order) of an open file. The strings, the
 * shape and `data` (pointing into the read-only mapping, possibly unaligned)
 * stay valid until sp_safetensors_close.
 * SP_ERR_VALUE: NULL arguments or index out of range.
 */
sp_status sp_safetensors_tensor(const sp_safetensors_file *file, int64_t index, sp_tensor_record *record_out);

/** The number of "__metadata__" entries of an open file (0 for NULL). */
int64_t sp_safetensors_metadata_count(const sp_safetensors_file *file);

/**
 * Metadata entry `index` (header order): key and value as UTF-8 with their
 * byte lengths, valid until sp_safetensors_close.
 * SP_ERR_VALUE: NULL arguments or index out of range.
 */
sp_status sp_safetensors_metadata(const sp_safetensors_file *file, int64_t index, const char **key_out,
                                  int64_t *key_length_out, const char **value_out, int64_t *value_length_out);

/**
 * Drops the memory pages of tensor `index` from the process's resident set
 * (madvise DONTNEED on the whole pages inside it). Its data stay readable
 * and are read from the file again when touched; used to stream a large file
 * tensor by tensor. SP_ERR_VALUE: NULL file or index out of range.
 */
sp_status sp_safetensors_release(const sp_safetensors_file *file, int64_t index);

/**
 * Starts writing a safetensors file to `path` (NUL-terminated). Nothing
 * appears at `path` until sp_safetensors_writer_commit succeeds. Tensor
 * data go to a hidden temporary file in the same directory, after
 * `header_reserve` bytes kept for the header (rounded up to a multiple of 8;
 * the header is padded with spaces to fill it). A header that outgrows the
 * reserve costs one extra copy of the data at commit, nothing else.
 * SP_ERR_VALUE: the directory is not writable, header_reserve outside
 * [0, 100,000,000], or a NULL argument.
 */
sp_status sp_safetensors_writer_create(const char *path, int64_t header_reserve, sp_safetensors_writer **writer_out);

/**
 * Appends one tensor (its name, dtype, shape and nbytes of data, copied).
 * SP_ERR_VALUE: unknown dtype, nbytes not matching dtype and shape, negative
 * dimension, empty/invalid-UTF-8/duplicate name or "__metadata__", writer
 * already committed, or a failed write (e.g. disk full).
 */
sp_status sp_safetensors_writer_add(sp_safetensors_writer *writer, const sp_tensor_record *tensor);

/** Sets a "__metadata__" string entry (UTF-8 with lengths); a repeated key
 *  replaces the earlier value. SP_ERR_VALUE: invalid UTF-8, closed writer. */
sp_status sp_safetensors_writer_set_metadata(sp_safetensors_writer *writer, const char *key, int64_t key_length,
                                             const char *value, int64_t value_length);

/**
 * Writes the header and the data to a temporary file beside `path`, fsyncs
 * it, renames it over `path` and fsyncs the directory. The writer is closed
 * afterwards whatever the outcome; on failure `path` is untouched.
 * SP_ERR_VALUE: I/O failure or a closed writer.
 */
sp_status sp_safetensors_writer_commit(sp_safetensors_writer *writer);

/** Frees a writer; an uncommitted file is discarded. NULL is ignored. */
void sp_safetensors_writer_free(sp_safetensors_writer *writer);

/* ---- cpu features ------------------------------------------------------ */

/**
 * 1 if the AVX-512 kernels run in this process (the CPU lists avx512f/bw/cd/dq/vl
 * in /proc/cpuinfo and in cpuid, and SWIFTPRUNE_DISABLE_AVX512 is unset or "0"),
 * else 0 (the portable AVX2 kernels run). Detected once per process.
 */
int32_t sp_cpu_has_avx512(void);

#ifdef __cplusplus
}
#endif

#endif /* SWIFTPRUNE_H */
