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

#define TENSOR_CORE_METHODS

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
