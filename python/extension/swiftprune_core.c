/*
 * swiftprune._core — the CPython extension over the C ABI (swiftprune.h).
 *
 * Thin and boring on purpose: it turns Python objects into contiguous NumPy
 * arrays of a supported dtype (converting once, here, when needed), allocates
 * every output with NumPy, releases the GIL around each Swift call and turns
 * sp_status codes into Python exceptions. No algorithm lives here.
 *
 * The file is split into one section per area of swiftprune.h; each section
 * ends with a <AREA>_METHODS macro that the method table at the bottom lists.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include "swiftprune.h"

/* ======================================================================== */
/* Shared helpers                                                            */
/* ======================================================================== */

/* Raises the Python exception for a failed status; returns NULL. */
static PyObject *raise_status(sp_status status) {
    const char *message = sp_last_error();
    switch (status) {
    case SP_ERR_VALUE: PyErr_SetString(PyExc_ValueError, message); break;
    case SP_ERR_TYPE: PyErr_SetString(PyExc_TypeError, message); break;
    case SP_ERR_MEMORY: PyErr_SetString(PyExc_MemoryError, message); break;
    case SP_ERR_OS: {
        /* OSError(errno, text) constructs the subclass for errno: FileNotFoundError,
         * IsADirectoryError, PermissionError, ... */
        PyObject *error = PyObject_CallFunction(PyExc_OSError, "is", (int)sp_last_errno(), message);
        if (error != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(error), error);
            Py_DECREF(error);
        }
        break;
    }
    default: PyErr_Format(PyExc_RuntimeError, "swiftprune internal error (%d): %s", (int)status, message); break;
    }
    return NULL;
}

/* Runs a statement (a Swift call) with the GIL released. Every call into
 * the library goes through this, even the cheap ones: the rule has no
 * exceptions, so no reviewer has to judge which calls are cheap. */
#define SP_NOGIL(statement)     \
    do {                        \
        Py_BEGIN_ALLOW_THREADS  \
        statement;              \
        Py_END_ALLOW_THREADS    \
    } while (0)

/* Runs a Swift call with the GIL released; `call` is an expression yielding sp_status. */
#define SP_CALL(status, call) SP_NOGIL(status = (call))

/* The TypeError for an array `name` whose dtype is not float16, float32 or float64. */
static void set_not_floating_error(PyArrayObject *any, const char *name) {
    PyObject *dtype_str = PyObject_Str((PyObject *)PyArray_DESCR(any));
    PyErr_Format(PyExc_TypeError, "%s must be a real floating-point array (float16, float32 or float64), got dtype %S",
                 name, dtype_str ? dtype_str : Py_None);
    Py_XDECREF(dtype_str);
}

/*
 * Returns a new reference to a C-contiguous, aligned array holding `obj`'s
 * values as float32 (for float16/float32 input) or float64 (for float64
 * input). Anything that is not a real floating array raises TypeError.
 * `*is_double` tells which. Converts (copies) only when needed.
 */
static PyArrayObject *as_float_array(PyObject *obj, const char *name, int *is_double) {
    PyArrayObject *any = (PyArrayObject *)PyArray_FROM_O(obj);
    if (any == NULL) return NULL;
    int type = PyArray_TYPE(any);
    int target;
    if (type == NPY_DOUBLE) {
        target = NPY_DOUBLE;
    } else if (type == NPY_FLOAT || type == NPY_HALF) {
        target = NPY_FLOAT;
    } else {
        set_not_floating_error(any, name);
        Py_DECREF(any);
        return NULL;
    }
    PyArrayObject *result = (PyArrayObject *)PyArray_FROM_OTF(
        (PyObject *)any, target, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    Py_DECREF(any);
    if (is_double) *is_double = (target == NPY_DOUBLE);
    return result;
}

/* A new uninitialized array of `like`'s shape and the given type. */
static PyArrayObject *empty_like_shape(PyArrayObject *like, int typenum) {
    return (PyArrayObject *)PyArray_EMPTY(PyArray_NDIM(like), PyArray_DIMS(like), typenum, 0);
}

/* 0 when the three new arrays all exist; else releases those that do and returns -1 (NumPy set the exception). */
static int all_three_allocated(PyArrayObject **a, PyArrayObject **b, PyArrayObject **c) {
    if (*a != NULL && *b != NULL && *c != NULL) return 0;
    Py_CLEAR(*a);
    Py_CLEAR(*b);
    Py_CLEAR(*c);
    return -1;
}

static PyArrayObject *quant_as_float_array_of(PyObject *obj, const char *name, int typenum);

/* ======================================================================== */
/* Precision dispatch and shaped kernels                                     */
/* ======================================================================== */

/*
 * Most Swift kernels come as sp_<name>_f32 and sp_<name>_f64, whose arguments
 * differ only in the element type of their arrays. SP_PRECISION is the one
 * place that picks between them: array arguments are passed as the `void *`
 * of PyArray_DATA, which C converts to either element type. Wrap it in
 * SP_CALL, so that the GIL is released around the call:
 *     SP_CALL(status, SP_PRECISION(is_double, sp_svd, PyArray_DATA(w), m, n, u, s, vt));
 */
#define SP_PRECISION(is_double, function, ...) \
    ((is_double) ? function##_f64(__VA_ARGS__) : function##_f32(__VA_ARGS__))

/* A scalar argument of a shaped kernel, written by PyArg_ParseTuple as its format says: d, L or p. */
typedef union {
    double d;
    long long L;
    int p;
} scalar_arg;

#define SHAPED_MAX_SCALARS 4

/* What a shaped kernel's Swift call gets: the converted weight, its shape, the scalars, the output. */
typedef struct {
    int is_double;
    const void *w;                     /* float32 or float64, C-contiguous */
    int64_t n, ndim, dims[NPY_MAXDIMS];
    scalar_arg arg[SHAPED_MAX_SCALARS]; /* the scalars after `w`, in format order */
    void *out;                         /* n elements of the kernel's out_type */
} shaped_args;

/*
 * A kernel that takes one float array `w` and some scalars and returns a new
 * array of w's shape: masks, casts. One table entry (and a one-line call) per
 * function; shaped_kernel_call does the rest, the same way for each.
 */
typedef struct {
    const char *format;                      /* PyArg_ParseTuple format: "O" (w), up to 4 of d/L/p, ":name" */
    int out_type;                            /* NumPy type of the output */
    int rank;                                /* the rank w must have, or -1 for any */
    const char *rank_message;                /* the ValueError when it has not: "<message>, got N dimension(s)" */
    sp_status (*call)(const shaped_args *a); /* the Swift call (float32 or float64 by a->is_double) */
} shaped_kernel;

static PyObject *shaped_kernel_call(const shaped_kernel *kernel, PyObject *args) {
    PyObject *w_obj;
    shaped_args a;
    memset(&a, 0, sizeof a);
    if (!PyArg_ParseTuple(args, kernel->format, &w_obj, &a.arg[0], &a.arg[1], &a.arg[2], &a.arg[3])) return NULL;
    PyArrayObject *w = as_float_array(w_obj, "w", &a.is_double);
    if (w == NULL) return NULL;
    PyArrayObject *out = NULL;
    if (kernel->rank >= 0 && PyArray_NDIM(w) != kernel->rank) {
        PyErr_Format(PyExc_ValueError, "%s, got %d dimension(s)", kernel->rank_message, PyArray_NDIM(w));
        goto error;
    }
    out = empty_like_shape(w, kernel->out_type);
    if (out == NULL) goto error;
    a.w = PyArray_DATA(w);
    a.n = (int64_t)PyArray_SIZE(w);
    a.ndim = PyArray_NDIM(w);
    for (int i = 0; i < PyArray_NDIM(w); i++) a.dims[i] = (int64_t)PyArray_DIM(w, i);
    a.out = PyArray_DATA(out);
    sp_status status;
    SP_CALL(status, kernel->call(&a));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(w);
    return (PyObject *)out;
error:
    Py_XDECREF(w);
    Py_XDECREF(out);
    return NULL;
}

/* Defines core_<name>(self, args) over the shaped kernel <name>_kernel. */
#define SHAPED_KERNEL_FUNCTION(name) \
    static PyObject *core_##name(PyObject *self, PyObject *args) { return shaped_kernel_call(&name##_kernel, args); }

/* ======================================================================== */
/* Library                                                                   */
/* ======================================================================== */

static PyObject *core_version(PyObject *self, PyObject *noargs) {
    return PyUnicode_FromString(sp_version());
}

static PyObject *core_set_num_threads(PyObject *self, PyObject *args) {
    long long n;
    if (!PyArg_ParseTuple(args, "L:set_num_threads", &n)) return NULL;
    sp_status status;
    SP_CALL(status, sp_set_num_threads((int64_t)n));
    if (status != SP_OK) return raise_status(status);
    Py_RETURN_NONE;
}

static PyObject *core_get_num_threads(PyObject *self, PyObject *noargs) {
    int64_t n;
    SP_NOGIL(n = sp_get_num_threads());
    return PyLong_FromLongLong((long long)n);
}

#define LIBRARY_METHODS                                                                  \
    {"version", core_version, METH_NOARGS, "The C library's version string."},          \
    {"set_num_threads", core_set_num_threads, METH_VARARGS, "Set the thread count."},   \
    {"get_num_threads", core_get_num_threads, METH_NOARGS, "The thread count in force."},

/* ======================================================================== */
/* Pruning                                                                   */
/* ======================================================================== */

static sp_status magnitude_mask_call(const shaped_args *a) {
    return SP_PRECISION(a->is_double, sp_magnitude_mask, a->w, a->n, a->arg[0].d, a->out);
}
static const shaped_kernel magnitude_mask_kernel = {"Od:magnitude_mask", NPY_BOOL, -1, NULL, magnitude_mask_call};
SHAPED_KERNEL_FUNCTION(magnitude_mask)

/* Copies an array's shape into int64_t dims[NPY_MAXDIMS]. */
static void pruning_shape(PyArrayObject *a, int64_t *dims) {
    for (int i = 0; i < PyArray_NDIM(a); i++) dims[i] = (int64_t)PyArray_DIM(a, i);
}

static PyObject *core_global_magnitude_masks(PyObject *self, PyObject *args) {
    PyObject *seq_obj;
    double sparsity;
    if (!PyArg_ParseTuple(args, "Od:global_magnitude_masks", &seq_obj, &sparsity)) return NULL;
    PyObject *seq = PySequence_Fast(seq_obj, "weights must be a sequence of arrays");
    if (seq == NULL) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    PyArrayObject **arrays = NULL;
    const void **pointers = NULL;
    bool **mask_pointers = NULL;
    int64_t *sizes = NULL;
    PyObject *masks = NULL;
    int any_double = 0;
    Py_ssize_t i;
    arrays = (PyArrayObject **)PyMem_Calloc(count + 1, sizeof *arrays);
    pointers = (const void **)PyMem_Calloc(count + 1, sizeof *pointers);
    mask_pointers = (bool **)PyMem_Calloc(count + 1, sizeof *mask_pointers);
    sizes = (int64_t *)PyMem_Calloc(count + 1, sizeof *sizes);
    masks = PyList_New(count);
    if (!arrays || !pointers || !mask_pointers || !sizes) { PyErr_NoMemory(); goto error; }
    if (masks == NULL) goto error;
    for (i = 0; i < count; i++) {
        char name[48];
        snprintf(name, sizeof name, "weights[%zd]", i);
        int is_double;
        arrays[i] = as_float_array(PySequence_Fast_GET_ITEM(seq, i), name, &is_double);
        if (arrays[i] == NULL) goto error;
        any_double |= is_double;
    }
    for (i = 0; i < count; i++) {
        if (any_double && PyArray_TYPE(arrays[i]) != NPY_DOUBLE) {
            /* float32 -> float64 is exact, so one dtype for all keeps the order. */
            PyArrayObject *wide = (PyArrayObject *)PyArray_FROM_OTF((PyObject *)arrays[i], NPY_DOUBLE,
                                                                   NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
            if (wide == NULL) goto error;
            Py_DECREF(arrays[i]);
            arrays[i] = wide;
        }
        PyArrayObject *mask = empty_like_shape(arrays[i], NPY_BOOL);
        if (mask == NULL) goto error;
        PyList_SET_ITEM(masks, i, (PyObject *)mask);
        pointers[i] = PyArray_DATA(arrays[i]);
        mask_pointers[i] = (bool *)PyArray_DATA(mask);
        sizes[i] = (int64_t)PyArray_SIZE(arrays[i]);
    }
    sp_status status;
    /* (void *): the pointer table converts to either precision's `const T *const *`. */
    SP_CALL(status, SP_PRECISION(any_double, sp_global_magnitude_masks, (void *)pointers, sizes, (int64_t)count,
                                 sparsity, (bool *const *)mask_pointers));
    if (status != SP_OK) { raise_status(status); goto error; }
    goto done;
error:
    Py_CLEAR(masks);
done:
    if (arrays) for (i = 0; i < count; i++) Py_XDECREF(arrays[i]);
    PyMem_Free(arrays);
    PyMem_Free(pointers);
    PyMem_Free(mask_pointers);
    PyMem_Free(sizes);
    Py_DECREF(seq);
    return masks;
}

static PyObject *core_random_mask(PyObject *self, PyObject *args) {
    Py_ssize_t n;
    double sparsity;
    unsigned long long seed;
    if (!PyArg_ParseTuple(args, "ndK:random_mask", &n, &sparsity, &seed)) return NULL;
    if (n < 0) { PyErr_SetString(PyExc_ValueError, "n must be >= 0"); return NULL; }
    npy_intp dims[1] = {(npy_intp)n};
    PyArrayObject *mask = (PyArrayObject *)PyArray_EMPTY(1, dims, NPY_BOOL, 0);
    if (mask == NULL) return NULL;
    sp_status status;
    SP_CALL(status, sp_random_mask((int64_t)n, sparsity, (uint64_t)seed, (bool *)PyArray_DATA(mask)));
    if (status != SP_OK) { Py_DECREF(mask); return raise_status(status); }
    return (PyObject *)mask;
}

static sp_status nm_mask_call(const shaped_args *a) {
    return SP_PRECISION(a->is_double, sp_nm_mask, a->w, a->dims, a->ndim, a->arg[0].L, a->arg[1].L, a->arg[2].L,
                        a->out);
}
static const shaped_kernel nm_mask_kernel = {"OLLL:nm_mask", NPY_BOOL, -1, NULL, nm_mask_call};
SHAPED_KERNEL_FUNCTION(nm_mask)

/* structured_mask(w, amount, axis, norm, per_slice): per_slice=1 gives one bool per slice. */
static PyObject *core_structured_mask(PyObject *self, PyObject *args) {
    PyObject *w_obj;
    double amount, norm;
    long long axis;
    int per_slice;
    if (!PyArg_ParseTuple(args, "OdLdp:structured_mask", &w_obj, &amount, &axis, &norm, &per_slice)) return NULL;
    int is_double;
    PyArrayObject *w = as_float_array(w_obj, "w", &is_double);
    if (w == NULL) return NULL;
    PyArrayObject *mask = NULL;
    int64_t dims[NPY_MAXDIMS];
    pruning_shape(w, dims);
    int64_t ndim = PyArray_NDIM(w);
    if (per_slice) {
        if (ndim == 0 || axis < -ndim || axis >= ndim) {
            PyErr_Format(PyExc_ValueError, "axis %lld is out of range for a tensor of rank %lld", axis, (long long)ndim);
            goto error;
        }
        npy_intp length[1] = {(npy_intp)dims[axis < 0 ? axis + ndim : axis]};
        mask = (PyArrayObject *)PyArray_EMPTY(1, length, NPY_BOOL, 0);
    } else {
        mask = empty_like_shape(w, NPY_BOOL);
    }
    if (mask == NULL) goto error;
    sp_status status;
    bool *out = (bool *)PyArray_DATA(mask);
    int64_t out_count = (int64_t)PyArray_SIZE(mask);
    const void *data = PyArray_DATA(w);
    if (per_slice) {
        SP_CALL(status, SP_PRECISION(is_double, sp_structured_keep, data, dims, ndim, amount, axis, norm, out, out_count));
    } else {
        SP_CALL(status, SP_PRECISION(is_double, sp_structured_mask, data, dims, ndim, amount, axis, norm, out));
    }
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(w);
    return (PyObject *)mask;
error:
    Py_XDECREF(w);
    Py_XDECREF(mask);
    return NULL;
}

static sp_status block_mask_call(const shaped_args *a) {
    return SP_PRECISION(a->is_double, sp_block_mask, a->w, a->dims[0], a->dims[1], a->arg[0].d, a->arg[1].L,
                        a->arg[2].L, a->out);
}
static const shaped_kernel block_mask_kernel = {"OdLL:block_mask", NPY_BOOL, 2, "block pruning needs a 2-D weight",
                                                block_mask_call};
SHAPED_KERNEL_FUNCTION(block_mask)

/* w and x as 2-D arrays of one floating dtype (float64 if either is). */
static int calibration_arrays(PyObject *w_obj, PyObject *x_obj, PyArrayObject **w, PyArrayObject **x, int *is_double) {
    int w_double, x_double;
    *w = as_float_array(w_obj, "w", &w_double);
    if (*w == NULL) return -1;
    *x = as_float_array(x_obj, "x", &x_double);
    if (*x == NULL) return -1;
    *is_double = w_double || x_double;
    PyArrayObject **narrow = (*is_double && !w_double) ? w : ((*is_double && !x_double) ? x : NULL);
    if (narrow != NULL) {
        PyArrayObject *wide = (PyArrayObject *)PyArray_FROM_OTF((PyObject *)*narrow, NPY_DOUBLE,
                                                               NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
        if (wide == NULL) return -1;
        Py_DECREF(*narrow);
        *narrow = wide;
    }
    if (PyArray_NDIM(*w) != 2) {
        PyErr_Format(PyExc_ValueError, "w must be 2-D (out, in), got %d dimension(s)", PyArray_NDIM(*w));
        return -1;
    }
    if (PyArray_NDIM(*x) != 2) {
        PyErr_Format(PyExc_ValueError, "x must be 2-D (samples, in), got %d dimension(s)", PyArray_NDIM(*x));
        return -1;
    }
    if (PyArray_DIM(*x, 1) != PyArray_DIM(*w, 1)) {
        PyErr_Format(PyExc_ValueError, "x has %zd features but w has %zd input columns (w is (out, in))",
                     (Py_ssize_t)PyArray_DIM(*x, 1), (Py_ssize_t)PyArray_DIM(*w, 1));
        return -1;
    }
    return 0;
}

static PyObject *core_wanda_mask(PyObject *self, PyObject *args) {
    PyObject *w_obj, *x_obj;
    double sparsity;
    if (!PyArg_ParseTuple(args, "OOd:wanda_mask", &w_obj, &x_obj, &sparsity)) return NULL;
    PyArrayObject *w = NULL, *x = NULL, *mask = NULL;
    int is_double;
    if (calibration_arrays(w_obj, x_obj, &w, &x, &is_double) < 0) goto error;
    mask = empty_like_shape(w, NPY_BOOL);
    if (mask == NULL) goto error;
    int64_t rows = PyArray_DIM(w, 0), columns = PyArray_DIM(w, 1), samples = PyArray_DIM(x, 0);
    sp_status status;
    SP_CALL(status, SP_PRECISION(is_double, sp_wanda_mask, PyArray_DATA(w), rows, columns, PyArray_DATA(x), samples,
                                 sparsity, (bool *)PyArray_DATA(mask)));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(w);
    Py_DECREF(x);
    return (PyObject *)mask;
error:
    Py_XDECREF(w);
    Py_XDECREF(x);
    Py_XDECREF(mask);
    return NULL;
}

/* sparsegpt(w, x, sparsity, n, m, block_size, damp) -> array of w's dtype (float32 or float64) */
static PyObject *core_sparsegpt(PyObject *self, PyObject *args) {
    PyObject *w_obj, *x_obj;
    double sparsity, damp;
    long long n, m, block_size;
    if (!PyArg_ParseTuple(args, "OOdLLLd:sparsegpt", &w_obj, &x_obj, &sparsity, &n, &m, &block_size, &damp)) return NULL;
    PyArrayObject *w = NULL, *x = NULL, *out = NULL;
    int is_double;
    if (calibration_arrays(w_obj, x_obj, &w, &x, &is_double) < 0) goto error;
    out = empty_like_shape(w, is_double ? NPY_DOUBLE : NPY_FLOAT);
    if (out == NULL) goto error;
    int64_t rows = PyArray_DIM(w, 0), columns = PyArray_DIM(w, 1), samples = PyArray_DIM(x, 0);
    sp_status status;
    SP_CALL(status, SP_PRECISION(is_double, sp_sparsegpt, PyArray_DATA(w), rows, columns, PyArray_DATA(x), samples,
                                 sparsity, n, m, block_size, damp, PyArray_DATA(out)));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(w);
    Py_DECREF(x);
    return (PyObject *)out;
error:
    Py_XDECREF(w);
    Py_XDECREF(x);
    Py_XDECREF(out);
    return NULL;
}

/* h as a C-contiguous float64 (n, n) array for a call that only reads it (a new reference; no copy when h
   already is one). */
static PyArrayObject *hessian_view(PyObject *obj, int64_t n) {
    PyArrayObject *h = quant_as_float_array_of(obj, "h", NPY_FLOAT64);
    if (h == NULL) return NULL;
    if (PyArray_NDIM(h) != 2 || PyArray_DIM(h, 0) != n || PyArray_DIM(h, 1) != n) {
        PyErr_Format(PyExc_ValueError, "the Hessian must be (%lld, %lld), the weight's input width squared",
                     (long long)n, (long long)n);
        Py_DECREF(h);
        return NULL;
    }
    return h;
}

/* w as a C-contiguous float32 (out, in) array (rounded to float32, the precision the Hessian-based methods run
   in) and h as its (in, in) float64 Hessian view (hessian_view); 0, or -1 with an exception and both NULL. The
   ValueError for a w that is not 2-D names `method`. */
static int float32_weight_and_hessian(PyObject *w_obj, PyObject *h_obj, const char *method, PyArrayObject **w,
                                      PyArrayObject **h) {
    *h = NULL;
    *w = quant_as_float_array_of(w_obj, "w", NPY_FLOAT32);
    if (*w == NULL) return -1;
    if (PyArray_NDIM(*w) != 2) {
        PyErr_Format(PyExc_ValueError, "%s needs w of shape (out, in)", method);
        Py_CLEAR(*w);
        return -1;
    }
    *h = hessian_view(h_obj, (int64_t)PyArray_DIM(*w, 1));
    if (*h == NULL) {
        Py_CLEAR(*w);
        return -1;
    }
    return 0;
}

/* Whether the bytes of two C-contiguous arrays overlap (a scratch written by Swift must not be an input). */
static int arrays_overlap(PyArrayObject *a, PyArrayObject *b) {
    const char *a0 = (const char *)PyArray_DATA(a), *b0 = (const char *)PyArray_DATA(b);
    return PyArray_NBYTES(a) > 0 && PyArray_NBYTES(b) > 0 && a0 < b0 + PyArray_NBYTES(b) && b0 < a0 + PyArray_NBYTES(a);
}

/* hessian_accumulate(x, h[, scratch]): h += x^T x in place; x (samples, features) float, h a writeable
   C-contiguous float64 (features, features) ndarray (an internal buffer of HessianAccumulator). scratch, when
   given, is a writeable C-contiguous array of at least features^2 elements, float64 for float64 x and float32
   otherwise, reused by the caller across batches (its contents are overwritten). */
static PyObject *core_hessian_accumulate(PyObject *self, PyObject *args) {
    PyObject *x_obj, *h_obj, *scratch_obj = Py_None;
    if (!PyArg_ParseTuple(args, "OO|O:hessian_accumulate", &x_obj, &h_obj, &scratch_obj)) return NULL;
    if (!PyArray_Check(h_obj) || PyArray_TYPE((PyArrayObject *)h_obj) != NPY_FLOAT64 ||
        !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)h_obj) || !PyArray_ISWRITEABLE((PyArrayObject *)h_obj) ||
        PyArray_NDIM((PyArrayObject *)h_obj) != 2) {
        PyErr_SetString(PyExc_TypeError, "h must be a writeable C-contiguous 2-D float64 array");
        return NULL;
    }
    PyArrayObject *h = (PyArrayObject *)h_obj;
    int is_double;
    PyArrayObject *x = as_float_array(x_obj, "x", &is_double);
    if (x == NULL) return NULL;
    if (PyArray_NDIM(x) != 2 || PyArray_DIM(x, 1) != PyArray_DIM(h, 0) || PyArray_DIM(h, 0) != PyArray_DIM(h, 1)) {
        PyErr_SetString(PyExc_ValueError, "hessian_accumulate needs x (samples, features) and h (features, features)");
        Py_DECREF(x);
        return NULL;
    }
    int64_t samples = PyArray_DIM(x, 0), features = PyArray_DIM(x, 1);
    PyArrayObject *scratch = NULL;
    if (scratch_obj != Py_None) {
        if (!PyArray_Check(scratch_obj) ||
            PyArray_TYPE((PyArrayObject *)scratch_obj) != (is_double ? NPY_FLOAT64 : NPY_FLOAT32) ||
            !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)scratch_obj) ||
            !PyArray_ISWRITEABLE((PyArrayObject *)scratch_obj)) {
            PyErr_SetString(PyExc_TypeError, is_double
                ? "scratch must be a writeable C-contiguous float64 array (x is float64)"
                : "scratch must be a writeable C-contiguous float32 array (x is float32)");
            Py_DECREF(x);
            return NULL;
        }
        scratch = (PyArrayObject *)scratch_obj;
        if (arrays_overlap(scratch, x) || arrays_overlap(scratch, h)) {
            PyErr_SetString(PyExc_ValueError, "scratch must not share memory with x or h");
            Py_DECREF(x);
            return NULL;
        }
    }
    sp_status status;
    if (scratch != NULL) {
        int64_t scratch_count = (int64_t)PyArray_SIZE(scratch);
        if (is_double) {
            SP_CALL(status, sp_hessian_accumulate_scratch_f64((const double *)PyArray_DATA(x), samples, features,
                                                              (double *)PyArray_DATA(h), (double *)PyArray_DATA(scratch),
                                                              scratch_count));
        } else {
            SP_CALL(status, sp_hessian_accumulate_scratch_f32((const float *)PyArray_DATA(x), samples, features,
                                                              (double *)PyArray_DATA(h), (float *)PyArray_DATA(scratch),
                                                              scratch_count));
        }
    } else if (is_double) {
        SP_CALL(status, sp_hessian_accumulate_f64((const double *)PyArray_DATA(x), samples, features, (double *)PyArray_DATA(h)));
    } else {
        SP_CALL(status, sp_hessian_accumulate_f32((const float *)PyArray_DATA(x), samples, features, (double *)PyArray_DATA(h)));
    }
    Py_DECREF(x);
    if (status != SP_OK) { raise_status(status); return NULL; }
    Py_RETURN_NONE;
}

