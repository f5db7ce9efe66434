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

#ifdef __cplusplus
}
#endif

#endif /* SWIFTPRUNE_H */
