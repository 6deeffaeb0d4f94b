/* The host side of one region unit's call, as a CPython extension (``pliant.runtime.unit_call``).
 *
 * ``run(fn, xs, dyn, descrs, const_at, const_objs, plans, table)`` does what ``RegionUnit.run`` does on
 * its common path, in one call from Python: it checks the changing inputs ``xs[dyn[i]]`` (exact ndarrays,
 * C-contiguous, of dtype ``descrs[i]``) and that ``xs[const_at[j]] is const_objs[j]``, looks the plan up in
 * ``plans`` by the inputs' shapes, allocates the outputs, and calls the unit ``fn`` (its address) with the
 * GIL released.  A plan is ``(sizes address, arena bytes, output shapes, output dtypes, array addresses, the plan object
 * that owns the sizes and arrays)``.
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

static PyObject *shape_key(PyObject *const *xs, PyObject *dyn) {
    const Py_ssize_t n = PyTuple_GET_SIZE(dyn);
    PyObject *key = PyTuple_New(n);
    if (!key) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyArrayObject *x = (PyArrayObject *)xs[PyLong_AsSsize_t(PyTuple_GET_ITEM(dyn, i))];
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

enum { MAX_SIGNATURE = 256 };

/* One unit's call on inputs ``xs[0:n_xs]`` (borrowed); ``args`` are ``run``'s but xs:
 * (fn, dyn, descrs, const_at, const_objs, plans, table).  ``last`` (or NULL) is a list
 * ``[_, signature, plan]`` that keeps the last plan found and the input sizes it was found for: a call with
 * the same sizes takes it without building the key and looking it up. */