/* sparsegpt_hessian(w, h, sparsity, n, m, block_size, damp) -> float32 array (h is only read; w is rounded to
   float32, the precision SparseGPT runs in) */
static PyObject *core_sparsegpt_hessian(PyObject *self, PyObject *args) {
    PyObject *w_obj, *h_obj;
    double sparsity, damp;
    long long n, m, block_size;
    if (!PyArg_ParseTuple(args, "OOdLLLd:sparsegpt_hessian", &w_obj, &h_obj, &sparsity, &n, &m, &block_size, &damp))
        return NULL;
    PyArrayObject *w = NULL, *h = NULL, *out = NULL;
    if (float32_weight_and_hessian(w_obj, h_obj, "sparsegpt", &w, &h) < 0) return NULL;
    out = empty_like_shape(w, NPY_FLOAT32);
    if (out == NULL) goto error;
    sp_status status;
    SP_CALL(status, sp_sparsegpt_hessian_f32((const float *)PyArray_DATA(w), PyArray_DIM(w, 0), PyArray_DIM(w, 1),
                                             (const double *)PyArray_DATA(h), sparsity, n, m, block_size, damp,
                                             (float *)PyArray_DATA(out)));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(w);
    Py_DECREF(h);
    return (PyObject *)out;
error:
    Py_XDECREF(w);
    Py_XDECREF(h);
    Py_XDECREF(out);
    return NULL;
}

/* Returns a new reference to `obj` as a C-contiguous float32 array; any other dtype is a TypeError
 * (the streaming statistics are defined on float32 keys, so nothing is converted silently). */
static PyArrayObject *as_float32_exact(PyObject *obj, const char *name) {
    PyArrayObject *any = (PyArrayObject *)PyArray_FROM_O(obj);
    if (any == NULL) return NULL;
    if (PyArray_TYPE(any) != NPY_FLOAT) {
        PyObject *dtype_str = PyObject_Str((PyObject *)PyArray_DESCR(any));
        PyErr_Format(PyExc_TypeError, "%s must be a float32 array, got dtype %S", name, dtype_str ? dtype_str : Py_None);
        Py_XDECREF(dtype_str);
        Py_DECREF(any);
        return NULL;
    }
    PyArrayObject *result = (PyArrayObject *)PyArray_FROM_OTF((PyObject *)any, NPY_FLOAT, NPY_ARRAY_IN_ARRAY);
    Py_DECREF(any);
    return result;
}

static PyObject *core_magnitude_histogram(PyObject *self, PyObject *args) {
    PyObject *w_obj;
    unsigned long long low;
    int shift;
    long long bins;
    if (!PyArg_ParseTuple(args, "OKiL:magnitude_histogram", &w_obj, &low, &shift, &bins)) return NULL;
    if (low > 0x7FFFFFFFULL) { PyErr_SetString(PyExc_ValueError, "low must be a 31-bit magnitude key"); return NULL; }
    if (bins < 1 || bins > (1LL << 24)) { PyErr_Format(PyExc_ValueError, "bins must be in 1..2^24, got %lld", bins); return NULL; }
    PyArrayObject *w = as_float32_exact(w_obj, "w");
    if (w == NULL) return NULL;
    npy_intp dims[1] = {(npy_intp)bins};
    PyArrayObject *counts = (PyArrayObject *)PyArray_EMPTY(1, dims, NPY_INT64, 0);
    if (counts == NULL) { Py_DECREF(w); return NULL; }
    uint32_t low_bits = 0;
    int64_t nonfinite = 0;
    sp_status status;
    SP_CALL(status, sp_magnitude_histogram_f32((const float *)PyArray_DATA(w), (int64_t)PyArray_SIZE(w), (uint32_t)low,
                                               (int32_t)shift, (int64_t)bins, (int64_t *)PyArray_DATA(counts),
                                               &low_bits, &nonfinite));
    Py_DECREF(w);
    if (status != SP_OK) { Py_DECREF(counts); return raise_status(status); }
    return Py_BuildValue("NkL", (PyObject *)counts, (unsigned long)low_bits, (long long)nonfinite);
}

static PyObject *core_magnitude_threshold_mask(PyObject *self, PyObject *args) {
    PyObject *w_obj;
    unsigned long long threshold;
    long long pruned_ties;
    if (!PyArg_ParseTuple(args, "OKL:magnitude_threshold_mask", &w_obj, &threshold, &pruned_ties)) return NULL;
    if (threshold > 0x7FFFFFFFULL) { PyErr_SetString(PyExc_ValueError, "threshold must be a 31-bit magnitude key"); return NULL; }
    PyArrayObject *w = as_float32_exact(w_obj, "w");
    if (w == NULL) return NULL;
    PyArrayObject *mask = empty_like_shape(w, NPY_BOOL);
    if (mask == NULL) { Py_DECREF(w); return NULL; }
    sp_status status;
    SP_CALL(status, sp_magnitude_threshold_mask_f32((const float *)PyArray_DATA(w), (int64_t)PyArray_SIZE(w),
                                                    (uint32_t)threshold, (int64_t)pruned_ties, (bool *)PyArray_DATA(mask)));
    Py_DECREF(w);
    if (status != SP_OK) { Py_DECREF(mask); return raise_status(status); }
    return (PyObject *)mask;
}

