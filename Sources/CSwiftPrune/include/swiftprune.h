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

/* ---- weight files ------------------------------------------------------- */

#ifdef __cplusplus
}
#endif

#endif /* SWIFTPRUNE_H */
