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

/* ---- tensor core: matmul, sparse and quantized kernels ------------------ */

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
 * y = W @ x for an N:M matrix (values, indices as from sp_nm_compress_f32).
 * SP_ERR_VALUE: bad layout or sizes, x_rows != cols, an index >= m.
 */
sp_status sp_nm_matmul_f32(int64_t rows, int64_t cols, int64_t n, int64_t m, const float *values,
                           const uint8_t *indices, const float *x, int64_t x_rows, int64_t batch, float *y);

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

#ifdef __cplusplus
}
#endif

#endif /* SWIFTPRUNE_H */
