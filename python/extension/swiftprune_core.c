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
    sp_safetensors_close((sp_safetensors_file *)PyCapsule_GetPointer(capsule, SAFETENSORS_FILE_CAPSULE));
}

static void safetensors_writer_destructor(PyObject *capsule) {
    sp_safetensors_writer_free((sp_safetensors_writer *)PyCapsule_GetPointer(capsule, SAFETENSORS_WRITER_CAPSULE));
}

static PyObject *core_safetensors_open(PyObject *self, PyObject *args) {
    PyObject *path = NULL;
    if (!PyArg_ParseTuple(args, "O&:safetensors_open", PyUnicode_FSConverter, &path)) return NULL;
    sp_safetensors_file *file = NULL;
    sp_status status;
    SP_CALL(status, sp_safetensors_open(PyBytes_AS_STRING(path), &file));
    Py_DECREF(path);
    if (status != SP_OK) return raise_status(status);
    PyObject *capsule = PyCapsule_New(file, SAFETENSORS_FILE_CAPSULE, safetensors_file_destructor);
    if (capsule == NULL) sp_safetensors_close(file);
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
    int64_t count = sp_safetensors_tensor_count(file);
    PyObject *list = PyList_New(0), *item = NULL, *name = NULL, *shape = NULL;
    PyArrayObject *data = NULL;
    if (list == NULL) return NULL;
    for (int64_t i = 0; i < count; i++) {
        sp_tensor_record record;
        sp_status status = sp_safetensors_tensor(file, i, &record);
        if (status != SP_OK) { raise_status(status); goto error; }
        name = PyUnicode_DecodeUTF8(record.name, (Py_ssize_t)record.name_length, "strict");
        if (name == NULL) goto error;
        shape = shape_tuple(record.shape, record.ndim);
        if (shape == NULL) goto error;
        npy_intp n = (npy_intp)record.nbytes;
        if (n > 0) {
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
    int64_t count = sp_safetensors_metadata_count(file);
    for (int64_t i = 0; i < count; i++) {
        const char *k, *v;
        int64_t kn, vn;
        sp_status status = sp_safetensors_metadata(file, i, &k, &kn, &v, &vn);
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
    if (capsule == NULL) sp_safetensors_writer_free(writer);
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
    sp_status status = sp_safetensors_writer_set_metadata(writer, key, (int64_t)key_length, value, (int64_t)value_length);
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
    {"safetensors_writer", core_safetensors_writer, METH_VARARGS, "safetensors_writer(path, header_reserve) -> writer"},       \
    {"safetensors_writer_add", core_safetensors_writer_add, METH_VARARGS,                                      \
     "safetensors_writer_add(writer, name, dtype, shape, array)"},                                             \
    {"safetensors_writer_set_metadata", core_safetensors_writer_set_metadata, METH_VARARGS,                    \
     "safetensors_writer_set_metadata(writer, key, value)"},                                                   \
    {"safetensors_writer_commit", core_safetensors_writer_commit, METH_VARARGS, "safetensors_writer_commit(writer)"},

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