static PyObject *call_unit(PyObject *const *xs, Py_ssize_t n_xs, PyObject *const *args, PyObject *last) {
    const uintptr_t fn = (uintptr_t)PyLong_AsUnsignedLongLong(args[0]);
    PyObject *dyn = args[1], *descrs = args[2], *const_at = args[3], *const_objs = args[4];
    PyObject *plans = args[5];
    void *table = PyLong_AsVoidPtr(args[6]);
    if (PyErr_Occurred()) return NULL;
    if (fn == 0) Py_RETURN_NONE; /* no unit loaded: the Python path decides */
    if (!PyTuple_CheckExact(dyn) || !PyTuple_CheckExact(descrs) || !PyTuple_CheckExact(const_at) ||
        !PyTuple_CheckExact(const_objs) || !PyDict_CheckExact(plans)) {
        PyErr_SetString(PyExc_TypeError, "run: dyn/descrs/const_at/const_objs tuples, plans a dict");
        return NULL;
    }
    const Py_ssize_t n_dyn = PyTuple_GET_SIZE(dyn);
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(const_at); j++) {
        const Py_ssize_t k = PyLong_AsSsize_t(PyTuple_GET_ITEM(const_at, j));
        if (k < 0 || k >= n_xs || xs[k] != PyTuple_GET_ITEM(const_objs, j)) Py_RETURN_NONE;
    }
    int64_t sig[MAX_SIGNATURE];
    Py_ssize_t n_sig = 0;
    for (Py_ssize_t i = 0; i < n_dyn; i++) {
        const Py_ssize_t k = PyLong_AsSsize_t(PyTuple_GET_ITEM(dyn, i));
        if (k < 0 || k >= n_xs) Py_RETURN_NONE;
        PyObject *x = xs[k];
        if (Py_TYPE(x) != &PyArray_Type || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)x)) Py_RETURN_NONE;
        PyArray_Descr *want = (PyArray_Descr *)PyTuple_GET_ITEM(descrs, i);
        PyArray_Descr *have = PyArray_DESCR((PyArrayObject *)x);
        if (have != want && !PyArray_EquivTypes(have, want)) Py_RETURN_NONE;
        const int nd = PyArray_NDIM((PyArrayObject *)x);
        if (n_sig + 1 + nd <= MAX_SIGNATURE) {
            sig[n_sig++] = nd;
            for (int a = 0; a < nd; a++) sig[n_sig++] = PyArray_DIM((PyArrayObject *)x, a);
        } else {
            n_sig = MAX_SIGNATURE + 1;  /* NOTE: too long to keep: looked up every call */
        }
    }
    const int keepable = last && n_sig <= MAX_SIGNATURE;
    PyObject *plan = NULL;  /* borrowed */
    if (keepable) {
        PyObject *had = PyList_GET_ITEM(last, 1);
        if (PyBytes_CheckExact(had) && PyBytes_GET_SIZE(had) == (Py_ssize_t)(n_sig * sizeof(int64_t)) &&
            memcmp(PyBytes_AS_STRING(had), sig, n_sig * sizeof(int64_t)) == 0)
            plan = PyList_GET_ITEM(last, 2);
    }
    if (!plan) {
        PyObject *key = shape_key(xs, dyn);
        if (!key) return NULL;
        plan = PyDict_GetItemWithError(plans, key);
        Py_DECREF(key);
        if (!plan) {
            if (PyErr_Occurred()) return NULL;
            Py_RETURN_NONE;
        }
        if (keepable) {
            /* NOTE: the plan tuple holds its plan object (sizes, arrays): kept here, it stays valid even
             * once its signature leaves ``plans`` */
            PyObject *bytes = PyBytes_FromStringAndSize((const char *)sig, n_sig * (Py_ssize_t)sizeof(int64_t));
            if (!bytes) return NULL;
            Py_INCREF(plan);
            if (PyList_SetItem(last, 2, plan) < 0 || PyList_SetItem(last, 1, bytes) < 0) return NULL;
            plan = PyList_GET_ITEM(last, 2);
        }
    }
    if (!PyTuple_CheckExact(plan) || PyTuple_GET_SIZE(plan) < 5) Py_RETURN_NONE;
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
        p[i] = PyArray_DATA((PyArrayObject *)xs[PyLong_AsSsize_t(PyTuple_GET_ITEM(dyn, i))]);
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
    Py_INCREF(plan);  /* NOTE: its sizes stay alive while another thread may replace the last plan */
    Py_BEGIN_ALLOW_THREADS
    rc = ((unit_fn)fn)(p, sizes);
    Py_END_ALLOW_THREADS
    Py_DECREF(plan);
    if (rc != 0) {
        Py_DECREF(outs);
        return PyLong_FromLong(rc);
    }
    return outs;
}

static PyObject *run(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "run takes 8 arguments");
        return NULL;
    }
    if (!PyList_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "run: xs is a list");
        return NULL;
    }
    PyObject *rest[7] = {args[0], args[2], args[3], args[4], args[5], args[6], args[7]};
    Py_INCREF(args[1]);  /* NOTE: its items are borrowed while the unit runs */
    PyObject *res = call_unit(PySequence_Fast_ITEMS(args[1]), PyList_GET_SIZE(args[1]), rest, NULL);
    Py_DECREF(args[1]);
    return res;
}

/* ---- the block executor ---------------------------------------------------------------------------
 *
 * ``exec_block(code, regs, args)`` runs a host program's block (``program.BlockProgram``) on the register
 * list ``regs``: it binds ``args`` to the block's argument slots, runs its steps in order and returns the
 * list of its outputs.  ``code`` is ``(arg_slots, steps, out_slots, reraise)``; a step is a tuple whose
 * first item says its kind:
 *
 *   (0, fn)                                                 a Python step: ``fn(regs)``
 *   (1, fn, ins, outs, release, box)                        a region unit: ``box[0]`` holds ``run``'s
 *                                                           arguments but xs (or None); the unit's
 *                                                           inputs are ``regs[ins]``, its results go
 *                                                           to ``regs[outs]``
 *   (2, fn, cond, then_code, else_code, outs, release)      an If
 *   (3, fn, trips, cond, carried, body_code, finish, outs, release)
 *                                                           a Loop; ``finish(regs, state, scans)``
 *                                                           stores its results
 *   (4, fn, ins, outs, release)                             NonZero of a C-contiguous array
 *   (5, fn, ins, outs, release)                             SequenceInsert at the back (no position)
 *
 * The slots in ``release`` are cleared after the step (their values' last use).  Wherever this path
 * does not take a step as it is (a new signature for a unit, a condition that is not an array), it
 * calls the step's Python function ``fn``, which does the same in Python.  Where step ``k`` fails,
 * ``reraise(k, error)`` raises the error named after the step's op, as ``BlockProgram.run`` did. */

