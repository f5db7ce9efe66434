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
    default: PyErr_Format(PyExc_RuntimeError, "swiftprune internal error (%d): %s", (int)status, message); break;
    }
    return NULL;
}

/* Runs a Swift call with the GIL released; `call` is an expression yielding sp_status. */
#define SP_CALL(status, call)   \
    do {                        \
        Py_BEGIN_ALLOW_THREADS  \
        status = (call);        \
        Py_END_ALLOW_THREADS    \
    } while (0)

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
        PyObject *dtype_str = PyObject_Str((PyObject *)PyArray_DESCR(any));
        PyErr_Format(PyExc_TypeError,
                     "%s must be a real floating-point array (float16, float32 or float64), got dtype %S",
                     name, dtype_str ? dtype_str : Py_None);
        Py_XDECREF(dtype_str);
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

/* ======================================================================== */
/* Library                                                                   */
/* ======================================================================== */

static PyObject *core_version(PyObject *self, PyObject *noargs) {
    return PyUnicode_FromString(sp_version());
}

static PyObject *core_set_num_threads(PyObject *self, PyObject *args) {
    long long n;
    if (!PyArg_ParseTuple(args, "L:set_num_threads", &n)) return NULL;
    sp_status status = sp_set_num_threads((int64_t)n);
    if (status != SP_OK) return raise_status(status);
    Py_RETURN_NONE;
}

static PyObject *core_get_num_threads(PyObject *self, PyObject *noargs) {
    return PyLong_FromLongLong((long long)sp_get_num_threads());
}

#define LIBRARY_METHODS                                                                  \
    {"version", core_version, METH_NOARGS, "The C library's version string."},          \
    {"set_num_threads", core_set_num_threads, METH_VARARGS, "Set the thread count."},   \
    {"get_num_threads", core_get_num_threads, METH_NOARGS, "The thread count in force."},

/* ======================================================================== */
/* Pruning                                                                   */
/* ======================================================================== */

static PyObject *core_magnitude_mask(PyObject *self, PyObject *args) {
    PyObject *w_obj;
    double sparsity;
    if (!PyArg_ParseTuple(args, "Od:magnitude_mask", &w_obj, &sparsity)) return NULL;
    int is_double;
    PyArrayObject *w = as_float_array(w_obj, "w", &is_double);
    if (w == NULL) return NULL;
    PyArrayObject *mask = empty_like_shape(w, NPY_BOOL);
    if (mask == NULL) goto error;
    int64_t n = (int64_t)PyArray_SIZE(w);
    sp_status status;
    if (is_double) {
        SP_CALL(status, sp_magnitude_mask_f64((const double *)PyArray_DATA(w), n, sparsity, (bool *)PyArray_DATA(mask)));
    } else {
        SP_CALL(status, sp_magnitude_mask_f32((const float *)PyArray_DATA(w), n, sparsity, (bool *)PyArray_DATA(mask)));
    }
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(w);
    return (PyObject *)mask;
error:
    Py_XDECREF(w);
    Py_XDECREF(mask);
    return NULL;
}

#define PRUNING_METHODS \
    {"magnitude_mask", core_magnitude_mask, METH_VARARGS, "magnitude_mask(w, sparsity) -> bool array"},

/* ======================================================================== */
/* Quantization                                                              */
/* ======================================================================== */

#define QUANTIZATION_METHODS

/* ======================================================================== */
/* Low-rank factorization                                                    */
/* ======================================================================== */

#define FACTORIZATION_METHODS

/* ======================================================================== */
/* Tensor core: matmul, sparse and quantized kernels                         */
/* ======================================================================== */

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

