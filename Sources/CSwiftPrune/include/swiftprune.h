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

/* ---- library ----------------------------------------------------------- */

/** The library version, e.g. "0.1.0". Static storage; never NULL. */
const char *sp_version(void);

/**
 * The message of the last failed call made by this thread, or "" if none.
 * Valid until the next swiftprune call on the same thread.
 */
const char *sp_last_error(void);

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

/** Packs the low nibbles of n bytes two per byte, low nibble first:
 *  packed_out holds n/2 + n%2 bytes (the last high nibble is 0 for odd n). */
sp_status sp_quant_pack_nibbles(const uint8_t *values, int64_t n, uint8_t *packed_out);
/** Unpacks n values from n/2 + n%2 bytes; is_signed sign-extends each nibble (int8 out). */
sp_status sp_quant_unpack_nibbles(const uint8_t *packed, int64_t n, bool is_signed, uint8_t *values_out);

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
/** out[i] = centroids[indices[i]]. SP_ERR_VALUE: an index >= n_clusters. */
sp_status sp_cluster_lookup_u8(const uint8_t *indices, int64_t n, const float *centroids, int64_t n_clusters,
                               float *out);
/** As sp_cluster_lookup_u8 with uint16 indices. */
sp_status sp_cluster_lookup_u16(const uint16_t *indices, int64_t n, const float *centroids, int64_t n_clusters,
                                float *out);

/* ---- low-rank factorization -------------------------------------------- */

/* ---- tensor core: matmul, sparse and quantized kernels ------------------ */

/* ---- weight files ------------------------------------------------------- */

#ifdef __cplusplus
}
#endif

#endif /* SWIFTPRUNE_H */