enum { STEP_PY = 0, STEP_UNIT = 1, STEP_IF = 2, STEP_LOOP = 3, STEP_NONZERO = 4, STEP_SEQ_INSERT = 5 };

static PyObject *exec_code(PyObject *code, PyObject *regs, PyObject *const *args, Py_ssize_t nargs);

static int bad_slot(void) {
    PyErr_SetString(PyExc_SystemError, "exec_block: a register slot out of range");
    return -1;
}

static inline int set_reg(PyObject *regs, PyObject *slot, PyObject *v) {
    const Py_ssize_t s = PyLong_AsSsize_t(slot);
    if (s < 0 || s >= PyList_GET_SIZE(regs)) return bad_slot();
    Py_INCREF(v);
    PyObject *old = PyList_GET_ITEM(regs, s);
    PyList_SET_ITEM(regs, s, v);
    Py_XDECREF(old);
    return 0;
}

/* regs[outs[i]] = values[i]; then regs[release[j]] = None */
static int store(PyObject *regs, PyObject *outs, PyObject *values, PyObject *release) {
    const Py_ssize_t n = PyTuple_GET_SIZE(outs), m = PyList_GET_SIZE(values);
    for (Py_ssize_t i = 0; i < n && i < m; i++)
        if (set_reg(regs, PyTuple_GET_ITEM(outs, i), PyList_GET_ITEM(values, i)) < 0) return -1;
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(release); j++)
        if (set_reg(regs, PyTuple_GET_ITEM(release, j), Py_None) < 0) return -1;
    return 0;
}

static int call_py(PyObject *fn, PyObject *regs) {
    PyObject *r = PyObject_CallOneArg(fn, regs);
    if (!r) return -1;
    Py_DECREF(r);
    return 0;
}

/* The first element of an array as a Python object (new reference); NULL with no error set where ``x``
 * is not a non-empty ndarray (the caller's Python path decides). */
static PyObject *first_item(PyObject *x) {
    if (!PyArray_Check(x) || PyArray_SIZE((PyArrayObject *)x) < 1) return NULL;
    return PyArray_GETITEM((PyArrayObject *)x, PyArray_DATA((PyArrayObject *)x));
}

/* bool(x.reshape(-1)[0]) for an ndarray: 1 or 0; -1 on error; -2 where ``x`` is not a non-empty array */
static int truth(PyObject *x) {
    PyObject *item = first_item(x);
    if (!item) return PyErr_Occurred() ? -1 : -2;
    const int t = PyObject_IsTrue(item);
    Py_DECREF(item);
    return t;
}

