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

static PyObject *core_svd(PyObject *self, PyObject *args) {
    PyObject *w_obj;
    if (!PyArg_ParseTuple(args, "O:svd", &w_obj)) return NULL;
    int is_double;
    PyArrayObject *u = NULL, *s = NULL, *vt = NULL;
    PyArrayObject *w = as_float_matrix(w_obj, "w", &is_double);
    if (w == NULL) return NULL;
    npy_intp m = PyArray_DIM(w, 0), n = PyArray_DIM(w, 1), r = m < n ? m : n;
    npy_intp u_dims[2] = {m, r}, s_dims[1] = {r}, vt_dims[2] = {r, n};
    u = (PyArrayObject *)PyArray_EMPTY(2, u_dims, NPY_FLOAT, 0);
    s = (PyArrayObject *)PyArray_EMPTY(1, s_dims, NPY_FLOAT, 0);
    vt = (PyArrayObject *)PyArray_EMPTY(2, vt_dims, NPY_FLOAT, 0);
    if (u == NULL || s == NULL || vt == NULL) goto error;
    sp_status status;
    float *u_data = (float *)PyArray_DATA(u), *s_data = (float *)PyArray_DATA(s), *vt_data = (float *)PyArray_DATA(vt);
    if (is_double) {
        SP_CALL(status, sp_svd_f64((const double *)PyArray_DATA(w), m, n, u_data, s_data, vt_data));
    } else {
        SP_CALL(status, sp_svd_f32((const float *)PyArray_DATA(w), m, n, u_data, s_data, vt_data));
    }
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
    if (!PyArg_ParseTuple(args, "OLLLK:randomized_svd", &w_obj, &rank, &oversample, &power_iters, &seed)) return NULL;
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
    npy_intp u_dims[2] = {m, (npy_intp)rank}, s_dims[1] = {(npy_intp)rank}, vt_dims[2] = {(npy_intp)rank, n};
    u = (PyArrayObject *)PyArray_EMPTY(2, u_dims, NPY_FLOAT, 0);
    s = (PyArrayObject *)PyArray_EMPTY(1, s_dims, NPY_FLOAT, 0);
    vt = (PyArrayObject *)PyArray_EMPTY(2, vt_dims, NPY_FLOAT, 0);
    if (u == NULL || s == NULL || vt == NULL) goto error;
    sp_status status;
    float *u_data = (float *)PyArray_DATA(u), *s_data = (float *)PyArray_DATA(s), *vt_data = (float *)PyArray_DATA(vt);
    if (is_double) {
        SP_CALL(status, sp_randomized_svd_f64((const double *)PyArray_DATA(w), m, n, rank, oversample, power_iters,
                                              (uint64_t)seed, u_data, s_data, vt_data));
    } else {
        SP_CALL(status, sp_randomized_svd_f32((const float *)PyArray_DATA(w), m, n, rank, oversample, power_iters,
                                              (uint64_t)seed, u_data, s_data, vt_data));
    }
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
    sp_status status = sp_low_rank_max_rank((int32_t)selector, value, m, n, &rank);
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
    sp_status status = sp_low_rank_max_rank((int32_t)selector, value, m, n, &capacity);
    if (status != SP_OK) { raise_status(status); goto error; }
    npy_intp a_dims[1] = {(npy_intp)(m * capacity)}, b_dims[1] = {(npy_intp)(capacity * n)};
    a_buf = (PyArrayObject *)PyArray_EMPTY(1, a_dims, NPY_FLOAT, 0);
    b_buf = (PyArrayObject *)PyArray_EMPTY(1, b_dims, NPY_FLOAT, 0);
    if (a_buf == NULL || b_buf == NULL) goto error;
    float *a_data = (float *)PyArray_DATA(a_buf), *b_data = (float *)PyArray_DATA(b_buf);
    if (is_double) {
        SP_CALL(status, sp_low_rank_f64((const double *)PyArray_DATA(w), m, n, (int32_t)selector, value,
                                        (int32_t)method, (uint64_t)seed, capacity, a_data, b_data, &rank));
    } else {
        SP_CALL(status, sp_low_rank_f32((const float *)PyArray_DATA(w), m, n, (int32_t)selector, value,
                                        (int32_t)method, (uint64_t)seed, capacity, a_data, b_data, &rank));
    }
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
     "randomized_svd(w, rank, oversample, power_iters, seed) -> (u, s, vt) float32"},                      \
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
        PyObject *dtype_str = PyObject_Str((PyObject *)PyArray_DESCR(any));
        PyErr_Format(PyExc_TypeError,
                     "%s must be a real floating-point array (float16, float32 or float64), got dtype %S",
                     name, dtype_str ? dtype_str : Py_None);
        Py_XDECREF(dtype_str);
        Py_DECREF(any);
        return NULL;
    }
    if (PyArray_NDIM(any) != 2) {
        PyErr_Format(PyExc_ValueError, "%s must be 2-D, got %d dimension(s)", name, PyArray_NDIM(any));
        Py_DECREF(any);
        return NULL;
    }
    *transposed = false;
    if (type == NPY_FLOAT && PyArray_ISALIGNED(any) && !PyArray_IS_C_CONTIGUOUS(any) &&
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

#define TENSOR_CORE_METHODS \
    {"matmul", core_matmul, METH_VARARGS, "matmul(a, b) -> float32 a @ b (2-D)"},

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
