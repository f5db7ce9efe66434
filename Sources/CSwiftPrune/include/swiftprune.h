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
 * Randomized truncated SVD (Halko-Martinsson-Tropp, as scikit-learn's
 * randomized_svd) of rank `rank` (0 <= rank <= min(m, n)) with `oversample`
 * extra test vectors (>= 0) and `power_iters` QR-normalized power iterations
 * (< 0: 7 if rank < 0.1 min(m, n), else 4). Deterministic for a given seed.
 * u_out: m*rank floats, s_out: rank floats, vt_out: rank*n floats.
 */
sp_status sp_randomized_svd_f32(const float *w, int64_t m, int64_t n, int64_t rank, int64_t oversample,
                                int64_t power_iters, uint64_t seed, float *u_out, float *s_out, float *vt_out);
/** As sp_randomized_svd_f32, for double weights (results are float). */
sp_status sp_randomized_svd_f64(const double *w, int64_t m, int64_t n, int64_t rank, int64_t oversample,
                                int64_t power_iters, uint64_t seed, float *u_out, float *s_out, float *vt_out);

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

/* ---- weight files ------------------------------------------------------- */

#ifdef __cplusplus
}
#endif

#endif /* SWIFTPRUNE_H */