static int step_unit(PyObject *step, PyObject *regs) {
    PyObject *fn = PyTuple_GET_ITEM(step, 1), *ins = PyTuple_GET_ITEM(step, 2), *outs = PyTuple_GET_ITEM(step, 3);
    PyObject *release = PyTuple_GET_ITEM(step, 4), *box = PyTuple_GET_ITEM(step, 5);
    PyObject *cargs = PyList_GET_ITEM(box, 0);
    if (!PyTuple_CheckExact(cargs) || PyTuple_GET_SIZE(cargs) != 7) return call_py(fn, regs);
    Py_INCREF(cargs);  /* NOTE: the unit may replace it while its native code runs without the GIL */
    const Py_ssize_t n = PyTuple_GET_SIZE(ins);
    if (n > MAX_POINTERS) {
        Py_DECREF(cargs);
        return call_py(fn, regs);
    }
    PyObject *xs[MAX_POINTERS];  /* borrowed from regs, which nothing else changes during the call */
    for (Py_ssize_t i = 0; i < n; i++) {
        const Py_ssize_t s = PyLong_AsSsize_t(PyTuple_GET_ITEM(ins, i));
        if (s >= PyList_GET_SIZE(regs)) {
            Py_DECREF(cargs);
            return bad_slot();
        }
        xs[i] = s < 0 ? Py_None : PyList_GET_ITEM(regs, s);
    }
    PyObject *res = call_unit(xs, n, &PyTuple_GET_ITEM(cargs, 0), PyList_GET_SIZE(box) >= 3 ? box : NULL);
    Py_DECREF(cargs);
    if (!res) return -1;
    if (!PyList_CheckExact(res)) {
        Py_DECREF(res);
        return call_py(fn, regs);
    }
    const int rc = store(regs, outs, res, release);
    Py_DECREF(res);
    return rc;
}

static int step_if(PyObject *step, PyObject *regs) {
    PyObject *fn = PyTuple_GET_ITEM(step, 1);
    const Py_ssize_t cond = PyLong_AsSsize_t(PyTuple_GET_ITEM(step, 2));
    if (cond < 0 || cond >= PyList_GET_SIZE(regs)) return call_py(fn, regs);
    const int t = truth(PyList_GET_ITEM(regs, cond));
    if (t == -1) return -1;
    if (t == -2) return call_py(fn, regs);
    PyObject *res = exec_code(PyTuple_GET_ITEM(step, t ? 3 : 4), regs, NULL, 0);
    if (!res) return -1;
    const int rc = store(regs, PyTuple_GET_ITEM(step, 5), res, PyTuple_GET_ITEM(step, 6));
    Py_DECREF(res);
    return rc;
}