/* Parses (indptr, indices, data, rows, cols) into contiguous int64 / int32 / float32 arrays. */
static int parse_csr(PyObject *indptr_obj, PyObject *indices_obj, PyObject *data_obj, PyArrayObject **indptr,
                     PyArrayObject **indices, PyArrayObject **data) {
    *indptr = sparse_exact_array(indptr_obj, NPY_INT64, "indptr");
    if (*indptr == NULL) return -1;
    *indices = sparse_exact_array(indices_obj, NPY_INT32, "indices");
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

static PyObject *core_csr_matmul(PyObject *self, PyObject *args) {
    PyObject *indptr_obj, *indices_obj, *data_obj, *x_obj;
    long long rows, cols;
    if (!PyArg_ParseTuple(args, "OOOLLO:csr_matmul", &indptr_obj, &indices_obj, &data_obj, &rows, &cols, &x_obj)) return NULL;
    PyArrayObject *indptr = NULL, *indices = NULL, *data = NULL, *x = NULL, *y = NULL;
    int64_t x_rows, batch;
    if (parse_csr(indptr_obj, indices_obj, data_obj, &indptr, &indices, &data) < 0) goto error;
    if (rows < 0 || rows >= PY_SSIZE_T_MAX || PyArray_SIZE(indptr) != (npy_intp)rows + 1) {
        PyErr_Format(PyExc_ValueError, "indptr must have rows + 1 entries (rows = %lld), got %zd", rows, (Py_ssize_t)PyArray_SIZE(indptr));
        goto error;
    }
    x = sparse_activations(x_obj, &x_rows, &batch);
    if (x == NULL) goto error;
    y = sparse_new_product(x, rows, batch);
    if (y == NULL) goto error;
    sp_status status;
    SP_CALL(status, sp_csr_matmul_f32(rows, cols, (const int64_t *)PyArray_DATA(indptr), (const int32_t *)PyArray_DATA(indices),
                                      (const float *)PyArray_DATA(data), (int64_t)PyArray_SIZE(data),
                                      (const float *)PyArray_DATA(x), x_rows, batch, (float *)PyArray_DATA(y)));
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

static int parse_nm(PyObject *values_obj, PyObject *indices_obj, PyArrayObject **values, PyArrayObject **indices) {
    *values = sparse_float32_array(values_obj, "values");
    if (*values == NULL) return -1;
    *indices = sparse_exact_array(indices_obj, NPY_UINT8, "indices");
    return *indices == NULL ? -1 : 0;
}

static PyObject *core_nm_matmul(PyObject *self, PyObject *args) {
    PyObject *values_obj, *indices_obj, *x_obj;
    long long rows, cols, n, m;
    if (!PyArg_ParseTuple(args, "OOLLLLO:nm_matmul", &values_obj, &indices_obj, &rows, &cols, &n, &m, &x_obj)) return NULL;
    PyArrayObject *values = NULL, *indices = NULL, *x = NULL, *y = NULL;
    int64_t x_rows, batch;
    if (parse_nm(values_obj, indices_obj, &values, &indices) < 0) goto error;
    x = sparse_activations(x_obj, &x_rows, &batch);
    if (x == NULL) goto error;
    if (rows < 0) { PyErr_Format(PyExc_ValueError, "rows must be >= 0, got %lld", rows); goto error; }
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

static PyObject *core_nm_to_dense(PyObject *self, PyObject *args) {
    PyObject *values_obj, *indices_obj;
    long long rows, cols, n, m;
    if (!PyArg_ParseTuple(args, "OOLLLL:nm_to_dense", &values_obj, &indices_obj, &rows, &cols, &n, &m)) return NULL;
    PyArrayObject *values = NULL, *indices = NULL, *out = NULL;
    if (parse_nm(values_obj, indices_obj, &values, &indices) < 0) goto error;
    if (rows < 0 || cols < 0) { PyErr_Format(PyExc_ValueError, "shape (%lld, %lld) has a negative dimension", rows, cols); goto error; }
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

static PyObject *core_quantized_matmul(PyObject *self, PyObject *args) {
    PyObject *values_obj, *scale_obj, *zero_point_obj, *x_obj;
    if (!PyArg_ParseTuple(args, "OOOO:quantized_matmul", &values_obj, &scale_obj, &zero_point_obj, &x_obj)) return NULL;
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
    y = sparse_new_product(x, rows, batch);
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
    {"nm_matmul", core_nm_matmul, METH_VARARGS, "nm_matmul(values, indices, rows, cols, n, m, x) -> W @ x"},        \
    {"nm_to_dense", core_nm_to_dense, METH_VARARGS, "nm_to_dense(values, indices, rows, cols, n, m) -> dense"},     \
    {"quantized_matmul", core_quantized_matmul, METH_VARARGS,                                                       \
     "quantized_matmul(values, scale, zero_point, x) -> W @ x"},

/* ======================================================================== */
/* Weight files                                                              */
/* ======================================================================== */

#define IO_METHODS

/* ======================================================================== */
/* Module                                                                    */
/* ======================================================================== */

static PyMethodDef core_methods[] = {
    LIBRARY_METHODS
    PRUNING_METHODS
    QUANTIZATION_METHODS
    FACTORIZATION_METHODS
    TENSOR_CORE_METHODS
    IO_METHODS
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