#define PRUNING_STREAMING_METHODS \
    {"magnitude_histogram", core_magnitude_histogram, METH_VARARGS, \
     "magnitude_histogram(w_f32, low, shift, bins) -> (int64 counts, low_bits, nonfinite)"}, \
    {"magnitude_threshold_mask", core_magnitude_threshold_mask, METH_VARARGS, \
     "magnitude_threshold_mask(w_f32, threshold_key, pruned_ties) -> bool array"},

#define PRUNING_CALIBRATION_METHODS \
    {"wanda_mask", core_wanda_mask, METH_VARARGS, "wanda_mask(w, x, sparsity) -> bool array"}, \
    {"sparsegpt", core_sparsegpt, METH_VARARGS, "sparsegpt(w, x, sparsity, n, m, block_size, damp) -> array"}, \
    {"hessian_accumulate", core_hessian_accumulate, METH_VARARGS, "hessian_accumulate(x, h[, scratch]): h += x^T x in place"}, \
    {"sparsegpt_hessian", core_sparsegpt_hessian, METH_VARARGS, \
     "sparsegpt_hessian(w, h, sparsity, n, m, block_size, damp) -> float32 array"},

#define PRUNING_METHODS \
    {"magnitude_mask", core_magnitude_mask, METH_VARARGS, "magnitude_mask(w, sparsity) -> bool array"}, \
    {"global_magnitude_masks", core_global_magnitude_masks, METH_VARARGS, "global_magnitude_masks(list, sparsity) -> list of bool arrays"}, \
    {"random_mask", core_random_mask, METH_VARARGS, "random_mask(n, sparsity, seed) -> 1-D bool array"}, \
    {"nm_mask", core_nm_mask, METH_VARARGS, "nm_mask(w, n, m, axis) -> bool array"}, \
    {"structured_mask", core_structured_mask, METH_VARARGS, "structured_mask(w, amount, axis, norm, per_slice) -> bool array"}, \
    {"block_mask", core_block_mask, METH_VARARGS, "block_mask(w, sparsity, block_rows, block_columns) -> bool array"}, \
    PRUNING_CALIBRATION_METHODS \
    PRUNING_STREAMING_METHODS

/* ======================================================================== */
/* Quantization                                                              */
/* ======================================================================== */

/* Parses an optional axis (None or int) into has_axis / axis. */
static int quant_parse_optional_axis(PyObject *obj, bool *has_axis, int64_t *axis) {
    if (obj == Py_None) {
        *has_axis = false;
        *axis = 0;
        return 0;
    }
    long long value = PyLong_AsLongLong(obj);
    if (value == -1 && PyErr_Occurred()) return -1;
    *has_axis = true;
    *axis = (int64_t)value;
    return 0;
}

/* A new array of `ndim` extents taken from an int64 shape. */
static PyArrayObject *quant_empty_from_shape(int ndim, const int64_t *shape, int typenum) {
    npy_intp dims[NPY_MAXDIMS];
    for (int i = 0; i < ndim; i++) dims[i] = (npy_intp)shape[i];
    return (PyArrayObject *)PyArray_EMPTY(ndim, dims, typenum, 0);
}

/* The outputs of a row-wise grouped quantization of the 2-D `w` (GPTQ and its joint SparseGPT form): values of
   w's shape, int8 when symmetric and uint8 otherwise; a float32 scale and a zero point of the values' type per row
   and group (sp_quant_scale_shape, axis 0). 0, or -1 with an exception and all three NULL. */
static int quant_new_row_outputs(PyArrayObject *w, int symmetric, long long group_size, PyArrayObject **values,
                                 PyArrayObject **scale, PyArrayObject **zero_point) {
    *values = *scale = *zero_point = NULL;
    int64_t shape[2] = {(int64_t)PyArray_DIM(w, 0), (int64_t)PyArray_DIM(w, 1)}, scale_shape[2];
    sp_status status;
    SP_CALL(status, sp_quant_scale_shape(shape, 2, true, 0, (int64_t)group_size, scale_shape));
    if (status != SP_OK) { raise_status(status); return -1; }
    int int_type = symmetric ? NPY_INT8 : NPY_UINT8;
    *values = empty_like_shape(w, int_type);
    *scale = quant_empty_from_shape(2, scale_shape, NPY_FLOAT32);
    *zero_point = quant_empty_from_shape(2, scale_shape, int_type);
    return all_three_allocated(values, scale, zero_point);
}

static PyObject *core_quant_quantize(PyObject *self, PyObject *args) {
    PyObject *w_obj, *axis_obj, *out_obj = Py_None;
    long long bits, group_size;
    int symmetric, method;
    double percentile;
    if (!PyArg_ParseTuple(args, "OLpOLid|O:quantize", &w_obj, &bits, &symmetric, &axis_obj, &group_size, &method,
                          &percentile, &out_obj))
        return NULL;
    bool has_axis;
    int64_t axis;
    if (quant_parse_optional_axis(axis_obj, &has_axis, &axis) < 0) return NULL;
    int is_double;
    PyArrayObject *values = NULL, *scale = NULL, *zero_point = NULL;
    PyArrayObject *w = as_float_array(w_obj, "w", &is_double);
    if (w == NULL) return NULL;
    int ndim = PyArray_NDIM(w);
    int64_t shape[NPY_MAXDIMS], scale_shape[NPY_MAXDIMS];
    for (int i = 0; i < ndim; i++) shape[i] = (int64_t)PyArray_DIM(w, i);
    sp_status status;
    SP_CALL(status, sp_quant_scale_shape(shape, ndim, has_axis, axis, (int64_t)group_size, scale_shape));
    if (status != SP_OK) { raise_status(status); goto error; }
    int int_type = symmetric ? NPY_INT8 : NPY_UINT8;
    if (out_obj == Py_None) {
        values = empty_like_shape(w, int_type);
    } else {
        /* A caller's buffer (NumPy's out=): no fresh pages for the kernel to zero on first touch. */
        if (!PyArray_Check(out_obj) || PyArray_TYPE((PyArrayObject *)out_obj) != int_type) {
            PyErr_Format(PyExc_TypeError, "out must be a numpy %s array", symmetric ? "int8" : "uint8");
            goto error;
        }
        values = (PyArrayObject *)out_obj;
        Py_INCREF(values);
        if (!PyArray_IS_C_CONTIGUOUS(values) || !PyArray_ISWRITEABLE(values) || !PyArray_SAMESHAPE(values, w)) {
            PyErr_SetString(PyExc_ValueError, "out must be a writeable C-contiguous array of w's shape");
            goto error;
        }
        const char *o0 = PyArray_BYTES(values), *w0 = PyArray_BYTES(w);
        if (PyArray_NBYTES(values) > 0 && PyArray_NBYTES(w) > 0 && o0 < w0 + PyArray_NBYTES(w) &&
            w0 < o0 + PyArray_NBYTES(values)) {
            PyErr_SetString(PyExc_ValueError, "out must not share memory with w");
            goto error;
        }
    }
    scale = quant_empty_from_shape(ndim, scale_shape, NPY_FLOAT32);
    zero_point = quant_empty_from_shape(ndim, scale_shape, int_type);
    if (values == NULL || scale == NULL || zero_point == NULL) goto error;
    int64_t n_scales = (int64_t)PyArray_SIZE(scale);
    SP_CALL(status, SP_PRECISION(is_double, sp_quant_quantize, PyArray_DATA(w), shape, ndim, (int64_t)bits, symmetric,
                                 has_axis, axis, (int64_t)group_size, method, percentile, PyArray_DATA(values),
                                 (float *)PyArray_DATA(scale), PyArray_DATA(zero_point), n_scales));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(w);
    return Py_BuildValue("(NNN)", values, scale, zero_point);
error:
    Py_XDECREF(w);
    Py_XDECREF(values);
    Py_XDECREF(scale);
    Py_XDECREF(zero_point);
    return NULL;
}