static int step_loop(PyObject *step, PyObject *regs) {
    PyObject *fn = PyTuple_GET_ITEM(step, 1), *carried = PyTuple_GET_ITEM(step, 4), *body = PyTuple_GET_ITEM(step, 5);
    PyObject *finish = PyTuple_GET_ITEM(step, 6);
    const Py_ssize_t m = PyLong_AsSsize_t(PyTuple_GET_ITEM(step, 2)), c = PyLong_AsSsize_t(PyTuple_GET_ITEM(step, 3));
    const Py_ssize_t n_regs = PyList_GET_SIZE(regs), n_carried = PyTuple_GET_SIZE(carried);
    long long trips = -1;
    if (m >= n_regs || c >= n_regs) return bad_slot();
    if (m >= 0) {
        PyObject *item = first_item(PyList_GET_ITEM(regs, m));
        if (!item) return PyErr_Occurred() ? -1 : call_py(fn, regs);
        PyObject *as_int = PyNumber_Long(item);
        Py_DECREF(item);
        if (!as_int) return -1;
        trips = PyLong_AsLongLong(as_int);
        Py_DECREF(as_int);
        if (trips == -1 && PyErr_Occurred()) return -1;
        if (trips < 0) trips = 0;
    }
    int keep = 1;
    if (c >= 0) {
        keep = truth(PyList_GET_ITEM(regs, c));
        if (keep == -1) return -1;
        if (keep == -2) return call_py(fn, regs);
    }
    PyObject *body_outs = PyTuple_GET_ITEM(body, 2);
    const Py_ssize_t n_scans = PyTuple_GET_SIZE(body_outs) - 1 - n_carried;
    if (n_scans < 0 || n_carried > MAX_POINTERS - 2) return call_py(fn, regs);
    PyObject *state = PyList_New(n_carried), *scans = PyList_New(n_scans);
    PyObject *yes = PyArray_SimpleNew(0, NULL, NPY_BOOL);
    int rc = -1;
    if (!state || !scans || !yes) goto done;
    *(npy_bool *)PyArray_DATA((PyArrayObject *)yes) = 1;
    for (Py_ssize_t i = 0; i < n_carried; i++) {
        const Py_ssize_t s = PyLong_AsSsize_t(PyTuple_GET_ITEM(carried, i));
        if (s >= n_regs) {
            bad_slot();
            goto done;
        }
        PyObject *v = s < 0 ? Py_None : PyList_GET_ITEM(regs, s);
        Py_INCREF(v);
        PyList_SET_ITEM(state, i, v);
    }
    for (Py_ssize_t j = 0; j < n_scans; j++) {
        PyObject *acc = PyList_New(0);
        if (!acc) goto done;
        PyList_SET_ITEM(scans, j, acc);
    }
    PyObject *argv[MAX_POINTERS];
    for (long long i = 0; keep && (trips < 0 || i < trips); i++) {
        PyObject *it = PyArray_SimpleNew(0, NULL, NPY_INT64);
        if (!it) goto done;
        *(npy_int64 *)PyArray_DATA((PyArrayObject *)it) = (npy_int64)i;
        argv[0] = it;
        argv[1] = yes;
        for (Py_ssize_t j = 0; j < n_carried; j++) argv[2 + j] = PyList_GET_ITEM(state, j);
        PyObject *res = exec_code(body, regs, argv, 2 + n_carried);
        Py_DECREF(it);
        if (!res) goto done;
        if (PyList_GET_SIZE(res) != 1 + n_carried + n_scans) {
            Py_DECREF(res);
            PyErr_SetString(PyExc_SystemError, "exec_block: a Loop body returned the wrong number of values");
            goto done;
        }
        PyObject *r0 = PyList_GET_ITEM(res, 0);
        if (PyArray_Check(r0)) {
            keep = truth(r0);
            if (keep == -2) {
                PyErr_SetString(PyExc_IndexError, "index 0 is out of bounds for axis 0 with size 0");
                keep = -1;
            }
        } else {
            keep = PyObject_IsTrue(r0);
        }
        for (Py_ssize_t j = 0; j < n_carried; j++) {
            PyObject *v = PyList_GET_ITEM(res, 1 + j);
            Py_INCREF(v);
            PyObject *old = PyList_GET_ITEM(state, j);
            PyList_SET_ITEM(state, j, v);
            Py_DECREF(old);
        }
        for (Py_ssize_t j = 0; j < n_scans && keep >= 0; j++)
            if (PyList_Append(PyList_GET_ITEM(scans, j), PyList_GET_ITEM(res, 1 + n_carried + j)) < 0) keep = -1;
        Py_DECREF(res);
        if (keep < 0) goto done;
    }
    {
        PyObject *r = PyObject_CallFunctionObjArgs(finish, regs, state, scans, NULL);
        if (!r) goto done;
        Py_DECREF(r);
    }
    rc = 0;
done:
    Py_XDECREF(state);
    Py_XDECREF(scans);
    Py_XDECREF(yes);
    return rc;
}

/* regs[ins[i]], borrowed; NULL (no error) where a slot is out of range */
static inline PyObject *reg_in(PyObject *regs, PyObject *ins, Py_ssize_t i) {
    const Py_ssize_t s = PyLong_AsSsize_t(PyTuple_GET_ITEM(ins, i));
    return s >= 0 && s < PyList_GET_SIZE(regs) ? PyList_GET_ITEM(regs, s) : NULL;
}

/* store one result (a new reference, stolen) and release */
static int store_one(PyObject *regs, PyObject *step, PyObject *y) {
    PyObject *values = PyList_New(1);
    if (!values) {
        Py_DECREF(y);
        return -1;
    }
    PyList_SET_ITEM(values, 0, y);
    const int rc = store(regs, PyTuple_GET_ITEM(step, 3), values, PyTuple_GET_ITEM(step, 4));
    Py_DECREF(values);
    return rc;
}

#define NONZERO_COUNT(T)                                                   \
    {                                                                       \
        const T *v = (const T *)data;                                       \
        for (npy_intp i = 0; i < size; i++) count += v[i] != 0;             \
    }
