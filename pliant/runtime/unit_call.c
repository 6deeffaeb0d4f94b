/* The host side of one region unit's call, as a CPython extension (``pliant.runtime.unit_call``).
 *
 * ``run(fn, xs, dyn, descrs, const_at, const_objs, plans, table)`` does what ``RegionUnit.run`` does on
 * its common path, in one call from Python: it checks the changing inputs ``xs[dyn[i]]`` (exact ndarrays,
 * C-contiguous, of dtype ``descrs[i]``) and that ``xs[const_at[j]] is const_objs[j]``, looks the plan up in
 * ``plans`` by the inputs' shapes, allocates the outputs, and calls the unit ``fn`` (its address) with the
 * GIL released.  A plan is ``(sizes address, arena bytes, output shapes, output dtypes, array addresses)``.
 *
 * It returns the list of outputs; None where the Python path must decide (a new signature, a signature
 * without a plan, an input it does not take, a changed constant: that path raises the same errors as
 * before); the unit's nonzero return code as an int.
 *
 * The arena is this thread's (as in ``region_c``): one block, 64-byte aligned, grown as needed and freed
 * when the thread ends. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

typedef int (*unit_fn)(void **, const int64_t *);

enum { MAX_POINTERS = 512 };

static pthread_key_t arena_key;

typedef struct {
    void *data;
    size_t size;
} arena_t;

static void arena_free(void *p) {
    arena_t *a = (arena_t *)p;
    if (a) {
        free(a->data);
        free(a);
    }
}

static void *arena(size_t need) {
    arena_t *a = (arena_t *)pthread_getspecific(arena_key);
    if (!a) {
        a = (arena_t *)calloc(1, sizeof(arena_t));
        if (!a || pthread_setspecific(arena_key, a) != 0) {
            free(a);
            return NULL;
        }
    }
    if (need < 64) need = 64;
    if (a->size < need) {
        size_t size = (need + 63) / 64 * 64;
        void *p = aligned_alloc(64, size);
        if (!p) return NULL;
        free(a->data);
        a->data = p;
        a->size = size;
    }
    return a->data;
}

static PyObject *shape_key(PyObject *xs, PyObject *dyn) {
    const Py_ssize_t n = PyTuple_GET_SIZE(dyn);
    PyObject *key = PyTuple_New(n);
    if (!key) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyArrayObject *x = (PyArrayObject *)PyList_GET_ITEM(xs, PyLong_AsSsize_t(PyTuple_GET_ITEM(dyn, i)));
        const int nd = PyArray_NDIM(x);
        const npy_intp *dims = PyArray_DIMS(x);
        PyObject *shape = PyTuple_New(nd);
        if (!shape) {
            Py_DECREF(key);
            return NULL;
        }
        for (int a = 0; a < nd; a++) {
            PyObject *d = PyLong_FromSsize_t(dims[a]);
            if (!d) {
                Py_DECREF(shape);
                Py_DECREF(key);
                return NULL;
            }
            PyTuple_SET_ITEM(shape, a, d);
        }
        PyTuple_SET_ITEM(key, i, shape);
    }
    return key;
}

static PyObject *run(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "run takes 8 arguments");
        return NULL;
    }
    const uintptr_t fn = (uintptr_t)PyLong_AsUnsignedLongLong(args[0]);
    PyObject *xs = args[1], *dyn = args[2], *descrs = args[3], *const_at = args[4], *const_objs = args[5];
    PyObject *plans = args[6];
    void *table = PyLong_AsVoidPtr(args[7]);
    if (PyErr_Occurred()) return NULL;
    if (fn == 0) Py_RETURN_NONE; /* no unit loaded: the Python path decides */
    if (!PyList_CheckExact(xs) || !PyTuple_CheckExact(dyn) || !PyTuple_CheckExact(descrs) ||
        !PyTuple_CheckExact(const_at) || !PyTuple_CheckExact(const_objs) || !PyDict_CheckExact(plans)) {
        PyErr_SetString(PyExc_TypeError, "run: xs is a list, dyn/descrs/const_at/const_objs tuples, plans a dict");
        return NULL;
    }
    const Py_ssize_t n_xs = PyList_GET_SIZE(xs), n_dyn = PyTuple_GET_SIZE(dyn);
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(const_at); j++) {
        const Py_ssize_t k = PyLong_AsSsize_t(PyTuple_GET_ITEM(const_at, j));
        if (k < 0 || k >= n_xs || PyList_GET_ITEM(xs, k) != PyTuple_GET_ITEM(const_objs, j)) Py_RETURN_NONE;
    }
    for (Py_ssize_t i = 0; i < n_dyn; i++) {
        const Py_ssize_t k = PyLong_AsSsize_t(PyTuple_GET_ITEM(dyn, i));
        if (k < 0 || k >= n_xs) Py_RETURN_NONE;
        PyObject *x = PyList_GET_ITEM(xs, k);
        if (Py_TYPE(x) != &PyArray_Type || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)x)) Py_RETURN_NONE;
        PyArray_Descr *want = (PyArray_Descr *)PyTuple_GET_ITEM(descrs, i);
        PyArray_Descr *have = PyArray_DESCR((PyArrayObject *)x);
        if (have != want && !PyArray_EquivTypes(have, want)) Py_RETURN_NONE;
    }
    PyObject *key = shape_key(xs, dyn);
    if (!key) return NULL;
    PyObject *plan = PyDict_GetItemWithError(plans, key);  /* borrowed */
    Py_DECREF(key);
    if (!plan) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    if (!PyTuple_CheckExact(plan) || PyTuple_GET_SIZE(plan) != 5) Py_RETURN_NONE;
    const int64_t *sizes = (const int64_t *)PyLong_AsVoidPtr(PyTuple_GET_ITEM(plan, 0));
    const size_t arena_bytes = PyLong_AsSize_t(PyTuple_GET_ITEM(plan, 1));
    PyObject *out_shapes = PyTuple_GET_ITEM(plan, 2), *out_descrs = PyTuple_GET_ITEM(plan, 3);
    PyObject *array_ptrs = PyTuple_GET_ITEM(plan, 4);
    if (PyErr_Occurred()) return NULL;
    const Py_ssize_t n_out = PyTuple_GET_SIZE(out_shapes), n_arr = PyTuple_GET_SIZE(array_ptrs);
    const Py_ssize_t n_ptr = n_dyn + n_out + 1 + n_arr + 1;
    if (n_ptr > MAX_POINTERS) Py_RETURN_NONE;
    void *p[MAX_POINTERS];
    for (Py_ssize_t i = 0; i < n_dyn; i++)
        p[i] = PyArray_DATA((PyArrayObject *)PyList_GET_ITEM(xs, PyLong_AsSsize_t(PyTuple_GET_ITEM(dyn, i))));
    PyObject *outs = PyList_New(n_out);
    if (!outs) return NULL;
    for (Py_ssize_t o = 0; o < n_out; o++) {
        PyObject *shape = PyTuple_GET_ITEM(out_shapes, o);
        const Py_ssize_t nd = PyTuple_GET_SIZE(shape);
        npy_intp dims[NPY_MAXDIMS];
        if (nd > NPY_MAXDIMS) {
            Py_DECREF(outs);
            Py_RETURN_NONE;
        }
        for (Py_ssize_t a = 0; a < nd; a++) dims[a] = PyLong_AsSsize_t(PyTuple_GET_ITEM(shape, a));
        PyArray_Descr *descr = (PyArray_Descr *)PyTuple_GET_ITEM(out_descrs, o);
        Py_INCREF(descr);  /* PyArray_Empty steals it */
        PyObject *y = PyArray_Empty((int)nd, dims, descr, 0);
        if (!y) {
            Py_DECREF(outs);
            return NULL;
        }
        PyList_SET_ITEM(outs, o, y);
        p[n_dyn + o] = PyArray_DATA((PyArrayObject *)y);
    }
    void *a = arena(arena_bytes);
    if (!a) {
        Py_DECREF(outs);
        return PyErr_NoMemory();
    }
    p[n_dyn + n_out] = a;
    for (Py_ssize_t i = 0; i < n_arr; i++) p[n_dyn + n_out + 1 + i] = PyLong_AsVoidPtr(PyTuple_GET_ITEM(array_ptrs, i));
    p[n_ptr - 1] = table;
    if (PyErr_Occurred()) {
        Py_DECREF(outs);
        return NULL;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = ((unit_fn)fn)(p, sizes);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        Py_DECREF(outs);
        return PyLong_FromLong(rc);
    }
    return outs;
}

static PyObject *arena_size(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    arena_t *a = (arena_t *)pthread_getspecific(arena_key);
    return PyLong_FromSize_t(a ? a->size : 0);
}

/* the entry point the kernel cache checks for; never called */
int pliant_kernel(void **p, const int64_t *s) {
    (void)p;
    (void)s;
    return 0;
}

static PyMethodDef methods[] = {
    {"run", (PyCFunction)(void (*)(void))run, METH_FASTCALL, "Run a region unit (see the file's comment)."},
    {"arena_size", arena_size, METH_NOARGS, "The bytes of this thread's arena (0 before its first unit)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pliant_unit_call", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__pliant_unit_call(void) {
    import_array();
    if (pthread_key_create(&arena_key, arena_free) != 0) {
        PyErr_SetString(PyExc_OSError, "pthread_key_create failed");
        return NULL;
    }
    return PyModule_Create(&module);
}