static PyObject *core_quant_dequantize(PyObject *self, PyObject *args) {
    PyObject *values_obj, *axis_obj, *scale_obj, *zero_point_obj, *out_obj = Py_None;
    long long group_size;
    int symmetric;
    if (!PyArg_ParseTuple(args, "OpOLOO|O:dequantize", &values_obj, &symmetric, &axis_obj, &group_size, &scale_obj,
                          &zero_point_obj, &out_obj))
        return NULL;
    bool has_axis;
    int64_t axis;
    if (quant_parse_optional_axis(axis_obj, &has_axis, &axis) < 0) return NULL;
    int int_type = symmetric ? NPY_INT8 : NPY_UINT8;
    PyArrayObject *values = NULL, *scale = NULL, *zero_point = NULL, *out = NULL;
    values = (PyArrayObject *)PyArray_FROM_OTF(values_obj, int_type, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    scale = (PyArrayObject *)PyArray_FROM_OTF(scale_obj, NPY_FLOAT32, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    zero_point = (PyArrayObject *)PyArray_FROM_OTF(zero_point_obj, int_type, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    if (values == NULL || scale == NULL || zero_point == NULL) goto error;
    if (PyArray_SIZE(scale) != PyArray_SIZE(zero_point)) {
        PyErr_SetString(PyExc_ValueError, "scale and zero_point must have the same number of elements");
        goto error;
    }
    int ndim = PyArray_NDIM(values);
    int64_t shape[NPY_MAXDIMS];
    for (int i = 0; i < ndim; i++) shape[i] = (int64_t)PyArray_DIM(values, i);
    if (out_obj == Py_None) {
        out = empty_like_shape(values, NPY_FLOAT32);
        if (out == NULL) goto error;
    } else {
        if (!PyArray_Check(out_obj) || PyArray_TYPE((PyArrayObject *)out_obj) != NPY_FLOAT32) {
            PyErr_SetString(PyExc_TypeError, "out must be a float32 numpy array");
            goto error;
        }
        out = (PyArrayObject *)out_obj;
        Py_INCREF(out);
        if (!PyArray_IS_C_CONTIGUOUS(out) || !PyArray_ISWRITEABLE(out) ||
            !PyArray_SAMESHAPE(out, values)) {
            PyErr_SetString(PyExc_ValueError, "out must be a writeable C-contiguous array of the values' shape");
            goto error;
        }
    }
    sp_status status;
    SP_CALL(status, sp_quant_dequantize(PyArray_DATA(values), symmetric, shape, ndim, has_axis, axis,
                                        (int64_t)group_size, (const float *)PyArray_DATA(scale),
                                        PyArray_DATA(zero_point), (int64_t)PyArray_SIZE(scale),
                                        (float *)PyArray_DATA(out)));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(values);
    Py_DECREF(scale);
    Py_DECREF(zero_point);
    return (PyObject *)out;
error:
    Py_XDECREF(values);
    Py_XDECREF(scale);
    Py_XDECREF(zero_point);
    Py_XDECREF(out);
    return NULL;
}

static PyObject *core_quant_pack_bits(PyObject *self, PyObject *args) {
    PyObject *values_obj;
    int bits;
    if (!PyArg_ParseTuple(args, "Oi:pack_bits", &values_obj, &bits)) return NULL;
    if (bits < 1 || bits > 8) {
        PyErr_Format(PyExc_ValueError, "bits must be in 1..8, got %d", bits);
        return NULL;
    }
    PyArrayObject *values = NULL, *packed = NULL;
    values = (PyArrayObject *)PyArray_FROM_OTF(values_obj, NPY_UINT8, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    if (values == NULL) return NULL;
    int64_t n = (int64_t)PyArray_SIZE(values);
    if (n > (INT64_MAX - 7) / 8) {
        PyErr_SetString(PyExc_ValueError, "too many values to pack");
        goto error;
    }
    npy_intp dims[1] = {(npy_intp)((n * bits + 7) / 8)};
    packed = (PyArrayObject *)PyArray_EMPTY(1, dims, NPY_UINT8, 0);
    if (packed == NULL) goto error;
    sp_status status;
    SP_CALL(status, sp_quant_pack_bits((const uint8_t *)PyArray_DATA(values), n, (int32_t)bits,
                                       (uint8_t *)PyArray_DATA(packed)));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(values);
    return (PyObject *)packed;
error:
    Py_XDECREF(values);
    Py_XDECREF(packed);
    return NULL;
}

static PyObject *core_quant_unpack_bits(PyObject *self, PyObject *args) {
    PyObject *packed_obj;
    long long n;
    int bits, is_signed;
    if (!PyArg_ParseTuple(args, "OLip:unpack_bits", &packed_obj, &n, &bits, &is_signed)) return NULL;
    if (n < 0 || n > (INT64_MAX - 7) / 8) {
        PyErr_Format(PyExc_ValueError, "count must be in [0, 2**60), got %lld", n);
        return NULL;
    }
    if (bits < 1 || bits > 8) {
        PyErr_Format(PyExc_ValueError, "bits must be in 1..8, got %d", bits);
        return NULL;
    }
    PyArrayObject *packed = NULL, *values = NULL;
    packed = (PyArrayObject *)PyArray_FROM_OTF(packed_obj, NPY_UINT8, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    if (packed == NULL) return NULL;
    long long need = (n * bits + 7) / 8;
    if ((long long)PyArray_SIZE(packed) != need) {
        PyErr_Format(PyExc_ValueError, "%lld values of %d bits need %lld packed bytes, got %lld", n, bits, need,
                     (long long)PyArray_SIZE(packed));
        goto error;
    }
    npy_intp dims[1] = {(npy_intp)n};
    values = (PyArrayObject *)PyArray_EMPTY(1, dims, is_signed ? NPY_INT8 : NPY_UINT8, 0);
    if (values == NULL) goto error;
    sp_status status;
    SP_CALL(status, sp_quant_unpack_bits((const uint8_t *)PyArray_DATA(packed), (int64_t)n, (int32_t)bits, is_signed,
                                         (uint8_t *)PyArray_DATA(values)));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(packed);
    return (PyObject *)values;
error:
    Py_XDECREF(packed);
    Py_XDECREF(values);
    return NULL;
}

static sp_status cast_call(const shaped_args *a) {
    return a->arg[0].p ? SP_PRECISION(a->is_double, sp_cast_bfloat16, a->w, a->n, a->out)
                       : SP_PRECISION(a->is_double, sp_cast_float16, a->w, a->n, a->out);
}
static const shaped_kernel cast_kernel = {"Op:cast", NPY_UINT16, -1, NULL, cast_call};
SHAPED_KERNEL_FUNCTION(cast)

/* A real floating array (see as_float_array) converted to `typenum`
 * (NPY_FLOAT32 or NPY_FLOAT64), C-contiguous. */
static PyArrayObject *quant_as_float_array_of(PyObject *obj, const char *name, int typenum) {
    int is_double;
    PyArrayObject *any = as_float_array(obj, name, &is_double);
    if (any == NULL) return NULL;
    if ((typenum == NPY_FLOAT64) == (is_double != 0)) return any;
    PyArrayObject *result = (PyArrayObject *)PyArray_FROM_OTF((PyObject *)any, typenum,
                                                              NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    Py_DECREF(any);
    return result;
}

/* The arguments (w, n_clusters, init, max_iter, seed) of cluster_fit and cluster_fit_rows as `format` spells them,
   n_clusters in 1..65536; returns w as a C-contiguous float32 array (a new reference), or NULL with an exception. */
static PyArrayObject *parse_cluster_fit(PyObject *args, const char *format, long long *n_clusters, int *init,
                                        long long *max_iter, unsigned long long *seed) {
    PyObject *w_obj;
    if (!PyArg_ParseTuple(args, format, &w_obj, n_clusters, init, max_iter, seed)) return NULL;
    if (*n_clusters < 1 || *n_clusters > 65536) {
        PyErr_Format(PyExc_ValueError, "n_clusters must be in 1..65536, got %lld", *n_clusters);
        return NULL;
    }
    return quant_as_float_array_of(w_obj, "w", NPY_FLOAT32);
}

static PyObject *core_cluster_fit(PyObject *self, PyObject *args) {
    long long n_clusters, max_iter;
    unsigned long long seed;
    int init;
    PyArrayObject *centroids = NULL;
    PyArrayObject *w = parse_cluster_fit(args, "OLiLK:cluster_fit", &n_clusters, &init, &max_iter, &seed);
    if (w == NULL) return NULL;
    npy_intp dims[1] = {(npy_intp)n_clusters};
    centroids = (PyArrayObject *)PyArray_EMPTY(1, dims, NPY_FLOAT32, 0);
    if (centroids == NULL) goto error;
    int64_t iterations = 0;
    sp_status status;
    SP_CALL(status, sp_cluster_fit_f32((const float *)PyArray_DATA(w), (int64_t)PyArray_SIZE(w), (int64_t)n_clusters,
                                       init, (int64_t)max_iter, (uint64_t)seed, (float *)PyArray_DATA(centroids),
                                       &iterations));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(w);
    return Py_BuildValue("(NL)", centroids, (long long)iterations);
error:
    Py_XDECREF(w);
    Py_XDECREF(centroids);
    return NULL;
}

/* cluster_fit_rows(w2d, n_clusters, init, max_iter, seed) -> (centroids (rows, k), indices (rows, len), iterations) */
static PyObject *core_cluster_fit_rows(PyObject *self, PyObject *args) {
    long long n_clusters, max_iter;
    unsigned long long seed;
    int init;
    PyArrayObject *centroids = NULL, *indices = NULL;
    PyArrayObject *w = parse_cluster_fit(args, "OLiLK:cluster_fit_rows", &n_clusters, &init, &max_iter, &seed);
    if (w == NULL) return NULL;
    if (PyArray_NDIM(w) != 2) {
        PyErr_Format(PyExc_ValueError, "cluster_fit_rows needs a 2-D (rows, row_length) array, got %d dimensions",
                     PyArray_NDIM(w));
        goto error;
    }
    npy_intp rows = PyArray_DIM(w, 0), length = PyArray_DIM(w, 1);
    npy_intp book_dims[2] = {rows, (npy_intp)n_clusters};
    centroids = (PyArrayObject *)PyArray_EMPTY(2, book_dims, NPY_FLOAT32, 0);
    if (centroids == NULL) goto error;
    int wide = n_clusters > 256;
    indices = empty_like_shape(w, wide ? NPY_UINT16 : NPY_UINT8);
    if (indices == NULL) goto error;
    int64_t iterations = 0;
    sp_status status;
    SP_CALL(status, sp_cluster_fit_rows_f32((const float *)PyArray_DATA(w), (int64_t)rows, (int64_t)length,
                                            (int64_t)n_clusters, init, (int64_t)max_iter, (uint64_t)seed,
                                            (float *)PyArray_DATA(centroids), PyArray_DATA(indices), wide ? 2 : 1,
                                            &iterations));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(w);
    return Py_BuildValue("(NNL)", centroids, indices, (long long)iterations);
error:
    Py_XDECREF(w);
    Py_XDECREF(centroids);
    Py_XDECREF(indices);
    return NULL;
}

static PyObject *core_cluster_assign(PyObject *self, PyObject *args) {
    PyObject *w_obj, *centroids_obj;
    if (!PyArg_ParseTuple(args, "OO:cluster_assign", &w_obj, &centroids_obj)) return NULL;
    PyArrayObject *centroids = NULL, *indices = NULL;
    PyArrayObject *w = quant_as_float_array_of(w_obj, "w", NPY_FLOAT32);
    if (w == NULL) return NULL;
    centroids = quant_as_float_array_of(centroids_obj, "centroids", NPY_FLOAT32);
    if (centroids == NULL) goto error;
    int64_t k = (int64_t)PyArray_SIZE(centroids);
    int wide = k > 256;
    indices = empty_like_shape(w, wide ? NPY_UINT16 : NPY_UINT8);
    if (indices == NULL) goto error;
    sp_status status;
    const float *x = (const float *)PyArray_DATA(w), *c = (const float *)PyArray_DATA(centroids);
    int64_t n = (int64_t)PyArray_SIZE(w);
    if (wide) {
        SP_CALL(status, sp_cluster_assign_u16_f32(x, n, c, k, (uint16_t *)PyArray_DATA(indices)));
    } else {
        SP_CALL(status, sp_cluster_assign_u8_f32(x, n, c, k, (uint8_t *)PyArray_DATA(indices)));
    }
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(w);
    Py_DECREF(centroids);
    return (PyObject *)indices;
error:
    Py_XDECREF(w);
    Py_XDECREF(centroids);
    Py_XDECREF(indices);
    return NULL;
}

static PyObject *core_cluster_lookup(PyObject *self, PyObject *args) {
    PyObject *indices_obj, *centroids_obj;
    if (!PyArg_ParseTuple(args, "OO:cluster_lookup", &indices_obj, &centroids_obj)) return NULL;
    PyArrayObject *indices = NULL, *centroids = NULL, *out = NULL;
    PyArrayObject *any = (PyArrayObject *)PyArray_FROM_O(indices_obj);
    if (any == NULL) return NULL;
    int wide = PyArray_TYPE(any) == NPY_UINT16;
    if (!wide && PyArray_TYPE(any) != NPY_UINT8) {
        PyErr_SetString(PyExc_TypeError, "indices must be a uint8 or uint16 array");
        Py_DECREF(any);
        return NULL;
    }
    indices = (PyArrayObject *)PyArray_FROM_OTF((PyObject *)any, wide ? NPY_UINT16 : NPY_UINT8, NPY_ARRAY_IN_ARRAY);
    Py_DECREF(any);
    if (indices == NULL) return NULL;
    centroids = quant_as_float_array_of(centroids_obj, "centroids", NPY_FLOAT32);
    if (centroids == NULL) goto error;
    out = empty_like_shape(indices, NPY_FLOAT32);
    if (out == NULL) goto error;
    sp_status status;
    int64_t n = (int64_t)PyArray_SIZE(indices), k = (int64_t)PyArray_SIZE(centroids);
    const float *c = (const float *)PyArray_DATA(centroids);
    if (wide) {
        SP_CALL(status, sp_cluster_lookup_u16((const uint16_t *)PyArray_DATA(indices), n, c, k, (float *)PyArray_DATA(out)));
    } else {
        SP_CALL(status, sp_cluster_lookup_u8((const uint8_t *)PyArray_DATA(indices), n, c, k, (float *)PyArray_DATA(out)));
    }
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(indices);
    Py_DECREF(centroids);
    return (PyObject *)out;
error:
    Py_XDECREF(indices);
    Py_XDECREF(centroids);
    Py_XDECREF(out);
    return NULL;
}

static PyObject *core_gptq(PyObject *self, PyObject *args) {
    PyObject *w_obj, *x_obj;
    long long bits, group_size;
    int symmetric;
    double damp;
    if (!PyArg_ParseTuple(args, "OOLpLd:gptq", &w_obj, &x_obj, &bits, &symmetric, &group_size, &damp)) return NULL;
    PyArrayObject *w = NULL, *x = NULL, *values = NULL, *scale = NULL, *zero_point = NULL;
    w = quant_as_float_array_of(w_obj, "w", NPY_FLOAT64);
    if (w == NULL) return NULL;
    x = quant_as_float_array_of(x_obj, "x", NPY_FLOAT64);
    if (x == NULL) goto error;
    if (PyArray_NDIM(w) != 2 || PyArray_NDIM(x) != 2 || PyArray_DIM(w, 1) != PyArray_DIM(x, 1)) {
        PyErr_SetString(PyExc_ValueError, "gptq needs w of shape (out, in) and x of shape (samples, in)");
        goto error;
    }
    int64_t rows = (int64_t)PyArray_DIM(w, 0), cols = (int64_t)PyArray_DIM(w, 1);
    int64_t samples = (int64_t)PyArray_DIM(x, 0);
    if (quant_new_row_outputs(w, symmetric, group_size, &values, &scale, &zero_point) < 0) goto error;
    sp_status status;
    SP_CALL(status, sp_quant_gptq_f64((const double *)PyArray_DATA(w), rows, cols, (const double *)PyArray_DATA(x),
                                      samples, (int64_t)bits, symmetric, (int64_t)group_size, damp,
                                      PyArray_DATA(values), (float *)PyArray_DATA(scale), PyArray_DATA(zero_point),
                                      (int64_t)PyArray_SIZE(scale)));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(w);
    Py_DECREF(x);
    return Py_BuildValue("(NNN)", values, scale, zero_point);
error:
    Py_XDECREF(w);
    Py_XDECREF(x);
    Py_XDECREF(values);
    Py_XDECREF(scale);
    Py_XDECREF(zero_point);
    return NULL;
}

/* gptq_hessian(w, h, bits, symmetric, group_size, damp, block_size, act_order, static_groups, mse_grid)
   -> (values, scale, zero_point); h is not modified (only read); w is rounded to float32, the precision GPTQ
   runs in. */
static PyObject *core_gptq_hessian(PyObject *self, PyObject *args) {
    PyObject *w_obj, *h_obj;
    long long bits, group_size, block_size, mse_grid;
    int symmetric, act_order, static_groups;
    double damp;
    if (!PyArg_ParseTuple(args, "OOLpLdLppL:gptq_hessian", &w_obj, &h_obj, &bits, &symmetric, &group_size, &damp,
                          &block_size, &act_order, &static_groups, &mse_grid)) return NULL;
    PyArrayObject *w = NULL, *h = NULL, *values = NULL, *scale = NULL, *zero_point = NULL;
    if (float32_weight_and_hessian(w_obj, h_obj, "gptq", &w, &h) < 0) return NULL;
    int64_t rows = (int64_t)PyArray_DIM(w, 0), cols = (int64_t)PyArray_DIM(w, 1);
    if (quant_new_row_outputs(w, symmetric, group_size, &values, &scale, &zero_point) < 0) goto error;
    sp_status status;
    SP_CALL(status, sp_quant_gptq_hessian_f32((const float *)PyArray_DATA(w), rows, cols, (const double *)PyArray_DATA(h),
                                              (int64_t)bits, symmetric, (int64_t)group_size, damp, (int64_t)block_size,
                                              act_order, static_groups, (int64_t)mse_grid,
                                              PyArray_DATA(values), (float *)PyArray_DATA(scale), PyArray_DATA(zero_point),
                                              (int64_t)PyArray_SIZE(scale)));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(w);
    Py_DECREF(h);
    return Py_BuildValue("(NNN)", values, scale, zero_point);
error:
    Py_XDECREF(w);
    Py_XDECREF(h);
    Py_XDECREF(values);
    Py_XDECREF(scale);
    Py_XDECREF(zero_point);
    return NULL;
}

/* sparsegpt_quant_hessian(w, h, sparsity, n, m, block_size, damp, bits, symmetric, group_size)
   -> (values, scale, zero_point): SparseGPT with the kept weights quantized inside its loop; h is only read. */
static PyObject *core_sparsegpt_quant_hessian(PyObject *self, PyObject *args) {
    PyObject *w_obj, *h_obj;
    double sparsity, damp;
    long long n, m, block_size, bits, group_size;
    int symmetric;
    if (!PyArg_ParseTuple(args, "OOdLLLdLpL:sparsegpt_quant_hessian", &w_obj, &h_obj, &sparsity, &n, &m, &block_size,
                          &damp, &bits, &symmetric, &group_size)) return NULL;
    PyArrayObject *w = NULL, *h = NULL, *values = NULL, *scale = NULL, *zero_point = NULL;
    if (float32_weight_and_hessian(w_obj, h_obj, "sparsegpt", &w, &h) < 0) return NULL;
    int64_t rows = (int64_t)PyArray_DIM(w, 0), cols = (int64_t)PyArray_DIM(w, 1);
    if (quant_new_row_outputs(w, symmetric, group_size, &values, &scale, &zero_point) < 0) goto error;
    sp_status status;
    SP_CALL(status, sp_sparsegpt_quant_hessian_f32((const float *)PyArray_DATA(w), rows, cols,
                                                   (const double *)PyArray_DATA(h), sparsity, (int64_t)n, (int64_t)m,
                                                   (int64_t)block_size, damp, (int64_t)bits, symmetric,
                                                   (int64_t)group_size, PyArray_DATA(values),
                                                   (float *)PyArray_DATA(scale), PyArray_DATA(zero_point),
                                                   (int64_t)PyArray_SIZE(scale)));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(w);
    Py_DECREF(h);
    return Py_BuildValue("(NNN)", values, scale, zero_point);
error:
    Py_XDECREF(w);
    Py_XDECREF(h);
    Py_XDECREF(values);
    Py_XDECREF(scale);
    Py_XDECREF(zero_point);
    return NULL;
}

#define QUANTIZATION_METHODS                                                                              \
    {"quantize", core_quant_quantize, METH_VARARGS,                                                       \
     "quantize(w, bits, symmetric, axis, group_size, method, percentile[, out]) -> (values, scale, zero_point)"}, \
    {"dequantize", core_quant_dequantize, METH_VARARGS,                                                   \
     "dequantize(values, symmetric, axis, group_size, scale, zero_point) -> float32 array"},             \
    {"pack_bits", core_quant_pack_bits, METH_VARARGS, "pack_bits(values, bits) -> uint8 bit stream"},    \
    {"unpack_bits", core_quant_unpack_bits, METH_VARARGS,                                                 \
     "unpack_bits(packed, count, bits, is_signed) -> int8/uint8 array"},                                  \
    {"cast", core_cast, METH_VARARGS, "cast(w, bfloat16) -> uint16 bit patterns"},                         \
    {"cluster_fit", core_cluster_fit, METH_VARARGS,                                                       \
     "cluster_fit(w, n_clusters, init, max_iter, seed) -> (centroids, iterations)"},                      \
    {"cluster_assign", core_cluster_assign, METH_VARARGS, "cluster_assign(w, centroids) -> indices"},     \
    {"cluster_fit_rows", core_cluster_fit_rows, METH_VARARGS,                                             \
     "cluster_fit_rows(w2d, n_clusters, init, max_iter, seed) -> (centroids, indices, iterations)"},      \
    {"cluster_lookup", core_cluster_lookup, METH_VARARGS, "cluster_lookup(indices, centroids) -> float32"}, \
    {"gptq", core_gptq, METH_VARARGS,                                                                     \
     "gptq(w, x, bits, symmetric, group_size, damp) -> (values, scale, zero_point)"},                  \
    {"sparsegpt_quant_hessian", core_sparsegpt_quant_hessian, METH_VARARGS,                               \
     "sparsegpt_quant_hessian(w, h, sparsity, n, m, block_size, damp, bits, symmetric, group_size)"},     \
    {"gptq_hessian", core_gptq_hessian, METH_VARARGS,                                                     \
     "gptq_hessian(w, h, bits, symmetric, group_size, damp, block_size, act_order, static_groups, mse_grid)"},

/* ======================================================================== */
/* Low-rank factorization                                                    */
/* ======================================================================== */

/* A float32/float64 2-D array from `obj` (as_float_array), or NULL with an exception. */
static PyArrayObject *as_float_matrix(PyObject *obj, const char *name, int *is_double) {
    PyArrayObject *w = as_float_array(obj, name, is_double);
    if (w == NULL) return NULL;
    if (PyArray_NDIM(w) != 2) {
        PyErr_Format(PyExc_ValueError, "%s must be 2-D, got %d dimension(s)", name, PyArray_NDIM(w));
        Py_DECREF(w);
        return NULL;
    }
    return w;
}

/* The float32 factors of a rank-r SVD of an (m, n) matrix: u (m, r), s (r), vt (r, n); 0, or -1 with an exception
   and all three NULL. */
static int new_svd_factors(npy_intp m, npy_intp n, npy_intp r, PyArrayObject **u, PyArrayObject **s,
                           PyArrayObject **vt) {
    npy_intp u_dims[2] = {m, r}, s_dims[1] = {r}, vt_dims[2] = {r, n};
    *u = (PyArrayObject *)PyArray_EMPTY(2, u_dims, NPY_FLOAT, 0);
    *s = (PyArrayObject *)PyArray_EMPTY(1, s_dims, NPY_FLOAT, 0);
    *vt = (PyArrayObject *)PyArray_EMPTY(2, vt_dims, NPY_FLOAT, 0);
    return all_three_allocated(u, s, vt);
}

static PyObject *core_svd(PyObject *self, PyObject *args) {
    PyObject *w_obj;
    if (!PyArg_ParseTuple(args, "O:svd", &w_obj)) return NULL;
    int is_double;
    PyArrayObject *u = NULL, *s = NULL, *vt = NULL;
    PyArrayObject *w = as_float_matrix(w_obj, "w", &is_double);
    if (w == NULL) return NULL;
    npy_intp m = PyArray_DIM(w, 0), n = PyArray_DIM(w, 1), r = m < n ? m : n;
    if (new_svd_factors(m, n, r, &u, &s, &vt) < 0) goto error;
    sp_status status;
    float *u_data = (float *)PyArray_DATA(u), *s_data = (float *)PyArray_DATA(s), *vt_data = (float *)PyArray_DATA(vt);
    SP_CALL(status, SP_PRECISION(is_double, sp_svd, PyArray_DATA(w), m, n, u_data, s_data, vt_data));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(w);
    return Py_BuildValue("(NNN)", u, s, vt);
error:
    Py_XDECREF(w);
    Py_XDECREF(u);
    Py_XDECREF(s);
    Py_XDECREF(vt);
    return NULL;
}

static PyObject *core_randomized_svd(PyObject *self, PyObject *args) {
    PyObject *w_obj;
    long long rank, oversample, power_iters;
    unsigned long long seed;
    int method = SP_RSVD_KRYLOV;
    if (!PyArg_ParseTuple(args, "OLLLK|i:randomized_svd", &w_obj, &rank, &oversample, &power_iters, &seed, &method))
        return NULL;
    int is_double;
    PyArrayObject *u = NULL, *s = NULL, *vt = NULL;
    PyArrayObject *w = as_float_matrix(w_obj, "w", &is_double);
    if (w == NULL) return NULL;
    npy_intp m = PyArray_DIM(w, 0), n = PyArray_DIM(w, 1);
    if (rank < 0 || rank > (m < n ? m : n)) {
        PyErr_Format(PyExc_ValueError, "rank must be in [0, %lld] for a (%lld, %lld) matrix, got %lld",
                     (long long)(m < n ? m : n), (long long)m, (long long)n, rank);
        goto error;
    }
    if (new_svd_factors(m, n, (npy_intp)rank, &u, &s, &vt) < 0) goto error;
    sp_status status;
    float *u_data = (float *)PyArray_DATA(u), *s_data = (float *)PyArray_DATA(s), *vt_data = (float *)PyArray_DATA(vt);
    SP_CALL(status, SP_PRECISION(is_double, sp_randomized_svd_method, PyArray_DATA(w), m, n, rank, oversample,
                                 power_iters, (uint64_t)seed, (int32_t)method, u_data, s_data, vt_data));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(w);
    return Py_BuildValue("(NNN)", u, s, vt);
error:
    Py_XDECREF(w);
    Py_XDECREF(u);
    Py_XDECREF(s);
    Py_XDECREF(vt);
    return NULL;
}

static PyObject *core_low_rank_max_rank(PyObject *self, PyObject *args) {
    int selector;
    double value;
    long long m, n;
    if (!PyArg_ParseTuple(args, "idLL:low_rank_max_rank", &selector, &value, &m, &n)) return NULL;
    int64_t rank = 0;
    sp_status status;
    SP_CALL(status, sp_low_rank_max_rank((int32_t)selector, value, m, n, &rank));
    if (status != SP_OK) return raise_status(status);
    return PyLong_FromLongLong((long long)rank);
}

/* low_rank(w, selector, value, method, seed) -> (a, b): a (m, k), b (k, n) float32. */
static PyObject *core_low_rank(PyObject *self, PyObject *args) {
    PyObject *w_obj;
    int selector, method;
    double value;
    unsigned long long seed;
    if (!PyArg_ParseTuple(args, "OidiK:low_rank", &w_obj, &selector, &value, &method, &seed)) return NULL;
    int is_double;
    PyArrayObject *a_buf = NULL, *b_buf = NULL, *a = NULL, *b = NULL;
    PyArrayObject *w = as_float_matrix(w_obj, "w", &is_double);
    if (w == NULL) return NULL;
    npy_intp m = PyArray_DIM(w, 0), n = PyArray_DIM(w, 1);
    int64_t capacity = 0, rank = 0;
    sp_status status;
    SP_CALL(status, sp_low_rank_max_rank((int32_t)selector, value, m, n, &capacity));
    if (status != SP_OK) { raise_status(status); goto error; }
    npy_intp a_dims[1] = {(npy_intp)(m * capacity)}, b_dims[1] = {(npy_intp)(capacity * n)};
    a_buf = (PyArrayObject *)PyArray_EMPTY(1, a_dims, NPY_FLOAT, 0);
    b_buf = (PyArrayObject *)PyArray_EMPTY(1, b_dims, NPY_FLOAT, 0);
    if (a_buf == NULL || b_buf == NULL) goto error;
    float *a_data = (float *)PyArray_DATA(a_buf), *b_data = (float *)PyArray_DATA(b_buf);
    SP_CALL(status, SP_PRECISION(is_double, sp_low_rank, PyArray_DATA(w), m, n, (int32_t)selector, value,
                                 (int32_t)method, (uint64_t)seed, capacity, a_data, b_data, &rank));
    if (status != SP_OK) { raise_status(status); goto error; }
    npy_intp a_shape[2] = {m, (npy_intp)rank}, b_shape[2] = {(npy_intp)rank, n};
    a = (PyArrayObject *)PyArray_EMPTY(2, a_shape, NPY_FLOAT, 0);
    b = (PyArrayObject *)PyArray_EMPTY(2, b_shape, NPY_FLOAT, 0);
    if (a == NULL || b == NULL) goto error;
    if (m * rank > 0) memcpy(PyArray_DATA(a), a_data, (size_t)(m * rank) * sizeof(float));
    if (rank * n > 0) memcpy(PyArray_DATA(b), b_data, (size_t)(rank * n) * sizeof(float));
    Py_DECREF(w);
    Py_DECREF(a_buf);
    Py_DECREF(b_buf);
    return Py_BuildValue("(NN)", a, b);
error:
    Py_XDECREF(w);
    Py_XDECREF(a_buf);
    Py_XDECREF(b_buf);
    Py_XDECREF(a);
    Py_XDECREF(b);
    return NULL;
}

#define FACTORIZATION_METHODS                                                                              \
    {"svd", core_svd, METH_VARARGS, "svd(w) -> (u, s, vt) float32"},                                       \
    {"randomized_svd", core_randomized_svd, METH_VARARGS,                                                  \
     "randomized_svd(w, rank, oversample, power_iters, seed, method=0) -> (u, s, vt) float32 (0 krylov, 1 subspace)"},                      \
    {"low_rank_max_rank", core_low_rank_max_rank, METH_VARARGS, "low_rank_max_rank(selector, value, m, n)"}, \
    {"low_rank", core_low_rank, METH_VARARGS, "low_rank(w, selector, value, method, seed) -> (a, b)"},

/* ======================================================================== */
/* Tensor core: matmul, sparse and quantized kernels                         */
/* ======================================================================== */

/*
 * A float32 2-D array holding `obj`'s values, C- or Fortran-contiguous
 * (the latter reported through *transposed, so that no copy is made), or
 * NULL with an exception. Non-float input raises TypeError.
 */
static PyArrayObject *as_float32_matrix(PyObject *obj, const char *name, bool *transposed) {
    PyArrayObject *any = (PyArrayObject *)PyArray_FROM_O(obj);
    if (any == NULL) return NULL;
    int type = PyArray_TYPE(any);
    if (type != NPY_DOUBLE && type != NPY_FLOAT && type != NPY_HALF) {
        set_not_floating_error(any, name);
        Py_DECREF(any);
        return NULL;
    }
    if (PyArray_NDIM(any) != 2) {
        PyErr_Format(PyExc_ValueError, "%s must be 2-D, got %d dimension(s)", name, PyArray_NDIM(any));
        Py_DECREF(any);
        return NULL;
    }
    *transposed = false;
    /* Used as is only in native byte order: a big-endian (>f4) array is converted below. */
    if (type == NPY_FLOAT && PyArray_ISALIGNED(any) && PyArray_ISNOTSWAPPED(any) && !PyArray_IS_C_CONTIGUOUS(any) &&
        PyArray_IS_F_CONTIGUOUS(any)) {
        *transposed = true;
        return any;
    }
    PyArrayObject *result = (PyArrayObject *)PyArray_FROM_OTF(
        (PyObject *)any, NPY_FLOAT, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    Py_DECREF(any);
    return result;
}

static PyObject *core_matmul(PyObject *self, PyObject *args) {
    PyObject *a_obj, *b_obj;
    if (!PyArg_ParseTuple(args, "OO:matmul", &a_obj, &b_obj)) return NULL;
    bool a_t, b_t;
    PyArrayObject *b = NULL, *out = NULL;
    PyArrayObject *a = as_float32_matrix(a_obj, "a", &a_t);
    if (a == NULL) return NULL;
    b = as_float32_matrix(b_obj, "b", &b_t);
    if (b == NULL) goto error;
    npy_intp m = PyArray_DIM(a, 0), k = PyArray_DIM(a, 1), n = PyArray_DIM(b, 1);
    if (PyArray_DIM(b, 0) != k) {
        PyErr_Format(PyExc_ValueError,
                     "matmul: a has shape (%lld, %lld) and b has shape (%lld, %lld): inner dimensions %lld != %lld",
                     (long long)m, (long long)k, (long long)PyArray_DIM(b, 0), (long long)n,
                     (long long)k, (long long)PyArray_DIM(b, 0));
        goto error;
    }
    npy_intp dims[2] = {m, n};
    out = (PyArrayObject *)PyArray_EMPTY(2, dims, NPY_FLOAT, 0);
    if (out == NULL) goto error;
    sp_status status;
    SP_CALL(status, sp_matmul_f32((const float *)PyArray_DATA(a), a_t, (const float *)PyArray_DATA(b), b_t,
                                  m, k, n, (float *)PyArray_DATA(out)));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(a);
    Py_DECREF(b);
    return (PyObject *)out;
error:
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_XDECREF(out);
    return NULL;
}

#define MATMUL_METHODS \
    {"matmul", core_matmul, METH_VARARGS, "matmul(a, b) -> float32 a @ b (2-D)"},
/* ---- sparse and quantized layers (sp_csr_*, sp_nm_*, sp_quantized_matmul_i8) ---- */

/* A new reference to `obj` as a C-contiguous float32 array (float16/32/64 accepted). */
static PyArrayObject *sparse_float32_array(PyObject *obj, const char *name) {
    int is_double;
    PyArrayObject *array = as_float_array(obj, name, &is_double);
    if (array == NULL || !is_double) return array;
    PyArrayObject *single = (PyArrayObject *)PyArray_FROM_OTF((PyObject *)array, NPY_FLOAT,
                                                              NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    Py_DECREF(array);
    return single;
}

/* A new reference to `obj` as a C-contiguous array of `typenum`, safe casts only. */
static PyArrayObject *sparse_exact_array(PyObject *obj, int typenum, const char *name) {
    PyArrayObject *array = (PyArrayObject *)PyArray_FROM_OTF(obj, typenum, NPY_ARRAY_IN_ARRAY);
    if (array == NULL && PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        PyErr_Format(PyExc_TypeError, "%s: %S", name, value ? value : Py_None);
        Py_XDECREF(type); Py_XDECREF(value); Py_XDECREF(traceback);
    }
    return array;
}

/* A float32 matrix of `rows` x `cols` as a new 2-D array checked to be 2-D. */
static PyArrayObject *sparse_float32_matrix(PyObject *obj, const char *name) {
    PyArrayObject *array = sparse_float32_array(obj, name);
    if (array != NULL && PyArray_NDIM(array) != 2) {
        PyErr_Format(PyExc_ValueError, "%s must be 2-D, got %d dimension(s)", name, PyArray_NDIM(array));
        Py_DECREF(array);
        return NULL;
    }
    return array;
}

/* The activations x of W @ x: float32, 1-D or 2-D; sets *x_rows and *batch. */
static PyArrayObject *sparse_activations(PyObject *obj, int64_t *x_rows, int64_t *batch) {
    PyArrayObject *x = sparse_float32_array(obj, "x");
    if (x == NULL) return NULL;
    int ndim = PyArray_NDIM(x);
    if (ndim != 1 && ndim != 2) {
        PyErr_Format(PyExc_ValueError, "x must be 1-D (in_features,) or 2-D (in_features, n), got %d dimension(s)", ndim);
        Py_DECREF(x);
        return NULL;
    }
    *x_rows = (int64_t)PyArray_DIM(x, 0);
    *batch = ndim == 2 ? (int64_t)PyArray_DIM(x, 1) : 1;
    return x;
}

/* The float32 result of W @ x: (rows,) for a 1-D x, else (rows, batch). */
static PyArrayObject *sparse_new_product(PyArrayObject *x, int64_t rows, int64_t batch) {
    npy_intp dims[2] = {(npy_intp)rows, (npy_intp)batch};
    return (PyArrayObject *)PyArray_EMPTY(PyArray_NDIM(x), dims, NPY_FLOAT, 0);
}

static PyObject *core_csr_from_dense(PyObject *self, PyObject *args) {
    PyObject *w_obj;
    if (!PyArg_ParseTuple(args, "O:csr_from_dense", &w_obj)) return NULL;
    PyArrayObject *indptr = NULL, *indices = NULL, *data = NULL;
    PyArrayObject *w = sparse_float32_matrix(w_obj, "w");
    if (w == NULL) return NULL;
    int64_t rows = (int64_t)PyArray_DIM(w, 0), cols = (int64_t)PyArray_DIM(w, 1), nnz = 0;
    npy_intp offsets_dim = (npy_intp)rows + 1;
    indptr = (PyArrayObject *)PyArray_EMPTY(1, &offsets_dim, NPY_INT64, 0);
    if (indptr == NULL) goto error;
    sp_status status;
    SP_CALL(status, sp_csr_count_f32((const float *)PyArray_DATA(w), rows, cols, (int64_t *)PyArray_DATA(indptr), &nnz));
    if (status != SP_OK) { raise_status(status); goto error; }
    npy_intp nnz_dim = (npy_intp)nnz;
    indices = (PyArrayObject *)PyArray_EMPTY(1, &nnz_dim, NPY_INT32, 0);
    data = (PyArrayObject *)PyArray_EMPTY(1, &nnz_dim, NPY_FLOAT, 0);
    if (indices == NULL || data == NULL) goto error;
    SP_CALL(status, sp_csr_fill_f32((const float *)PyArray_DATA(w), rows, cols, (const int64_t *)PyArray_DATA(indptr), nnz,
                                    (int32_t *)PyArray_DATA(indices), (float *)PyArray_DATA(data)));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(w);
    return Py_BuildValue("(NNN)", indptr, indices, data);
error:
    Py_XDECREF(w);
    Py_XDECREF(indptr);
    Py_XDECREF(indices);
    Py_XDECREF(data);
    return NULL;
}

/* Parses (indptr, indices, data, rows, cols) into contiguous int64 / int32 / float32 arrays
   (indices: uint16 instead when index_type is NPY_UINT16). */
static int parse_csr_indices(PyObject *indptr_obj, PyObject *indices_obj, PyObject *data_obj, int index_type,
                             PyArrayObject **indptr, PyArrayObject **indices, PyArrayObject **data) {
    *indptr = sparse_exact_array(indptr_obj, NPY_INT64, "indptr");
    if (*indptr == NULL) return -1;
    *indices = sparse_exact_array(indices_obj, index_type, "indices");
    if (*indices == NULL) return -1;
    *data = sparse_float32_array(data_obj, "data");
    if (*data == NULL) return -1;
    if (PyArray_SIZE(*indices) != PyArray_SIZE(*data)) {
        PyErr_Format(PyExc_ValueError, "indices (%zd) and data (%zd) must have the same length",
                     (Py_ssize_t)PyArray_SIZE(*indices), (Py_ssize_t)PyArray_SIZE(*data));
        return -1;
    }
    return 0;
}

static int parse_csr(PyObject *indptr_obj, PyObject *indices_obj, PyObject *data_obj, PyArrayObject **indptr,
                     PyArrayObject **indices, PyArrayObject **data) {
    return parse_csr_indices(indptr_obj, indices_obj, data_obj, NPY_INT32, indptr, indices, data);
}

static PyObject *core_csr_matmul(PyObject *self, PyObject *args) {
    PyObject *indptr_obj, *indices_obj, *data_obj, *x_obj;
    long long rows, cols;
    if (!PyArg_ParseTuple(args, "OOOLLO:csr_matmul", &indptr_obj, &indices_obj, &data_obj, &rows, &cols, &x_obj)) return NULL;
    PyArrayObject *indptr = NULL, *indices = NULL, *data = NULL, *x = NULL, *y = NULL;
    int64_t x_rows, batch;
    /* uint16 indices (CSRMatrix with at most 65536 columns) go to the 16-bit kernel as they are. */
    int index_type = PyArray_Check(indices_obj) && PyArray_TYPE((PyArrayObject *)indices_obj) == NPY_UINT16 ? NPY_UINT16 : NPY_INT32;
    if (parse_csr_indices(indptr_obj, indices_obj, data_obj, index_type, &indptr, &indices, &data) < 0) goto error;
    if (rows < 0 || rows >= PY_SSIZE_T_MAX || PyArray_SIZE(indptr) != (npy_intp)rows + 1) {
        PyErr_Format(PyExc_ValueError, "indptr must have rows + 1 entries (rows = %lld), got %zd", rows, (Py_ssize_t)PyArray_SIZE(indptr));
        goto error;
    }
    x = sparse_activations(x_obj, &x_rows, &batch);
    if (x == NULL) goto error;
    y = sparse_new_product(x, rows, batch);
    if (y == NULL) goto error;
    sp_status status;
    if (index_type == NPY_UINT16) {
        SP_CALL(status, sp_csr_matmul_u16_f32(rows, cols, (const int64_t *)PyArray_DATA(indptr),
                                              (const uint16_t *)PyArray_DATA(indices), (const float *)PyArray_DATA(data),
                                              (int64_t)PyArray_SIZE(data), (const float *)PyArray_DATA(x), x_rows, batch,
                                              (float *)PyArray_DATA(y)));
    } else {
        SP_CALL(status, sp_csr_matmul_f32(rows, cols, (const int64_t *)PyArray_DATA(indptr), (const int32_t *)PyArray_DATA(indices),
                                          (const float *)PyArray_DATA(data), (int64_t)PyArray_SIZE(data),
                                          (const float *)PyArray_DATA(x), x_rows, batch, (float *)PyArray_DATA(y)));
    }
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(indptr); Py_DECREF(indices); Py_DECREF(data); Py_DECREF(x);
    return (PyObject *)y;
error:
    Py_XDECREF(indptr); Py_XDECREF(indices); Py_XDECREF(data); Py_XDECREF(x); Py_XDECREF(y);
    return NULL;
}

static PyObject *core_csr_to_dense(PyObject *self, PyObject *args) {
    PyObject *indptr_obj, *indices_obj, *data_obj;
    long long rows, cols;
    if (!PyArg_ParseTuple(args, "OOOLL:csr_to_dense", &indptr_obj, &indices_obj, &data_obj, &rows, &cols)) return NULL;
    PyArrayObject *indptr = NULL, *indices = NULL, *data = NULL, *out = NULL;
    if (parse_csr(indptr_obj, indices_obj, data_obj, &indptr, &indices, &data) < 0) goto error;
    if (rows < 0 || cols < 0) { PyErr_Format(PyExc_ValueError, "shape (%lld, %lld) has a negative dimension", rows, cols); goto error; }
    npy_intp dims[2] = {(npy_intp)rows, (npy_intp)cols};
    out = (PyArrayObject *)PyArray_EMPTY(2, dims, NPY_FLOAT, 0);
    if (out == NULL) goto error;
    sp_status status;
    SP_CALL(status, sp_csr_to_dense_f32(rows, cols, (const int64_t *)PyArray_DATA(indptr), (const int32_t *)PyArray_DATA(indices),
                                        (const float *)PyArray_DATA(data), (int64_t)PyArray_SIZE(data), (float *)PyArray_DATA(out)));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(indptr); Py_DECREF(indices); Py_DECREF(data);
    return (PyObject *)out;
error:
    Py_XDECREF(indptr); Py_XDECREF(indices); Py_XDECREF(data); Py_XDECREF(out);
    return NULL;
}

static PyObject *core_nm_from_dense(PyObject *self, PyObject *args) {
    PyObject *w_obj;
    long long n, m;
    if (!PyArg_ParseTuple(args, "OLL:nm_from_dense", &w_obj, &n, &m)) return NULL;
    PyArrayObject *values = NULL, *indices = NULL;
    PyArrayObject *w = sparse_float32_matrix(w_obj, "w");
    if (w == NULL) return NULL;
    int64_t rows = (int64_t)PyArray_DIM(w, 0), cols = (int64_t)PyArray_DIM(w, 1);
    if (m < 1 || m > 255 || n < 1 || n > m || cols % m != 0) {
        PyErr_Format(PyExc_ValueError, "need 1 <= n <= m <= 255 and columns %% m == 0, got n=%lld, m=%lld, columns=%lld",
                     n, m, (long long)cols);
        goto error;
    }
    npy_intp dims[2] = {(npy_intp)rows, (npy_intp)(cols / m * n)};
    values = (PyArrayObject *)PyArray_EMPTY(2, dims, NPY_FLOAT, 0);
    indices = (PyArrayObject *)PyArray_EMPTY(2, dims, NPY_UINT8, 0);
    if (values == NULL || indices == NULL) goto error;
    sp_status status;
    SP_CALL(status, sp_nm_compress_f32((const float *)PyArray_DATA(w), rows, cols, n, m, (float *)PyArray_DATA(values),
                                       (uint8_t *)PyArray_DATA(indices)));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(w);
    return Py_BuildValue("(NN)", values, indices);
error:
    Py_XDECREF(w); Py_XDECREF(values); Py_XDECREF(indices);
    return NULL;
}

/* The (values, keep) pair of the compaction entry points: values any numeric array (C-contiguous,
   elements copied as they are), keep bool of the same size. 0, or -1 with an exception (both released). */
static int parse_values_and_keep(PyObject *values_obj, PyObject *keep_obj, PyArrayObject **values, PyArrayObject **keep) {
    *values = NULL;
    *keep = NULL;
    if (!PyArray_Check(values_obj) || !PyArray_ISNUMBER((PyArrayObject *)values_obj)) {
        PyErr_SetString(PyExc_TypeError, "values must be a numeric NumPy array");
        return -1;
    }
    *values = (PyArrayObject *)PyArray_FROM_OF(values_obj, NPY_ARRAY_IN_ARRAY);
    if (*values == NULL) return -1;
    *keep = (PyArrayObject *)PyArray_FROM_OTF(keep_obj, NPY_BOOL, NPY_ARRAY_IN_ARRAY);
    if (*keep != NULL && PyArray_SIZE(*keep) == PyArray_SIZE(*values)) return 0;
    if (*keep != NULL) {
        PyErr_Format(PyExc_ValueError, "keep has %lld entries, values %lld", (long long)PyArray_SIZE(*keep),
                     (long long)PyArray_SIZE(*values));
    }
    Py_CLEAR(*values);
    Py_CLEAR(*keep);
    return -1;
}

/* nm_compact(values, keep, n, m) -> (stored, positions): the N:M storage layout of C-order runs of m
   (see sp_nm_compact). values: any contiguous array of 1/2/4/8-byte elements; keep: bool of the same size. */
static PyObject *core_nm_compact(PyObject *self, PyObject *args) {
    PyObject *values_obj, *keep_obj;
    long long n, m;
    if (!PyArg_ParseTuple(args, "OOLL:nm_compact", &values_obj, &keep_obj, &n, &m)) return NULL;
    PyArrayObject *values, *keep, *stored = NULL, *positions = NULL;
    if (parse_values_and_keep(values_obj, keep_obj, &values, &keep) < 0) return NULL;
    int64_t count = (int64_t)PyArray_SIZE(values), width = (int64_t)PyArray_ITEMSIZE(values);
    if (m < 2 || m > 256 || n < 1 || n >= m || count % m != 0) {
        PyErr_Format(PyExc_ValueError, "need 1 <= n < m <= 256 and m dividing the %lld values, got n=%lld, m=%lld",
                     (long long)count, n, m);
        goto error;
    }
    npy_intp dims[1] = {(npy_intp)(count / m * n)};
    PyArray_Descr *descr = PyArray_DESCR(values);
    Py_INCREF(descr);
    stored = (PyArrayObject *)PyArray_NewFromDescr(&PyArray_Type, descr, 1, dims, NULL, NULL, 0, NULL);
    positions = (PyArrayObject *)PyArray_EMPTY(1, dims, NPY_UINT8, 0);
    if (stored == NULL || positions == NULL) goto error;
    sp_status status;
    SP_CALL(status, sp_nm_compact(PyArray_DATA(values), width, (const uint8_t *)PyArray_DATA(keep), count / m, n, m,
                                  PyArray_DATA(stored), (uint8_t *)PyArray_DATA(positions)));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(values); Py_DECREF(keep);
    return Py_BuildValue("(NN)", stored, positions);
error:
    Py_XDECREF(values); Py_XDECREF(keep); Py_XDECREF(stored); Py_XDECREF(positions);
    return NULL;
}

/* nm_quantize_encode(weights, n, m, bits, symmetric, group_size) -> (scales, zero_points, nm_values, nm_positions,
   mask_bits, mask_values, nonzeros, norm, difference): the fused N:M prune + minmax quantize + encode of a 2-D
   C-contiguous weight (float32, float16, or uint16 = bfloat16 bit patterns); see sp_nm_quantize_encode.
   scales/zero_points have shape (rows, columns / group_size); mask_values is trimmed to the bytes used. */
static PyObject *core_nm_quantize_encode(PyObject *self, PyObject *args) {
    PyObject *w_obj;
    long long n, m, bits, group_size;
    int symmetric;
    if (!PyArg_ParseTuple(args, "OLLLpL:nm_quantize_encode", &w_obj, &n, &m, &bits, &symmetric, &group_size)) return NULL;
    if (!PyArray_Check(w_obj)) { PyErr_SetString(PyExc_TypeError, "weights must be a numpy array"); return NULL; }
    PyArrayObject *w = (PyArrayObject *)w_obj;
    int type = PyArray_TYPE(w), dtype;
    if (type == NPY_FLOAT) dtype = 0;
    else if (type == NPY_HALF) dtype = 1;
    else if (type == NPY_UINT16) dtype = 2;
    else { PyErr_SetString(PyExc_TypeError, "weights must be float32, float16 or uint16 (bfloat16 bit patterns)"); return NULL; }
    if (PyArray_NDIM(w) != 2 || !PyArray_IS_C_CONTIGUOUS(w) || !PyArray_ISALIGNED(w)) {
        PyErr_SetString(PyExc_ValueError, "weights must be a 2-D C-contiguous aligned array");
        return NULL;
    }
    int64_t rows = (int64_t)PyArray_DIM(w, 0), columns = (int64_t)PyArray_DIM(w, 1);
    if (m < 2 || m > 256 || n < 1 || n >= m || bits < 2 || bits > 8 || group_size < 1 || columns % m != 0
        || columns % group_size != 0) {
        PyErr_Format(PyExc_ValueError, "need 1 <= n < m <= 256, bits in 2..8 and m, group_size dividing the %lld columns, "
                     "got n=%lld, m=%lld, bits=%lld, group_size=%lld", (long long)columns, n, m, bits, group_size);
        return NULL;
    }
    if (rows > 0 && columns > (int64_t)(INT64_MAX / 16) / rows) {
        PyErr_SetString(PyExc_ValueError, "weights are too large");
        return NULL;
    }
    int64_t count = rows * columns, stored = count / m * n;
    int index_bits = 1;
    while ((1LL << index_bits) < m) index_bits++;
    npy_intp scale_dims[2] = {(npy_intp)rows, (npy_intp)(columns / group_size)};
    npy_intp value_dims[1] = {(npy_intp)((stored * bits + 7) / 8)};
    npy_intp position_dims[1] = {(npy_intp)((stored * index_bits + 7) / 8)};
    npy_intp mask_dims[1] = {(npy_intp)((count + 7) / 8)};
    PyArrayObject *scales = (PyArrayObject *)PyArray_EMPTY(2, scale_dims, NPY_FLOAT, 0);
    PyArrayObject *zeros = (PyArrayObject *)PyArray_EMPTY(2, scale_dims, symmetric ? NPY_INT8 : NPY_UINT8, 0);
    PyArrayObject *nm_values = (PyArrayObject *)PyArray_EMPTY(1, value_dims, NPY_UINT8, 0);
    PyArrayObject *nm_positions = (PyArrayObject *)PyArray_EMPTY(1, position_dims, NPY_UINT8, 0);
    PyArrayObject *mask_bits = (PyArrayObject *)PyArray_EMPTY(1, mask_dims, NPY_UINT8, 0);
    PyArrayObject *mask_values = (PyArrayObject *)PyArray_EMPTY(1, value_dims, NPY_UINT8, 0);
    PyObject *trimmed = NULL;
    if (!scales || !zeros || !nm_values || !nm_positions || !mask_bits || !mask_values) goto error;
    int64_t nonzeros = 0, used = 0;
    double norm = 0.0, difference = 0.0;
    sp_status status;
    SP_CALL(status, sp_nm_quantize_encode(PyArray_DATA(w), dtype, rows, columns, n, m, bits, symmetric != 0, group_size,
                                          (float *)PyArray_DATA(scales), PyArray_DATA(zeros),
                                          (uint8_t *)PyArray_DATA(nm_values), (uint8_t *)PyArray_DATA(nm_positions),
                                          (uint8_t *)PyArray_DATA(mask_bits), (uint8_t *)PyArray_DATA(mask_values),
                                          &nonzeros, &used, &norm, &difference));
    if (status != SP_OK) { raise_status(status); goto error; }
    /* a copy of the used bytes (the room for all stored values is freed) */
    trimmed = PySequence_GetSlice((PyObject *)mask_values, 0, (Py_ssize_t)used);
    if (trimmed == NULL) goto error;
    {
        PyObject *copy = (PyObject *)PyArray_NewCopy((PyArrayObject *)trimmed, NPY_CORDER);
        Py_DECREF(trimmed);
        Py_CLEAR(mask_values);
        if (copy == NULL) goto error;
        trimmed = copy;
    }
    return Py_BuildValue("(NNNNNNLdd)", scales, zeros, nm_values, nm_positions, mask_bits, trimmed,
                         (long long)nonzeros, norm, difference);
error:
    Py_XDECREF(scales); Py_XDECREF(zeros); Py_XDECREF(nm_values); Py_XDECREF(nm_positions);
    Py_XDECREF(mask_bits); Py_XDECREF(mask_values);
    return NULL;
}

/* mask_compact(values, keep, kept) -> values[keep] (1-D, values' dtype), `kept` = the number of set flags. */
static PyObject *core_mask_compact(PyObject *self, PyObject *args) {
    PyObject *values_obj, *keep_obj;
    long long kept;
    if (!PyArg_ParseTuple(args, "OOL:mask_compact", &values_obj, &keep_obj, &kept)) return NULL;
    PyArrayObject *values, *keep, *out = NULL;
    if (parse_values_and_keep(values_obj, keep_obj, &values, &keep) < 0) return NULL;
    int64_t count = (int64_t)PyArray_SIZE(values);
    if (kept < 0 || kept > count) {
        PyErr_Format(PyExc_ValueError, "kept must be in 0..%lld, got %lld", (long long)count, kept);
        goto error;
    }
    npy_intp dims[1] = {(npy_intp)kept};
    PyArray_Descr *descr = PyArray_DESCR(values);
    Py_INCREF(descr);
    out = (PyArrayObject *)PyArray_NewFromDescr(&PyArray_Type, descr, 1, dims, NULL, NULL, 0, NULL);
    if (out == NULL) goto error;
    sp_status status;
    SP_CALL(status, sp_mask_compact(PyArray_DATA(values), (int64_t)PyArray_ITEMSIZE(values),
                                    (const uint8_t *)PyArray_DATA(keep), count, kept, PyArray_DATA(out)));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(values); Py_DECREF(keep);
    return (PyObject *)out;
error:
    Py_XDECREF(values); Py_XDECREF(keep); Py_XDECREF(out);
    return NULL;
}

/* apply_mask(w, keep) -> float32 w * keep + 0 (a new array of w's shape). */
static PyObject *core_apply_mask(PyObject *self, PyObject *args) {
    PyObject *w_obj, *keep_obj;
    if (!PyArg_ParseTuple(args, "OO:apply_mask", &w_obj, &keep_obj)) return NULL;
    PyArrayObject *w = NULL, *keep = NULL, *out = NULL;
    w = (PyArrayObject *)PyArray_FROM_OTF(w_obj, NPY_FLOAT, NPY_ARRAY_IN_ARRAY);
    if (w == NULL) return NULL;
    keep = (PyArrayObject *)PyArray_FROM_OTF(keep_obj, NPY_BOOL, NPY_ARRAY_IN_ARRAY);
    if (keep == NULL) goto error;
    if (PyArray_SIZE(keep) != PyArray_SIZE(w)) {
        PyErr_Format(PyExc_ValueError, "keep has %lld entries, w %lld", (long long)PyArray_SIZE(keep), (long long)PyArray_SIZE(w));
        goto error;
    }
    out = (PyArrayObject *)PyArray_EMPTY(PyArray_NDIM(w), PyArray_DIMS(w), NPY_FLOAT, 0);
    if (out == NULL) goto error;
    sp_status status;
    SP_CALL(status, sp_apply_mask_f32((const float *)PyArray_DATA(w), (const uint8_t *)PyArray_DATA(keep),
                                      (int64_t)PyArray_SIZE(w), (float *)PyArray_DATA(out)));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(w); Py_DECREF(keep);
    return (PyObject *)out;
error:
    Py_XDECREF(w); Py_XDECREF(keep); Py_XDECREF(out);
    return NULL;
}

/* squared_error(a, b) -> (sum a^2, sum (a - b)^2) in float64, for float32 arrays of the same size. */
static PyObject *core_squared_error(PyObject *self, PyObject *args) {
    PyObject *a_obj, *b_obj;
    if (!PyArg_ParseTuple(args, "OO:squared_error", &a_obj, &b_obj)) return NULL;
    PyArrayObject *a = NULL, *b = NULL;
    /* a uint16 array is bfloat16 bit patterns */
    int bfloat16 = PyArray_Check(a_obj) && PyArray_TYPE((PyArrayObject *)a_obj) == NPY_UINT16;
    a = (PyArrayObject *)PyArray_FROM_OTF(a_obj, bfloat16 ? NPY_UINT16 : NPY_FLOAT, NPY_ARRAY_IN_ARRAY);
    if (a == NULL) return NULL;
    b = (PyArrayObject *)PyArray_FROM_OTF(b_obj, NPY_FLOAT, NPY_ARRAY_IN_ARRAY);
    if (b == NULL) goto error;
    if (PyArray_SIZE(a) != PyArray_SIZE(b)) {
        PyErr_Format(PyExc_ValueError, "a has %lld entries, b %lld", (long long)PyArray_SIZE(a), (long long)PyArray_SIZE(b));
        goto error;
    }
    double norm = 0.0, difference = 0.0;
    sp_status status;
    if (bfloat16) {
        SP_CALL(status, sp_squared_error_bf16_f32((const uint16_t *)PyArray_DATA(a), (const float *)PyArray_DATA(b),
                                                  (int64_t)PyArray_SIZE(a), &norm, &difference));
    } else {
        SP_CALL(status, sp_squared_error_f32((const float *)PyArray_DATA(a), (const float *)PyArray_DATA(b),
                                             (int64_t)PyArray_SIZE(a), &norm, &difference));
    }
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(a); Py_DECREF(b);
    return Py_BuildValue("(dd)", norm, difference);
error:
    Py_XDECREF(a); Py_XDECREF(b);
    return NULL;
}

/* The values (float32) and indices (uint8) of a rows x cols N:M matrix, which the C ABI reads without a
   length: each must hold sp_nm_value_count = rows * cols / m * n elements (that call also checks the layout).
   0, or -1 with an exception; the caller releases *values and *indices either way. */
static int parse_nm(PyObject *values_obj, PyObject *indices_obj, long long rows, long long cols, long long n, long long m,
                    PyArrayObject **values, PyArrayObject **indices) {
    *indices = NULL;
    *values = sparse_float32_array(values_obj, "values");
    if (*values == NULL) return -1;
    *indices = sparse_exact_array(indices_obj, NPY_UINT8, "indices");
    if (*indices == NULL) return -1;
    int64_t count = 0;
    sp_status status;
    SP_CALL(status, sp_nm_value_count(rows, cols, n, m, &count));
    if (status != SP_OK) { raise_status(status); return -1; }
    if ((int64_t)PyArray_SIZE(*values) != count || (int64_t)PyArray_SIZE(*indices) != count) {
        PyErr_Format(PyExc_ValueError, "values and indices must hold rows * cols / m * n = %lld elements, got %lld and %lld",
                     (long long)count, (long long)PyArray_SIZE(*values), (long long)PyArray_SIZE(*indices));
        return -1;
    }
    return 0;
}

static PyObject *core_nm_matmul(PyObject *self, PyObject *args) {
    PyObject *values_obj, *indices_obj, *x_obj;
    long long rows, cols, n, m;
    if (!PyArg_ParseTuple(args, "OOLLLLO:nm_matmul", &values_obj, &indices_obj, &rows, &cols, &n, &m, &x_obj)) return NULL;
    PyArrayObject *values = NULL, *indices = NULL, *x = NULL, *y = NULL;
    int64_t x_rows, batch;
    if (parse_nm(values_obj, indices_obj, rows, cols, n, m, &values, &indices) < 0) goto error;
    x = sparse_activations(x_obj, &x_rows, &batch);
    if (x == NULL) goto error;
    y = sparse_new_product(x, rows, batch);
    if (y == NULL) goto error;
    sp_status status;
    SP_CALL(status, sp_nm_matmul_f32(rows, cols, n, m, (const float *)PyArray_DATA(values), (const uint8_t *)PyArray_DATA(indices),
                                     (const float *)PyArray_DATA(x), x_rows, batch, (float *)PyArray_DATA(y)));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(values); Py_DECREF(indices); Py_DECREF(x);
    return (PyObject *)y;
error:
    Py_XDECREF(values); Py_XDECREF(indices); Py_XDECREF(x); Py_XDECREF(y);
    return NULL;
}

/* nm_pack(values, indices, rows, cols, n, m) -> the packed matmul layout (read-only uint8 array). */
static PyObject *core_nm_pack(PyObject *self, PyObject *args) {
    PyObject *values_obj, *indices_obj;
    long long rows, cols, n, m;
    if (!PyArg_ParseTuple(args, "OOLLLL:nm_pack", &values_obj, &indices_obj, &rows, &cols, &n, &m)) return NULL;
    PyArrayObject *values = NULL, *indices = NULL, *packed = NULL;
    if (parse_nm(values_obj, indices_obj, rows, cols, n, m, &values, &indices) < 0) goto error;
    int64_t bytes = 0;
    sp_status status;
    SP_CALL(status, sp_nm_packed_bytes(rows, cols, n, m, &bytes));
    if (status != SP_OK) { raise_status(status); goto error; }
    npy_intp dims[1] = {(npy_intp)bytes};
    packed = (PyArrayObject *)PyArray_EMPTY(1, dims, NPY_UINT8, 0);
    if (packed == NULL) goto error;
    SP_CALL(status, sp_nm_pack(rows, cols, n, m, (const float *)PyArray_DATA(values), (const uint8_t *)PyArray_DATA(indices),
                               PyArray_DATA(packed), bytes));
    if (status != SP_OK) { raise_status(status); goto error; }
    PyArray_CLEARFLAGS(packed, NPY_ARRAY_WRITEABLE);
    Py_DECREF(values); Py_DECREF(indices);
    return (PyObject *)packed;
error:
    Py_XDECREF(values); Py_XDECREF(indices); Py_XDECREF(packed);
    return NULL;
}

/* nm_packed_matmul(packed, rows, cols, n, m, x) -> W @ x from the layout of nm_pack. */
static PyObject *core_nm_packed_matmul(PyObject *self, PyObject *args) {
    PyObject *packed_obj, *x_obj;
    long long rows, cols, n, m;
    if (!PyArg_ParseTuple(args, "OLLLLO:nm_packed_matmul", &packed_obj, &rows, &cols, &n, &m, &x_obj)) return NULL;
    PyArrayObject *packed = NULL, *x = NULL, *y = NULL;
    int64_t x_rows, batch;
    packed = sparse_exact_array(packed_obj, NPY_UINT8, "packed");
    if (packed == NULL) goto error;
    x = sparse_activations(x_obj, &x_rows, &batch);
    if (x == NULL) goto error;
    if (rows < 0) { PyErr_Format(PyExc_ValueError, "rows must be >= 0, got %lld", rows); goto error; }
    y = sparse_new_product(x, rows, batch);
    if (y == NULL) goto error;
    sp_status status;
    SP_CALL(status, sp_nm_packed_matmul_f32(rows, cols, n, m, PyArray_DATA(packed), (int64_t)PyArray_NBYTES(packed),
                                            (const float *)PyArray_DATA(x), x_rows, batch, (float *)PyArray_DATA(y)));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(packed); Py_DECREF(x);
    return (PyObject *)y;
error:
    Py_XDECREF(packed); Py_XDECREF(x); Py_XDECREF(y);
    return NULL;
}

static PyObject *core_nm_to_dense(PyObject *self, PyObject *args) {
    PyObject *values_obj, *indices_obj;
    long long rows, cols, n, m;
    if (!PyArg_ParseTuple(args, "OOLLLL:nm_to_dense", &values_obj, &indices_obj, &rows, &cols, &n, &m)) return NULL;
    PyArrayObject *values = NULL, *indices = NULL, *out = NULL;
    if (parse_nm(values_obj, indices_obj, rows, cols, n, m, &values, &indices) < 0) goto error;
    npy_intp dims[2] = {(npy_intp)rows, (npy_intp)cols};
    out = (PyArrayObject *)PyArray_EMPTY(2, dims, NPY_FLOAT, 0);
    if (out == NULL) goto error;
    sp_status status;
    SP_CALL(status, sp_nm_to_dense_f32(rows, cols, n, m, (const float *)PyArray_DATA(values), (const uint8_t *)PyArray_DATA(indices),
                                       (float *)PyArray_DATA(out)));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(values); Py_DECREF(indices);
    return (PyObject *)out;
error:
    Py_XDECREF(values); Py_XDECREF(indices); Py_XDECREF(out);
    return NULL;
}

/* The caller's output of W @ x (quantized_matmul's out=), a new reference: a writeable C-contiguous float32
   array of the product's shape ((rows,) for a 1-D x, else (rows, batch)) sharing no memory with an array the
   kernel reads (`inputs`, `count` of them, NULL entries skipped). */
static PyArrayObject *sparse_product_out(PyObject *obj, PyArrayObject *x, int64_t rows, int64_t batch,
                                         PyArrayObject *const *inputs, int count) {
    if (!PyArray_Check(obj) || PyArray_TYPE((PyArrayObject *)obj) != NPY_FLOAT32) {
        PyErr_Format(PyExc_TypeError, "out must be a float32 numpy array, got %s",
                     PyArray_Check(obj) ? PyArray_DESCR((PyArrayObject *)obj)->typeobj->tp_name : Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *out = (PyArrayObject *)obj;
    int ndim = PyArray_NDIM(x);
    if (PyArray_NDIM(out) != ndim || PyArray_DIM(out, 0) != (npy_intp)rows || (ndim == 2 && PyArray_DIM(out, 1) != (npy_intp)batch)) {
        if (ndim == 2) {
            PyErr_Format(PyExc_ValueError, "out must have the product's shape (%lld, %lld)", (long long)rows, (long long)batch);
        } else {
            PyErr_Format(PyExc_ValueError, "out must have the product's shape (%lld,)", (long long)rows);
        }
        return NULL;
    }
    if (!PyArray_IS_C_CONTIGUOUS(out) || !PyArray_ISWRITEABLE(out)) {
        PyErr_SetString(PyExc_ValueError, "out must be a writeable C-contiguous array");
        return NULL;
    }
    for (int i = 0; i < count; i++) {
        if (inputs[i] != NULL && arrays_overlap(out, inputs[i])) {
            PyErr_SetString(PyExc_ValueError, "out must not share memory with the inputs (values, scale, zero_point, x)");
            return NULL;
        }
    }
    Py_INCREF(out);
    return out;
}

static PyObject *core_quantized_matmul(PyObject *self, PyObject *args) {
    PyObject *values_obj, *scale_obj, *zero_point_obj, *x_obj, *out_obj = Py_None;
    if (!PyArg_ParseTuple(args, "OOOO|O:quantized_matmul", &values_obj, &scale_obj, &zero_point_obj, &x_obj, &out_obj))
        return NULL;
    PyArrayObject *values = NULL, *scale = NULL, *zero_point = NULL, *x = NULL, *y = NULL;
    int64_t x_rows, batch;
    values = sparse_exact_array(values_obj, NPY_INT8, "values");
    if (values == NULL) goto error;
    if (PyArray_NDIM(values) != 2) {
        PyErr_Format(PyExc_ValueError, "values must be 2-D (out_features, in_features), got %d dimension(s)", PyArray_NDIM(values));
        goto error;
    }
    int64_t rows = (int64_t)PyArray_DIM(values, 0), cols = (int64_t)PyArray_DIM(values, 1);
    scale = sparse_float32_array(scale_obj, "scale");
    if (scale == NULL) goto error;
    if (PyArray_SIZE(scale) != (npy_intp)rows) {
        PyErr_Format(PyExc_ValueError, "scale must have one entry per row (%lld), got %zd", (long long)rows, (Py_ssize_t)PyArray_SIZE(scale));
        goto error;
    }
    if (zero_point_obj != Py_None) {
        zero_point = sparse_exact_array(zero_point_obj, NPY_INT32, "zero_point");
        if (zero_point == NULL) goto error;
        if (PyArray_SIZE(zero_point) != (npy_intp)rows) {
            PyErr_Format(PyExc_ValueError, "zero_point must have one entry per row (%lld), got %zd", (long long)rows,
                         (Py_ssize_t)PyArray_SIZE(zero_point));
            goto error;
        }
    }
    x = sparse_activations(x_obj, &x_rows, &batch);
    if (x == NULL) goto error;
    if (out_obj == Py_None) {
        y = sparse_new_product(x, rows, batch);
    } else {
        PyArrayObject *const inputs[] = {values, scale, zero_point, x};
        y = sparse_product_out(out_obj, x, rows, batch, inputs, 4);
    }
    if (y == NULL) goto error;
    sp_status status;
    SP_CALL(status, sp_quantized_matmul_i8((const int8_t *)PyArray_DATA(values), rows, cols, (const float *)PyArray_DATA(scale),
                                           zero_point ? (const int32_t *)PyArray_DATA(zero_point) : NULL,
                                           (const float *)PyArray_DATA(x), x_rows, batch, (float *)PyArray_DATA(y)));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(values); Py_DECREF(scale); Py_XDECREF(zero_point); Py_DECREF(x);
    return (PyObject *)y;
error:
    Py_XDECREF(values); Py_XDECREF(scale); Py_XDECREF(zero_point); Py_XDECREF(x); Py_XDECREF(y);
    return NULL;
}

#define TENSOR_CORE_METHODS                                                                                          \
    {"csr_from_dense", core_csr_from_dense, METH_VARARGS, "csr_from_dense(w) -> (indptr, indices, data)"},          \
    {"csr_matmul", core_csr_matmul, METH_VARARGS, "csr_matmul(indptr, indices, data, rows, cols, x) -> W @ x"},     \
    {"csr_to_dense", core_csr_to_dense, METH_VARARGS, "csr_to_dense(indptr, indices, data, rows, cols) -> dense"},  \
    {"nm_from_dense", core_nm_from_dense, METH_VARARGS, "nm_from_dense(w, n, m) -> (values, indices)"},             \
    {"nm_compact", core_nm_compact, METH_VARARGS, "nm_compact(values, keep, n, m) -> (stored, positions)"},     \
    {"nm_quantize_encode", core_nm_quantize_encode, METH_VARARGS,                                                  \
     "nm_quantize_encode(weights, n, m, bits, symmetric, group_size) -> (scales, zero_points, nm_values, "          \
     "nm_positions, mask_bits, mask_values, nonzeros, norm, difference)"},                                          \
    {"apply_mask", core_apply_mask, METH_VARARGS, "apply_mask(w, keep) -> w * keep + 0 (float32)"},     \
    {"mask_compact", core_mask_compact, METH_VARARGS, "mask_compact(values, keep, kept) -> values[keep]"},     \
    {"squared_error", core_squared_error, METH_VARARGS, "squared_error(a, b) -> (sum a^2, sum (a-b)^2); a float32, or uint16 bfloat16 bits"},     \
    {"nm_matmul", core_nm_matmul, METH_VARARGS, "nm_matmul(values, indices, rows, cols, n, m, x) -> W @ x"},        \
    {"nm_pack", core_nm_pack, METH_VARARGS, "nm_pack(values, indices, rows, cols, n, m) -> packed layout"},       \
    {"nm_packed_matmul", core_nm_packed_matmul, METH_VARARGS, "nm_packed_matmul(packed, rows, cols, n, m, x) -> W @ x"}, \
    {"nm_to_dense", core_nm_to_dense, METH_VARARGS, "nm_to_dense(values, indices, rows, cols, n, m) -> dense"},     \
    {"quantized_matmul", core_quantized_matmul, METH_VARARGS,                                                       \
     "quantized_matmul(values, scale, zero_point, x[, out]) -> W @ x (into out when given)"},

/* ======================================================================== */
/* Weight files                                                              */
/* ======================================================================== */

/*
 * safetensors files. An open file is a capsule owning the sp_safetensors_file
 * (closed, i.e. unmapped, when the capsule dies). Tensor data come back as
 * read-only 1-D uint8 arrays that view the mapping without copying and hold
 * the capsule as their base, so the mapping lives as long as any of them.
 * A writer is a capsule owning the sp_safetensors_writer (an uncommitted file
 * is discarded when the capsule dies).
 */
#define SAFETENSORS_FILE_CAPSULE "swiftprune.safetensors_file"
#define SAFETENSORS_WRITER_CAPSULE "swiftprune.safetensors_writer"

static void safetensors_file_destructor(PyObject *capsule) {
    sp_safetensors_file *file = (sp_safetensors_file *)PyCapsule_GetPointer(capsule, SAFETENSORS_FILE_CAPSULE);
    SP_NOGIL(sp_safetensors_close(file));
}

static void safetensors_writer_destructor(PyObject *capsule) {
    sp_safetensors_writer *writer = (sp_safetensors_writer *)PyCapsule_GetPointer(capsule, SAFETENSORS_WRITER_CAPSULE);
    SP_NOGIL(sp_safetensors_writer_free(writer));
}

static PyObject *core_safetensors_open(PyObject *self, PyObject *args) {
    PyObject *path = NULL;
    int mapped = 1;
    if (!PyArg_ParseTuple(args, "O&|p:safetensors_open", PyUnicode_FSConverter, &path, &mapped)) return NULL;
    sp_safetensors_file *file = NULL;
    sp_status status;
    SP_CALL(status, sp_safetensors_open_ex(PyBytes_AS_STRING(path), mapped ? SP_SAFETENSORS_MMAP : 0, &file));
    Py_DECREF(path);
    if (status != SP_OK) return raise_status(status);
    PyObject *capsule = PyCapsule_New(file, SAFETENSORS_FILE_CAPSULE, safetensors_file_destructor);
    if (capsule == NULL) SP_NOGIL(sp_safetensors_close(file));
    return capsule;
}

/* The shape as a tuple of ints. */
static PyObject *shape_tuple(const int64_t *shape, int64_t ndim) {
    PyObject *tuple = PyTuple_New((Py_ssize_t)ndim);
    if (tuple == NULL) return NULL;
    for (int64_t i = 0; i < ndim; i++) {
        PyObject *dim = PyLong_FromLongLong((long long)shape[i]);
        if (dim == NULL) { Py_DECREF(tuple); return NULL; }
        PyTuple_SET_ITEM(tuple, (Py_ssize_t)i, dim);
    }
    return tuple;
}

/* safetensors_tensors(file) -> [(name, dtype, shape, uint8 view), ...] in header order. */
static PyObject *core_safetensors_tensors(PyObject *self, PyObject *args) {
    PyObject *capsule;
    if (!PyArg_ParseTuple(args, "O:safetensors_tensors", &capsule)) return NULL;
    sp_safetensors_file *file = (sp_safetensors_file *)PyCapsule_GetPointer(capsule, SAFETENSORS_FILE_CAPSULE);
    if (file == NULL) return NULL;
    int64_t count;
    SP_NOGIL(count = sp_safetensors_tensor_count(file));
    PyObject *list = PyList_New(0), *item = NULL, *name = NULL, *shape = NULL;
    PyArrayObject *data = NULL;
    if (list == NULL) return NULL;
    for (int64_t i = 0; i < count; i++) {
        sp_tensor_record record;
        sp_status status;
        SP_CALL(status, sp_safetensors_tensor(file, i, &record));
        if (status != SP_OK) { raise_status(status); goto error; }
        name = PyUnicode_DecodeUTF8(record.name, (Py_ssize_t)record.name_length, "strict");
        if (name == NULL) goto error;
        shape = shape_tuple(record.shape, record.ndim);
        if (shape == NULL) goto error;
        npy_intp n = (npy_intp)record.nbytes;
        if (record.data == NULL && n > 0) {
            /* read mode: the bytes come later from safetensors_read */
            Py_INCREF(Py_None);
            data = (PyArrayObject *)Py_None;
        } else if (n > 0) {
            data = (PyArrayObject *)PyArray_NewFromDescr(&PyArray_Type, PyArray_DescrFromType(NPY_UINT8), 1, &n, NULL,
                                                         (void *)record.data, 0, NULL);
            if (data == NULL) goto error;
            Py_INCREF(capsule);
            if (PyArray_SetBaseObject(data, capsule) < 0) goto error; /* steals the reference, even on failure */
        } else {
            data = (PyArrayObject *)PyArray_ZEROS(1, &n, NPY_UINT8, 0);
            if (data == NULL) goto error;
        }
        item = Py_BuildValue("(OsOO)", name, record.dtype, shape, (PyObject *)data);
        if (item == NULL) goto error;
        Py_CLEAR(name);
        Py_CLEAR(shape);
        Py_CLEAR(data);
        if (PyList_Append(list, item) < 0) goto error;
        Py_CLEAR(item);
    }
    return list;
error:
    Py_XDECREF(item);
    Py_XDECREF(name);
    Py_XDECREF(shape);
    Py_XDECREF(data);
    Py_DECREF(list);
    return NULL;
}

/* safetensors_metadata(file) -> dict of str -> str, in header order. */
static PyObject *core_safetensors_metadata(PyObject *self, PyObject *args) {
    PyObject *capsule;
    if (!PyArg_ParseTuple(args, "O:safetensors_metadata", &capsule)) return NULL;
    sp_safetensors_file *file = (sp_safetensors_file *)PyCapsule_GetPointer(capsule, SAFETENSORS_FILE_CAPSULE);
    if (file == NULL) return NULL;
    PyObject *dict = PyDict_New(), *key = NULL, *value = NULL;
    if (dict == NULL) return NULL;
    int64_t count;
    SP_NOGIL(count = sp_safetensors_metadata_count(file));
    for (int64_t i = 0; i < count; i++) {
        const char *k, *v;
        int64_t kn, vn;
        sp_status status;
        SP_CALL(status, sp_safetensors_metadata(file, i, &k, &kn, &v, &vn));
        if (status != SP_OK) { raise_status(status); goto error; }
        key = PyUnicode_DecodeUTF8(k, (Py_ssize_t)kn, "strict");
        value = PyUnicode_DecodeUTF8(v, (Py_ssize_t)vn, "strict");
        if (key == NULL || value == NULL || PyDict_SetItem(dict, key, value) < 0) goto error;
        Py_CLEAR(key);
        Py_CLEAR(value);
    }
    return dict;
error:
    Py_XDECREF(key);
    Py_XDECREF(value);
    Py_DECREF(dict);
    return NULL;
}

static PyObject *core_safetensors_release(PyObject *self, PyObject *args) {
    PyObject *capsule;
    long long index;
    if (!PyArg_ParseTuple(args, "OL:safetensors_release", &capsule, &index)) return NULL;
    sp_safetensors_file *file = (sp_safetensors_file *)PyCapsule_GetPointer(capsule, SAFETENSORS_FILE_CAPSULE);
    if (file == NULL) return NULL;
    sp_status status;
    SP_CALL(status, sp_safetensors_release(file, (int64_t)index));
    if (status != SP_OK) return raise_status(status);
    Py_RETURN_NONE;
}

/* safetensors_read(file, index, out): copies tensor `index` into the
 * C-contiguous writable uint8 array `out` (exactly its size), GIL released. */
static PyObject *core_safetensors_read(PyObject *self, PyObject *args) {
    PyObject *capsule;
    long long index;
    PyArrayObject *out;
    if (!PyArg_ParseTuple(args, "OLO!:safetensors_read", &capsule, &index, &PyArray_Type, &out)) return NULL;
    sp_safetensors_file *file = (sp_safetensors_file *)PyCapsule_GetPointer(capsule, SAFETENSORS_FILE_CAPSULE);
    if (file == NULL) return NULL;
    if (!PyArray_IS_C_CONTIGUOUS(out) || !PyArray_ISWRITEABLE(out)) {
        PyErr_SetString(PyExc_ValueError, "safetensors_read: out must be a writable C-contiguous array");
        return NULL;
    }
    sp_status status;
    SP_CALL(status, sp_safetensors_read(file, (int64_t)index, PyArray_DATA(out), (int64_t)PyArray_NBYTES(out)));
    if (status != SP_OK) return raise_status(status);
    Py_RETURN_NONE;
}

static PyObject *core_safetensors_writer(PyObject *self, PyObject *args) {
    PyObject *path = NULL;
    long long header_reserve;
    if (!PyArg_ParseTuple(args, "O&L:safetensors_writer", PyUnicode_FSConverter, &path, &header_reserve)) return NULL;
    sp_safetensors_writer *writer = NULL;
    sp_status status;
    SP_CALL(status, sp_safetensors_writer_create(PyBytes_AS_STRING(path), (int64_t)header_reserve, &writer));
    Py_DECREF(path);
    if (status != SP_OK) return raise_status(status);
    PyObject *capsule = PyCapsule_New(writer, SAFETENSORS_WRITER_CAPSULE, safetensors_writer_destructor);
    if (capsule == NULL) SP_NOGIL(sp_safetensors_writer_free(writer));
    return capsule;
}

/* safetensors_writer_add(writer, name, dtype, shape, array): appends the bytes
 * of `array` (made C-contiguous here if needed; its dtype is the caller's
 * business: the bytes are written as they are) under `name`. */
static PyObject *core_safetensors_writer_add(PyObject *self, PyObject *args) {
    PyObject *capsule, *shape_obj, *array_obj;
    const char *name, *dtype;
    Py_ssize_t name_length;
    if (!PyArg_ParseTuple(args, "Os#sOO:safetensors_writer_add", &capsule, &name, &name_length, &dtype, &shape_obj,
                          &array_obj)) return NULL;
    sp_safetensors_writer *writer = (sp_safetensors_writer *)PyCapsule_GetPointer(capsule, SAFETENSORS_WRITER_CAPSULE);
    if (writer == NULL) return NULL;
    int64_t *shape = NULL;
    PyArrayObject *array = NULL;
    PyObject *dims = PySequence_Fast(shape_obj, "shape must be a sequence of ints");
    if (dims == NULL) return NULL;
    Py_ssize_t ndim = PySequence_Fast_GET_SIZE(dims);
    shape = PyMem_Malloc(sizeof(int64_t) * (size_t)(ndim > 0 ? ndim : 1));
    if (shape == NULL) { PyErr_NoMemory(); goto error; }
    for (Py_ssize_t i = 0; i < ndim; i++) {
        long long d = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(dims, i));
        if (d == -1 && PyErr_Occurred()) goto error;
        shape[i] = (int64_t)d;
    }
    array = (PyArrayObject *)PyArray_FROM_OF(array_obj, NPY_ARRAY_IN_ARRAY);
    if (array == NULL) goto error;
    sp_tensor_record record = {name, (int64_t)name_length, dtype, (int64_t)ndim, shape,
                               PyArray_DATA(array), (int64_t)PyArray_NBYTES(array)};
    sp_status status;
    SP_CALL(status, sp_safetensors_writer_add(writer, &record));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(dims);
    PyMem_Free(shape);
    Py_DECREF(array);
    Py_RETURN_NONE;
error:
    Py_XDECREF(dims);
    PyMem_Free(shape);
    Py_XDECREF(array);
    return NULL;
}

static PyObject *core_safetensors_writer_set_metadata(PyObject *self, PyObject *args) {
    PyObject *capsule;
    const char *key, *value;
    Py_ssize_t key_length, value_length;
    if (!PyArg_ParseTuple(args, "Os#s#:safetensors_writer_set_metadata", &capsule, &key, &key_length, &value,
                          &value_length)) return NULL;
    sp_safetensors_writer *writer = (sp_safetensors_writer *)PyCapsule_GetPointer(capsule, SAFETENSORS_WRITER_CAPSULE);
    if (writer == NULL) return NULL;
    sp_status status;
    SP_CALL(status, sp_safetensors_writer_set_metadata(writer, key, (int64_t)key_length, value, (int64_t)value_length));
    if (status != SP_OK) return raise_status(status);
    Py_RETURN_NONE;
}

static PyObject *core_safetensors_writer_commit(PyObject *self, PyObject *args) {
    PyObject *capsule;
    if (!PyArg_ParseTuple(args, "O:safetensors_writer_commit", &capsule)) return NULL;
    sp_safetensors_writer *writer = (sp_safetensors_writer *)PyCapsule_GetPointer(capsule, SAFETENSORS_WRITER_CAPSULE);
    if (writer == NULL) return NULL;
    sp_status status;
    SP_CALL(status, sp_safetensors_writer_commit(writer));
    if (status != SP_OK) return raise_status(status);
    Py_RETURN_NONE;
}

#define IO_METHODS                                                                                             \
    {"safetensors_open", core_safetensors_open, METH_VARARGS, "safetensors_open(path) -> file capsule"},       \
    {"safetensors_tensors", core_safetensors_tensors, METH_VARARGS,                                            \
     "safetensors_tensors(file) -> [(name, dtype, shape, uint8 view)]"},                                       \
    {"safetensors_metadata", core_safetensors_metadata, METH_VARARGS, "safetensors_metadata(file) -> dict"},   \
    {"safetensors_release", core_safetensors_release, METH_VARARGS, "safetensors_release(file, index)"},       \
    {"safetensors_read", core_safetensors_read, METH_VARARGS, "safetensors_read(file, index, out)"},          \
    {"safetensors_writer", core_safetensors_writer, METH_VARARGS, "safetensors_writer(path, header_reserve) -> writer"},       \
    {"safetensors_writer_add", core_safetensors_writer_add, METH_VARARGS,                                      \
     "safetensors_writer_add(writer, name, dtype, shape, array)"},                                             \
    {"safetensors_writer_set_metadata", core_safetensors_writer_set_metadata, METH_VARARGS,                    \
     "safetensors_writer_set_metadata(writer, key, value)"},                                                   \
    {"safetensors_writer_commit", core_safetensors_writer_commit, METH_VARARGS, "safetensors_writer_commit(writer)"},

/* ======================================================================== */
/* CPU features                                                              */
/* ======================================================================== */

static PyObject *core_cpu_has_avx512(PyObject *self, PyObject *noargs) {
    int32_t has;
    SP_NOGIL(has = sp_cpu_has_avx512());
    return PyBool_FromLong(has);
}

#define CPU_METHODS \
    {"cpu_has_avx512", core_cpu_has_avx512, METH_NOARGS, "Whether the AVX-512 kernels run in this process."},

/* ======================================================================== */
/* Module                                                                    */
/* ======================================================================== */

static PyMethodDef core_methods[] = {
    LIBRARY_METHODS
    PRUNING_METHODS
    QUANTIZATION_METHODS
    FACTORIZATION_METHODS
    MATMUL_METHODS
    TENSOR_CORE_METHODS
    IO_METHODS
    CPU_METHODS
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT, "swiftprune._core",
    "Low-level bindings to the swiftprune C ABI. Use the `swiftprune` package instead.",
    -1, core_methods,
};

PyMODINIT_FUNC PyInit__core(void) {
    import_array();
    return PyModule_Create(&core_module);
}