#define NONZERO_FILL(T)                                                    \
    {                                                                       \
        const T *v = (const T *)data;                                       \
        for (npy_intp i = 0, j = 0; i < size; i++) {                        \
            if (v[i] != 0) {                                                \
                npy_intp rest = i;                                          \
                for (int a = nd - 1; a >= 0; a--) {                         \
                    out[a * count + j] = rest % dims[a];                    \
                    rest /= dims[a];                                        \
                }                                                           \
                j++;                                                        \
            }                                                               \
        }                                                                   \
    }
#define NONZERO_TYPES(M)                                                   \
    switch (type) {                                                         \
    case NPY_BOOL: M(npy_bool) break;                                       \
    case NPY_INT8: M(npy_int8) break;                                       \
    case NPY_UINT8: M(npy_uint8) break;                                     \
    case NPY_INT16: M(npy_int16) break;                                     \
    case NPY_UINT16: M(npy_uint16) break;                                   \
    case NPY_INT32: M(npy_int32) break;                                     \
    case NPY_UINT32: M(npy_uint32) break;                                   \
    case NPY_INT64: M(npy_int64) break;                                     \
    case NPY_UINT64: M(npy_uint64) break;                                   \
    case NPY_FLOAT32: M(npy_float32) break;                                 \
    case NPY_FLOAT64: M(npy_float64) break;                                 \
    default: break;                                                         \
    }

/* np.nonzero's indices as one (max(ndim, 1), count) int64 array, as the reference kernel gives them */
static int step_nonzero(PyObject *step, PyObject *regs) {
    PyObject *fn = PyTuple_GET_ITEM(step, 1);
    PyObject *x = reg_in(regs, PyTuple_GET_ITEM(step, 2), 0);
    if (!x || Py_TYPE(x) != &PyArray_Type || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)x)) return call_py(fn, regs);
    PyArrayObject *arr = (PyArrayObject *)x;
    const int type = PyArray_TYPE(arr);
    if (!(type == NPY_BOOL || type == NPY_INT8 || type == NPY_UINT8 || type == NPY_INT16 || type == NPY_UINT16 ||
          type == NPY_INT32 || type == NPY_UINT32 || type == NPY_INT64 || type == NPY_UINT64 ||
          type == NPY_FLOAT32 || type == NPY_FLOAT64) || !PyArray_ISNOTSWAPPED(arr))
        return call_py(fn, regs);
    const int nd0 = PyArray_NDIM(arr), nd = nd0 > 0 ? nd0 : 1;
    npy_intp one = 1;
    const npy_intp *dims = nd0 > 0 ? PyArray_DIMS(arr) : &one;
    const npy_intp size = PyArray_SIZE(arr);
    const void *data = PyArray_DATA(arr);
    npy_intp count = 0;
    NONZERO_TYPES(NONZERO_COUNT)
    npy_intp shape[2] = {nd, count};
    PyObject *y = PyArray_SimpleNew(2, shape, NPY_INT64);
    if (!y) return -1;
    npy_int64 *out = (npy_int64 *)PyArray_DATA((PyArrayObject *)y);
    NONZERO_TYPES(NONZERO_FILL)
    return store_one(regs, step, y);
}

/* SequenceInsert(seq, tensor) at the back: a new list; the reference kernel where it would raise */
static int step_seq_insert(PyObject *step, PyObject *regs) {
    PyObject *fn = PyTuple_GET_ITEM(step, 1), *ins = PyTuple_GET_ITEM(step, 2);
    PyObject *seq = reg_in(regs, ins, 0), *t = reg_in(regs, ins, 1);
    if (!seq || !t || !PyList_CheckExact(seq) || !PyArray_Check(t)) return call_py(fn, regs);
    const Py_ssize_t n = PyList_GET_SIZE(seq);
    if (n > 0) {
        PyObject *first = PyList_GET_ITEM(seq, 0);
        if (!PyArray_Check(first) || !PyArray_EquivTypes(PyArray_DESCR((PyArrayObject *)first),
                                                         PyArray_DESCR((PyArrayObject *)t)))
            return call_py(fn, regs);
    }
    PyObject *y = PyList_New(n + 1);
    if (!y) return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyList_GET_ITEM(seq, i);
        Py_INCREF(v);
        PyList_SET_ITEM(y, i, v);
    }
    Py_INCREF(t);
    PyList_SET_ITEM(y, n, t);
    return store_one(regs, step, y);
}

