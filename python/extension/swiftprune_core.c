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

static PyObject *core_quant_quantize(PyObject *self, PyObject *args) {
    PyObject *w_obj, *axis_obj;
    long long bits, group_size;
    int symmetric, method;
    double percentile;
    if (!PyArg_ParseTuple(args, "OLpOLid:quantize", &w_obj, &bits, &symmetric, &axis_obj, &group_size, &method,
                          &percentile))
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
    sp_status status = sp_quant_scale_shape(shape, ndim, has_axis, axis, (int64_t)group_size, scale_shape);
    if (status != SP_OK) { raise_status(status); goto error; }
    int int_type = symmetric ? NPY_INT8 : NPY_UINT8;
    values = empty_like_shape(w, int_type);
    scale = quant_empty_from_shape(ndim, scale_shape, NPY_FLOAT32);
    zero_point = quant_empty_from_shape(ndim, scale_shape, int_type);
    if (values == NULL || scale == NULL || zero_point == NULL) goto error;
    int64_t n_scales = (int64_t)PyArray_SIZE(scale);
    if (is_double) {
        SP_CALL(status, sp_quant_quantize_f64((const double *)PyArray_DATA(w), shape, ndim, (int64_t)bits,
                                              symmetric, has_axis, axis, (int64_t)group_size, method, percentile,
                                              PyArray_DATA(values), (float *)PyArray_DATA(scale),
                                              PyArray_DATA(zero_point), n_scales));
    } else {
        SP_CALL(status, sp_quant_quantize_f32((const float *)PyArray_DATA(w), shape, ndim, (int64_t)bits,
                                              symmetric, has_axis, axis, (int64_t)group_size, method, percentile,
                                              PyArray_DATA(values), (float *)PyArray_DATA(scale),
                                              PyArray_DATA(zero_point), n_scales));
    }
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

static PyObject *core_quant_pack_nibbles(PyObject *self, PyObject *args) {
    PyObject *values_obj;
    if (!PyArg_ParseTuple(args, "O:pack_nibbles", &values_obj)) return NULL;
    PyArrayObject *values = NULL, *packed = NULL;
    values = (PyArrayObject *)PyArray_FROM_OTF(values_obj, NPY_UINT8, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    if (values == NULL) return NULL;
    int64_t n = (int64_t)PyArray_SIZE(values);
    npy_intp dims[1] = {(npy_intp)(n / 2 + n % 2)};
    packed = (PyArrayObject *)PyArray_EMPTY(1, dims, NPY_UINT8, 0);
    if (packed == NULL) goto error;
    sp_status status;
    SP_CALL(status, sp_quant_pack_nibbles((const uint8_t *)PyArray_DATA(values), n, (uint8_t *)PyArray_DATA(packed)));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(values);
    return (PyObject *)packed;
error:
    Py_XDECREF(values);
    Py_XDECREF(packed);
    return NULL;
}

static PyObject *core_quant_unpack_nibbles(PyObject *self, PyObject *args) {
    PyObject *packed_obj;
    long long n;
    int is_signed;
    if (!PyArg_ParseTuple(args, "OLp:unpack_nibbles", &packed_obj, &n, &is_signed)) return NULL;
    if (n < 0) {
        PyErr_Format(PyExc_ValueError, "count must be >= 0, got %lld", n);
        return NULL;
    }
    PyArrayObject *packed = NULL, *values = NULL;
    packed = (PyArrayObject *)PyArray_FROM_OTF(packed_obj, NPY_UINT8, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    if (packed == NULL) return NULL;
    if ((long long)PyArray_SIZE(packed) != n / 2 + n % 2) {
        PyErr_Format(PyExc_ValueError, "%lld values need %lld packed bytes, got %lld", n, n / 2 + n % 2,
                     (long long)PyArray_SIZE(packed));
        goto error;
    }
    npy_intp dims[1] = {(npy_intp)n};
    values = (PyArrayObject *)PyArray_EMPTY(1, dims, is_signed ? NPY_INT8 : NPY_UINT8, 0);
    if (values == NULL) goto error;
    sp_status status;
    SP_CALL(status, sp_quant_unpack_nibbles((const uint8_t *)PyArray_DATA(packed), (int64_t)n, is_signed,
                                            (uint8_t *)PyArray_DATA(values)));
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(packed);
    return (PyObject *)values;
error:
    Py_XDECREF(packed);
    Py_XDECREF(values);
    return NULL;
}

static PyObject *core_cast(PyObject *self, PyObject *args) {
    PyObject *w_obj;
    int bfloat;
    if (!PyArg_ParseTuple(args, "Op:cast", &w_obj, &bfloat)) return NULL;
    int is_double;
    PyArrayObject *w = as_float_array(w_obj, "w", &is_double);
    if (w == NULL) return NULL;
    PyArrayObject *out = empty_like_shape(w, NPY_UINT16);
    if (out == NULL) goto error;
    int64_t n = (int64_t)PyArray_SIZE(w);
    uint16_t *o = (uint16_t *)PyArray_DATA(out);
    sp_status status;
    if (is_double) {
        const double *x = (const double *)PyArray_DATA(w);
        SP_CALL(status, bfloat ? sp_cast_bfloat16_f64(x, n, o) : sp_cast_float16_f64(x, n, o));
    } else {
        const float *x = (const float *)PyArray_DATA(w);
        SP_CALL(status, bfloat ? sp_cast_bfloat16_f32(x, n, o) : sp_cast_float16_f32(x, n, o));
    }
    if (status != SP_OK) { raise_status(status); goto error; }
    Py_DECREF(w);
    return (PyObject *)out;
error:
    Py_XDECREF(w);
    Py_XDECREF(out);
    return NULL;
}

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

static PyObject *core_cluster_fit(PyObject *self, PyObject *args) {
    PyObject *w_obj;
    long long n_clusters, max_iter;
    unsigned long long seed;
    int init;
    if (!PyArg_ParseTuple(args, "OLiLK:cluster_fit", &w_obj, &n_clusters, &init, &max_iter, &seed)) return NULL;
    if (n_clusters < 1 || n_clusters > 65536) {
        PyErr_Format(PyExc_ValueError, "n_clusters must be in 1..65536, got %lld", n_clusters);
        return NULL;
    }
    PyArrayObject *centroids = NULL;
    PyArrayObject *w = quant_as_float_array_of(w_obj, "w", NPY_FLOAT32);
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
    int64_t shape[2] = {rows, cols}, scale_shape[2];
    sp_status status = sp_quant_scale_shape(shape, 2, true, 0, (int64_t)group_size, scale_shape);
    if (status != SP_OK) { raise_status(status); goto error; }
    int int_type = symmetric ? NPY_INT8 : NPY_UINT8;
    values = empty_like_shape(w, int_type);
    scale = quant_empty_from_shape(2, scale_shape, NPY_FLOAT32);
    zero_point = quant_empty_from_shape(2, scale_shape, int_type);
    if (values == NULL || scale == NULL || zero_point == NULL) goto error;
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

#define QUANTIZATION_METHODS                                                                              \
    {"quantize", core_quant_quantize, METH_VARARGS,                                                       \
     "quantize(w, bits, symmetric, axis, group_size, method, percentile) -> (values, scale, zero_point)"}, \
    {"dequantize", core_quant_dequantize, METH_VARARGS,                                                   \
     "dequantize(values, symmetric, axis, group_size, scale, zero_point) -> float32 array"},             \
    {"pack_nibbles", core_quant_pack_nibbles, METH_VARARGS, "pack_nibbles(values) -> uint8 array"},       \
    {"unpack_nibbles", core_quant_unpack_nibbles, METH_VARARGS,                                           \
     "unpack_nibbles(packed, count, signed) -> int8/uint8 array"},                                        \
    {"cast", core_cast, METH_VARARGS, "cast(w, bfloat16) -> uint16 bit patterns"},                         \
    {"cluster_fit", core_cluster_fit, METH_VARARGS,                                                       \
     "cluster_fit(w, n_clusters, init, max_iter, seed) -> (centroids, iterations)"},                      \
    {"cluster_assign", core_cluster_assign, METH_VARARGS, "cluster_assign(w, centroids) -> indices"},     \
    {"cluster_lookup", core_cluster_lookup, METH_VARARGS, "cluster_lookup(indices, centroids) -> float32"}, \
    {"gptq", core_gptq, METH_VARARGS,                                                                     \
     "gptq(w, x, bits, symmetric, group_size, damp) -> (values, scale, zero_point)"},

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