/* raise ``reraise(k, error)``'s error for the one set now; returns NULL */
static PyObject *fail(PyObject *reraise, Py_ssize_t k) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (!value) {
        Py_XDECREF(type);
        Py_XDECREF(tb);
        return NULL;
    }
    if (tb) PyException_SetTraceback(value, tb);
    PyObject *r = PyObject_CallFunction(reraise, "nO", k, value);
    Py_XDECREF(type);
    Py_DECREF(value);
    Py_XDECREF(tb);
    if (r) {
        Py_DECREF(r);
        PyErr_SetString(PyExc_SystemError, "exec_block: reraise returned");
    }
    return NULL;
}

static PyObject *exec_code(PyObject *code, PyObject *regs, PyObject *const *args, Py_ssize_t nargs) {
    PyObject *arg_slots = PyTuple_GET_ITEM(code, 0), *steps = PyTuple_GET_ITEM(code, 1);
    PyObject *out_slots = PyTuple_GET_ITEM(code, 2), *reraise = PyTuple_GET_ITEM(code, 3);
    const Py_ssize_t n_regs = PyList_GET_SIZE(regs);
    for (Py_ssize_t i = 0; i < nargs && i < PyTuple_GET_SIZE(arg_slots); i++)
        if (set_reg(regs, PyTuple_GET_ITEM(arg_slots, i), args[i]) < 0) return NULL;
    const Py_ssize_t n_steps = PyTuple_GET_SIZE(steps);
    for (Py_ssize_t k = 0; k < n_steps; k++) {
        PyObject *step = PyTuple_GET_ITEM(steps, k);
        int rc;
        switch (PyLong_AsLong(PyTuple_GET_ITEM(step, 0))) {
        case STEP_PY: rc = call_py(PyTuple_GET_ITEM(step, 1), regs); break;
        case STEP_UNIT: rc = step_unit(step, regs); break;
        case STEP_IF: rc = step_if(step, regs); break;
        case STEP_LOOP: rc = step_loop(step, regs); break;
        case STEP_NONZERO: rc = step_nonzero(step, regs); break;
        case STEP_SEQ_INSERT: rc = step_seq_insert(step, regs); break;
        default:
            PyErr_SetString(PyExc_SystemError, "exec_block: a step of an unknown kind");
            rc = -1;
        }
        if (rc < 0) return fail(reraise, k);
    }
    const Py_ssize_t n_out = PyTuple_GET_SIZE(out_slots);
    PyObject *outs = PyList_New(n_out);
    if (!outs) return NULL;
    for (Py_ssize_t i = 0; i < n_out; i++) {
        const Py_ssize_t s = PyLong_AsSsize_t(PyTuple_GET_ITEM(out_slots, i));
        if (s < 0 || s >= n_regs) {
            Py_DECREF(outs);
            bad_slot();
            return NULL;
        }
        PyObject *v = PyList_GET_ITEM(regs, s);
        Py_INCREF(v);
        PyList_SET_ITEM(outs, i, v);
    }
    return outs;
}

static PyObject *exec_block(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3 || !PyTuple_CheckExact(args[0]) || PyTuple_GET_SIZE(args[0]) != 4 || !PyList_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "exec_block(code, regs, args): code a 4-tuple, regs a list");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(args[2], "exec_block: args is a sequence");
    if (!seq) return NULL;
    PyObject *res = exec_code(args[0], args[1], PySequence_Fast_ITEMS(seq), PySequence_Fast_GET_SIZE(seq));
    Py_DECREF(seq);
    return res;
}

/* ``feeds_in_order(spec, feeds)``: what ``compiled._fast_feeds`` gives, in one call: ``(args, dims, shapes)``
 * where every input is an exact ndarray of its dtype and rank, its constant sizes match and its symbols
 * agree; else None (the caller's Python path checks the feeds and names what is wrong).  ``spec`` is
 * ``((name, dtype, ((is_symbol, symbol or size), ...)), ...)`` and ``feeds`` a dict. */
static PyObject *feeds_in_order(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2 || !PyTuple_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "feeds_in_order(spec, feeds): spec a tuple");
        return NULL;
    }
    PyObject *spec = args[0], *feeds = args[1];
    if (!PyDict_CheckExact(feeds)) Py_RETURN_NONE;
    const Py_ssize_t n = PyTuple_GET_SIZE(spec);
    if (PyDict_GET_SIZE(feeds) != n) Py_RETURN_NONE;
    PyObject *xs = PyList_New(n), *dims = PyDict_New(), *shapes = PyTuple_New(n);
    if (!xs || !dims || !shapes) goto error;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *entry = PyTuple_GET_ITEM(spec, i);
        PyObject *x = PyDict_GetItemWithError(feeds, PyTuple_GET_ITEM(entry, 0));
        if (!x) {
            if (PyErr_Occurred()) goto error;
            goto none;
        }
        if (Py_TYPE(x) != &PyArray_Type) goto none;
        PyArrayObject *a = (PyArrayObject *)x;
        PyArray_Descr *want = (PyArray_Descr *)PyTuple_GET_ITEM(entry, 1);
        if (PyArray_DESCR(a) != want && !PyArray_EquivTypes(PyArray_DESCR(a), want)) goto none;
        PyObject *axes = PyTuple_GET_ITEM(entry, 2);
        const int nd = PyArray_NDIM(a);
        if (nd != PyTuple_GET_SIZE(axes)) goto none;
        PyObject *shape = PyTuple_New(nd);
        if (!shape) goto error;
        PyTuple_SET_ITEM(shapes, i, shape);
        for (int k = 0; k < nd; k++) {
            const npy_intp d = PyArray_DIM(a, k);
            PyObject *size = PyLong_FromSsize_t(d);
            if (!size) goto error;
            PyTuple_SET_ITEM(shape, k, size);
            PyObject *axis = PyTuple_GET_ITEM(axes, k);
            PyObject *what = PyTuple_GET_ITEM(axis, 1);
            if (PyTuple_GET_ITEM(axis, 0) == Py_True) {
                PyObject *had = PyDict_GetItemWithError(dims, what);
                if (had) {
                    if (PyLong_AsSsize_t(had) != d) goto none;
                } else if (PyErr_Occurred() || PyDict_SetItem(dims, what, size) < 0) {
                    goto error;
                }
            } else if (PyLong_AsSsize_t(what) != d) {
                if (PyErr_Occurred()) goto error;
                goto none;
            }
        }
        Py_INCREF(x);
        PyList_SET_ITEM(xs, i, x);
    }
    PyObject *res = PyTuple_Pack(3, xs, dims, shapes);
    Py_DECREF(xs);
    Py_DECREF(dims);
    Py_DECREF(shapes);
    return res;
none:
    Py_XDECREF(xs);
    Py_XDECREF(dims);
    Py_XDECREF(shapes);
    Py_RETURN_NONE;
error:
    Py_XDECREF(xs);
    Py_XDECREF(dims);
    Py_XDECREF(shapes);
    return NULL;
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
    {"exec_block", (PyCFunction)(void (*)(void))exec_block, METH_FASTCALL, "Run a host block (see the comment above it)."},
    {"feeds_in_order", (PyCFunction)(void (*)(void))feeds_in_order, METH_FASTCALL, "Check a model's feeds (see above)."},
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
