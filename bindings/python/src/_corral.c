/*
 * _corral.c - the CPython extension over libcorral (corral.h): the Cache
 * type and its helpers (Value, Subscription, Write, Event, the exception
 * hierarchy), and NearCache over libcorral-near (corral_near.h).
 * corral/__init__.py builds the public package on top.
 *
 * The engine is compiled into this module (setup.py) with its libc
 * allocator (CORRAL_MEM_LIBC), so the module links neither libcorral.so
 * nor jemalloc; so are the near cache and the protocol library it uses.
 * Only PyInit__corral is exported.
 *
 * The GIL.  Engine calls that can wait for another thread run with the
 * GIL released: fetch (it may join a load another thread runs), put and
 * remove (the per-key writer lock, a full write-behind queue), write_flush,
 * unsubscribe and close.  The thread they wait for may need the GIL to run
 * a Python loader, writer or event callback, so holding it would deadlock.
 * The plain operations (get, set, delete, incr, ...) never wait for such a
 * thread: the engine runs no callback while holding a lock, and a thread
 * delivering events holds no engine lock.  They keep the GIL for small
 * values, where dropping and retaking it costs more than the operation
 * itself (bindings/python/README.md has the measurements), and release it
 * while copying values of release_bytes or more.
 *
 * Callbacks.  Loaders, writers and event callbacks are C trampolines that
 * take the GIL with PyGILState_Ensure() on whichever thread the engine
 * calls them:
 *
 *   loader          the fetching thread, or a refresh thread (background)
 *   write-through   the thread calling put() or remove()
 *   write-behind    the cache's flusher thread
 *   event callback  a thread that changed the cache, after its change
 *
 * A loader's exception is kept in the cache's error table under a code
 * that the trampoline returns to the engine.  The engine hands that code
 * to every caller waiting for the load, and to later fetches of the key
 * while it remembers the failure; each of them raises LoadError carrying
 * the exception.  Entries expire once the engine can no longer answer
 * their code (errors_put).  A write-through writer's exception goes back
 * to its own caller through a thread-local variable.
 *
 * Background refreshes run after fetch() returned, so their loader cannot
 * live on the caller's stack: fetch(background=True) gives the engine a
 * heap copy of the fetch's context (loader, tags, ttl...) holding its own
 * references, with CORRAL_FETCH_RELEASE, and the engine's release call
 * frees it once no refresh will use it.
 *
 * Lifetime.  Every method counts itself in `active` while it uses the
 * engine.  close() makes new calls fail, waits until `active` is zero,
 * then destroys the engine with the GIL released (the destroy flushes
 * write-behind writes and runs queued refreshes, which need the GIL).
 * The callbacks' Python objects stay referenced until the engine is gone.
 * A cache collected on one of its own callback threads is destroyed on a
 * helper thread, since the engine cannot join the thread it runs on.
 * Near caches bound to a cache are destroyed before it (the NearCache
 * section has their own rules).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "corral.h"
#include "corral_near.h"

#if PY_VERSION_HEX >= 0x030D0000
#define py_finalizing() Py_IsFinalizing()
#else
#define py_finalizing() _Py_IsFinalizing()
#endif

/* Loader codes of our own (exception codes are positive). */
#define CODE_LOST (-1)       /* the exception could not be recorded */
#define CODE_FINALIZING (-3) /* the interpreter is shutting down */

/* The error table: pruned when it doubles, never above ERRORS_MAX. */
#define ERRORS_MIN_PRUNE 64
#define ERRORS_MAX 4096

/* ---------------------------------------------------------------------- */
/* Module state                                                           */

static PyObject *Error, *NotFound, *Exists, *NotStored, *OutOfMemory;
static PyObject *TooLarge, *InvalidArgument, *NonNumeric, *Timeout;
static PyObject *Stale, *Busy, *LoadError, *WriteError, *Closed;
static PyTypeObject *WriteType, *EventType;
static PyObject *LoadedType, *AbsentType; /* registered by __init__.py */
static PyObject *str_set, *str_delete;
static PyObject *event_names[8];

/* Values at least this long are copied with the GIL released. */
static Py_ssize_t release_bytes = 32 * 1024;

/* Depth of our callbacks on this thread: close() may not run inside. */
static _Thread_local int callback_depth;
/* The exception of this thread's last failed write-through writer. */
static _Thread_local PyObject *write_exc;

static uint64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---------------------------------------------------------------------- */
/* Errors                                                                 */

static PyObject *
status_type(corral_status_t st)
{
    switch (st) {
    case CORRAL_ENOTFOUND:
        return NotFound;
    case CORRAL_EEXISTS:
        return Exists;
    case CORRAL_ENOTSTORED:
        return NotStored;
    case CORRAL_ENOMEM:
        return OutOfMemory;
    case CORRAL_ETOOBIG:
        return TooLarge;
    case CORRAL_EINVAL:
    case CORRAL_ERANGE:
        return InvalidArgument;
    case CORRAL_ENONNUMERIC:
        return NonNumeric;
    case CORRAL_ETIMEDOUT:
        return Timeout;
    case CORRAL_ESTALE:
        return Stale;
    case CORRAL_EBUSY:
        return Busy;
    case CORRAL_ELOAD:
        return LoadError;
    default:
        return Error;
    }
}

/*
 * Raise the exception for a status: "<what> <key>: <description>", or for
 * NotFound (a KeyError) the key itself, as dict does.  Returns NULL.
 */
static PyObject *
raise_status(corral_status_t st, const char *what, PyObject *key)
{
    PyObject *type = status_type(st);

    if (st == CORRAL_ENOTFOUND && key != NULL) {
        PyErr_SetObject(type, key);
    } else if (key != NULL) {
        PyErr_Format(type, "%s %R: %s", what, key, corral_strerror(st));
    } else {
        PyErr_Format(type, "%s: %s", what, corral_strerror(st));
    }
    return NULL;
}

static PyObject *
raise_closed(void)
{
    PyErr_SetString(Closed, "the cache is closed");
    return NULL;
}

/* The pending exception, normalised, with its traceback; clears it. */
static PyObject *
take_exception(void)
{
    PyObject *type, *value, *tb;

    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL) {
        return NULL;
    }
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

/* ---------------------------------------------------------------------- */
/* Arguments                                                              */

/*
 * A method's parameters: names (NULL-terminated), how many may be given
 * positionally and how many are required.  parse_args() maps a vectorcall
 * onto slots (borrowed references, NULL when not given).
 */
struct argspec {
    const char *fname;
    const char *const *names;
    int npos;
    int nreq;
};

#define ARGS_MAX 16

static int
parse_args(const struct argspec *sp, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames, PyObject **out)
{
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    int n = 0;

    while (sp->names[n] != NULL) {
        out[n++] = NULL;
    }
    if (nargs > sp->npos) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes at most %d positional argument%s "
                     "(%zd given)",
                     sp->fname, sp->npos, sp->npos == 1 ? "" : "s", nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        out[i] = args[i];
    }
    for (Py_ssize_t j = 0; j < nkw; j++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, j);
        int s;
        for (s = 0; s < n; s++) {
            if (PyUnicode_CompareWithASCIIString(name, sp->names[s]) == 0) {
                break;
            }
        }
        if (s == n) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got an unexpected keyword argument %R",
                         sp->fname, name);
            return -1;
        }
        if (out[s] != NULL) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got multiple values for argument '%s'",
                         sp->fname, sp->names[s]);
            return -1;
        }
        out[s] = args[nargs + j];
    }
    for (int i = 0; i < sp->nreq; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'",
                         sp->fname, sp->names[i]);
            return -1;
        }
    }
    return 0;
}

/* An integer argument (None or absent: dflt).  Floats are refused. */
static int
arg_i64(PyObject *o, const char *name, int64_t dflt, int64_t *out)
{
    long long v;

    if (o == NULL || o == Py_None) {
        *out = dflt;
        return 0;
    }
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", name,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s must be in -2**63..2**63-1",
                         name);
        }
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

static int
arg_u64(PyObject *o, const char *name, uint64_t dflt, uint64_t *out)
{
    unsigned long long v;

    if (o == NULL || o == Py_None) {
        *out = dflt;
        return 0;
    }
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", name,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s must be in 0..2**64-1", name);
        }
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

/* An int in 0..max (or None: dflt); out of range is a ValueError. */
static int
arg_upto(PyObject *o, const char *name, uint64_t dflt, uint64_t max,
         uint64_t *out)
{
    if (arg_u64(o, name, dflt, out) < 0) {
        if (!PyErr_ExceptionMatches(PyExc_ValueError)) {
            return -1; /* not an int */
        }
        PyErr_Clear();
    } else if (*out <= max) {
        return 0;
    }
    PyErr_Format(PyExc_ValueError, "%s must be in 0..%llu", name,
                 (unsigned long long)max);
    return -1;
}

static int
arg_flags(PyObject *o, uint32_t dflt, uint32_t *out)
{
    uint64_t v;

    if (arg_upto(o, "flags", dflt, UINT32_MAX, &v) < 0) {
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* Seconds (int or float) as milliseconds, rounded up; None: dflt. */
static int
arg_ms(PyObject *o, const char *name, int64_t dflt, int64_t *out)
{
    double s;

    if (o == NULL || o == Py_None) {
        *out = dflt;
        return 0;
    }
    s = PyFloat_AsDouble(o);
    if (s == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (!(s >= 0) || s > 1e12) {
        PyErr_Format(PyExc_ValueError, "%s must be a number of seconds >= 0",
                     name);
        return -1;
    }
    *out = (int64_t)ceil(s * 1000.0);
    return 0;
}

static int
arg_bool(PyObject *o, int dflt)
{
    return o == NULL ? dflt : PyObject_IsTrue(o);
}

/*
 * Keys: str (UTF-8), bytes, or any other bytes-like object.  The pointer
 * is borrowed from the object, which the caller keeps alive.
 */
struct key {
    const char *p;
    Py_ssize_t n;
    Py_buffer view;
    int viewed;
};

static void
key_done(struct key *k)
{
    if (k->viewed) {
        PyBuffer_Release(&k->view);
        k->viewed = 0;
    }
}

static int
bytes_like(PyObject *o, const char *what, const char **p, Py_ssize_t *n,
           Py_buffer *view, int *viewed, int allow_str)
{
    *viewed = 0;
    if (PyBytes_Check(o)) {
        *p = PyBytes_AS_STRING(o);
        *n = PyBytes_GET_SIZE(o);
        return 0;
    }
    if (PyUnicode_Check(o)) {
        if (!allow_str) {
            PyErr_Format(PyExc_TypeError,
                         "a %s must be bytes-like, not str (encode it)", what);
            return -1;
        }
        *p = PyUnicode_AsUTF8AndSize(o, n);
        return *p == NULL ? -1 : 0;
    }
    if (PyObject_GetBuffer(o, view, PyBUF_SIMPLE) < 0) {
        PyErr_Format(PyExc_TypeError, "a %s must be %sbytes-like, not %.100s",
                     what, allow_str ? "str or " : "", Py_TYPE(o)->tp_name);
        return -1;
    }
    *viewed = 1;
    *p = view->buf;
    *n = view->len;
    return 0;
}

static int
key_get(PyObject *o, struct key *k)
{
    if (bytes_like(o, "key", &k->p, &k->n, &k->view, &k->viewed, 1) < 0) {
        return -1;
    }
    if (k->n < 1 || k->n > CORRAL_KEY_MAX) {
        key_done(k);
        PyErr_Format(InvalidArgument,
                     "a key must be 1 to %d bytes long, not %zd",
                     CORRAL_KEY_MAX, k->n);
        return -1;
    }
    return 0;
}

/* Values: bytes-like (str is refused: values come back as bytes). */
struct value {
    const char *p;
    Py_ssize_t n;
    Py_buffer view;
    int viewed;
};

static int
value_get(PyObject *o, struct value *v)
{
    return bytes_like(o, "value", &v->p, &v->n, &v->view, &v->viewed, 0);
}

static void
value_done(struct value *v)
{
    if (v->viewed) {
        PyBuffer_Release(&v->view);
        v->viewed = 0;
    }
}

/*
 * Tags: an iterable of str (or bytes), or one str; up to CORRAL_TAGS_MAX,
 * each 1..CORRAL_TAG_MAX bytes without NUL.  v[] points into the objects
 * that `keep` holds.
 */
struct tags {
    const char *v[CORRAL_TAGS_MAX];
    size_t n;
    PyObject *keep;
};

/* A NUL-terminated name from str or bytes (borrowed from o). */
static const char *
name_get(PyObject *o, const char *what, size_t max, Py_ssize_t *out_len)
{
    const char *p;
    Py_ssize_t n;

    if (PyUnicode_Check(o)) {
        p = PyUnicode_AsUTF8AndSize(o, &n);
        if (p == NULL) {
            return NULL;
        }
    } else if (PyBytes_Check(o)) {
        p = PyBytes_AS_STRING(o);
        n = PyBytes_GET_SIZE(o);
    } else {
        PyErr_Format(PyExc_TypeError, "a %s must be str or bytes, not %.100s",
                     what, Py_TYPE(o)->tp_name);
        return NULL;
    }
    if (n < 1 || (size_t)n > max || strlen(p) != (size_t)n) {
        PyErr_Format(InvalidArgument,
                     "a %s must be 1 to %zu bytes long, without NUL: %R", what,
                     max, o);
        return NULL;
    }
    if (out_len != NULL) {
        *out_len = n;
    }
    return p;
}

static int
tags_get(PyObject *o, struct tags *t)
{
    Py_ssize_t n;

    t->n = 0;
    t->keep = NULL;
    if (o == NULL || o == Py_None) {
        return 0;
    }
    if (PyUnicode_Check(o) || PyBytes_Check(o)) {
        t->keep = PyTuple_Pack(1, o);
    } else {
        t->keep = PySequence_Tuple(o);
    }
    if (t->keep == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError,
                         "tags must be an iterable of str, not %.100s",
                         Py_TYPE(o)->tp_name);
        }
        return -1;
    }
    n = PyTuple_GET_SIZE(t->keep);
    if (n > CORRAL_TAGS_MAX) {
        PyErr_Format(InvalidArgument, "at most %d tags per item, not %zd",
                     CORRAL_TAGS_MAX, n);
        Py_CLEAR(t->keep);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        t->v[i] =
            name_get(PyTuple_GET_ITEM(t->keep, i), "tag", CORRAL_TAG_MAX, NULL);
        if (t->v[i] == NULL) {
            Py_CLEAR(t->keep);
            return -1;
        }
    }
    t->n = (size_t)n;
    return 0;
}

static void
tags_done(struct tags *t)
{
    Py_CLEAR(t->keep);
}

/* ---------------------------------------------------------------------- */
/* Value: a pinned item exposed through the buffer protocol               */

typedef struct {
    PyObject ob_base;
    corral_item_t *item; /* NULL once released */
    const char *p;
    Py_ssize_t n;
    Py_ssize_t exports; /* buffers handed out and not yet released */
} ValueObject;

static PyTypeObject ValueType;

/* Wrap a pinned item; the Value owns the pin. */
static PyObject *
value_new(corral_item_t *item)
{
    ValueObject *v = PyObject_New(ValueObject, &ValueType);
    size_t n;

    if (v == NULL) {
        corral_item_release(item);
        return NULL;
    }
    v->item = item;
    v->p = corral_item_value(item, &n);
    v->n = (Py_ssize_t)n;
    v->exports = 0;
    return (PyObject *)v;
}

static void
Value_dealloc(ValueObject *self)
{
    corral_item_release(self->item);
    PyObject_Free(self);
}

static int
value_live(ValueObject *self)
{
    if (self->item == NULL) {
        PyErr_SetString(PyExc_ValueError, "the Value has been released");
        return -1;
    }
    return 0;
}

static int
Value_getbuffer(ValueObject *self, Py_buffer *view, int flags)
{
    if (value_live(self) < 0) {
        view->obj = NULL;
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)self, (void *)self->p, self->n, 1,
                          flags) < 0) {
        return -1;
    }
    self->exports++;
    return 0;
}

static void
Value_releasebuffer(ValueObject *self, Py_buffer *view)
{
    self->exports--;
}

static PyObject *
Value_release(ValueObject *self, PyObject *unused)
{
    if (self->exports > 0) {
        PyErr_Format(PyExc_BufferError,
                     "cannot release a Value while %zd memoryview%s of it "
                     "exist%s",
                     self->exports, self->exports == 1 ? "" : "s",
                     self->exports == 1 ? "s" : "");
        return NULL;
    }
    corral_item_release(self->item);
    self->item = NULL;
    Py_RETURN_NONE;
}

static PyObject *
Value_enter(ValueObject *self, PyObject *unused)
{
    return Py_NewRef(self);
}

static PyObject *
Value_exit(ValueObject *self, PyObject *args)
{
    return Value_release(self, NULL);
}

static PyObject *
Value_tobytes(ValueObject *self, PyObject *unused)
{
    if (value_live(self) < 0) {
        return NULL;
    }
    return PyBytes_FromStringAndSize(self->p, self->n);
}

static Py_ssize_t
Value_len(ValueObject *self)
{
    if (value_live(self) < 0) {
        return -1;
    }
    return self->n;
}

static PyObject *
Value_get_key(ValueObject *self, void *unused)
{
    const void *k;
    size_t n;

    if (value_live(self) < 0) {
        return NULL;
    }
    k = corral_item_key(self->item, &n);
    return PyBytes_FromStringAndSize(k, (Py_ssize_t)n);
}

static PyObject *
Value_get_flags(ValueObject *self, void *unused)
{
    if (value_live(self) < 0) {
        return NULL;
    }
    return PyLong_FromUnsignedLong(corral_item_flags(self->item));
}

static PyObject *
Value_get_cas(ValueObject *self, void *unused)
{
    if (value_live(self) < 0) {
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(corral_item_cas(self->item));
}

static PyObject *
Value_get_tags(ValueObject *self, void *unused)
{
    const char *names[CORRAL_TAGS_MAX];
    size_t n;
    PyObject *t;

    if (value_live(self) < 0) {
        return NULL;
    }
    n = corral_item_tags(self->item, names, CORRAL_TAGS_MAX);
    if (n > CORRAL_TAGS_MAX) {
        n = CORRAL_TAGS_MAX;
    }
    t = PyTuple_New((Py_ssize_t)n);
    for (size_t i = 0; t != NULL && i < n; i++) {
        PyObject *s =
            PyUnicode_DecodeUTF8(names[i], strlen(names[i]), "surrogateescape");
        if (s == NULL) {
            Py_CLEAR(t);
            break;
        }
        PyTuple_SET_ITEM(t, (Py_ssize_t)i, s);
    }
    return t;
}

static PyObject *
Value_get_released(ValueObject *self, void *unused)
{
    return PyBool_FromLong(self->item == NULL);
}

static PyObject *
Value_repr(ValueObject *self)
{
    if (self->item == NULL) {
        return PyUnicode_FromString("<corral.Value released>");
    }
    return PyUnicode_FromFormat("<corral.Value of %zd bytes>", self->n);
}

static PyMethodDef Value_methods[] = {
    {"release", (PyCFunction)Value_release, METH_NOARGS,
     "release()\n--\n\nUnpin the item now (otherwise when the Value is "
     "collected).\nRaises BufferError while memoryviews of it exist."},
    {"tobytes", (PyCFunction)Value_tobytes, METH_NOARGS,
     "tobytes()\n--\n\nA copy of the value as bytes."},
    {"__enter__", (PyCFunction)Value_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Value_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Value_getset[] = {
    {"key", (getter)Value_get_key, NULL, "The item's key (bytes).", NULL},
    {"flags", (getter)Value_get_flags, NULL, "The 32-bit client flags.", NULL},
    {"cas", (getter)Value_get_cas, NULL, "The item's CAS when it was read.",
     NULL},
    {"tags", (getter)Value_get_tags, NULL, "The item's tags (tuple of str).",
     NULL},
    {"released", (getter)Value_get_released, NULL,
     "True once release() was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyBufferProcs Value_as_buffer = {
    (getbufferproc)Value_getbuffer,
    (releasebufferproc)Value_releasebuffer,
};

static PySequenceMethods Value_as_sequence = {
    .sq_length = (lenfunc)Value_len,
};

static PyTypeObject ValueType = {
    /* the macro ends with its own comma */
    /* clang-format off */
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "corral.Value",
    /* clang-format on */
    .tp_basicsize = sizeof(ValueObject),
    .tp_dealloc = (destructor)Value_dealloc,
    .tp_repr = (reprfunc)Value_repr,
    .tp_as_sequence = &Value_as_sequence,
    .tp_as_buffer = &Value_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A cached value read without copying.\n\n"
              "It pins the item: its bytes stay valid and unchanged, even if "
              "the key\nis overwritten or deleted, until release() or until "
              "the Value is\ncollected.  memoryview(v) and bytes(v) read it "
              "through the buffer\nprotocol (read-only).",
    .tp_methods = Value_methods,
    .tp_getset = Value_getset,
};

/* A tuple of what iterable o yields, or NULL with a TypeError saying msg
 * when o is not iterable.  A copy, unlike PySequence_Fast's list: the
 * caller releases the GIL while using it, and another thread may change
 * the caller's list meanwhile. */
static PyObject *
snapshot(PyObject *o, const char *msg)
{
    PyObject *it = PyObject_GetIter(o), *t;
    if (it == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_SetString(PyExc_TypeError, msg);
        }
        return NULL;
    }
    t = PySequence_Tuple(it);
    Py_DECREF(it);
    return t;
}

/* ---------------------------------------------------------------------- */
/* The Cache object                                                       */

typedef struct cache_object CacheObject;
typedef struct near_object NearObject;

typedef struct {
    PyObject ob_base;
    CacheObject *owner; /* borrowed; NULL once closed */
    corral_sub_t *sub;  /* NULL once closed */
    PyObject *callback;
} SubObject;

static PyTypeObject SubType;

struct cache_object {
    PyObject ob_base;
    corral_t *cache;  /* NULL before init and once closed */
    bool closing;     /* a close has begun and not finished */
    bool closed;      /* closed: it cannot be initialised again */
    unsigned active;  /* method calls using the engine now */
    PyObject *subs;   /* list of active Subscriptions */
    PyObject *writer; /* the Python writer, or NULL */
    int writer_mode;  /* 0, 1 through, 2 behind */
    PyObject *last_write_error;
    PyObject *errors;        /* int code -> (exception, deadline ms) */
    Py_ssize_t errors_prune; /* prune when the table reaches this */
    int next_code;
    int64_t backoff_max_ms;
    size_t max_item_size;
    NearObject *nears; /* open near caches bound to it (borrowed) */
    PyObject *weakrefs;
};

static PyTypeObject CacheType;

/*
 * A near cache (corral_near.h) bound to a Cache.  It holds a reference to
 * its Cache, which must outlive the C near cache; the Cache lists its
 * open near caches (borrowed: the list holds no reference) so that
 * closing it closes them first.
 */
struct near_object {
    PyObject ob_base;
    CacheObject *owner;  /* strong; set by init, kept until collected */
    corral_near_t *near; /* NULL before init and once closed */
    unsigned active;     /* method calls using the near cache now */
    NearObject *prev;    /* in owner->nears while open */
    NearObject *next;
    PyObject *host; /* str */
    unsigned port;
    PyObject *weakrefs;
};

static PyTypeObject NearType;

/*
 * Take a near cache out of its owner's list and return its handle, which
 * the caller destroys (GIL held).  NULL if it was not open.
 */
static corral_near_t *
near_unlink(NearObject *nr)
{
    corral_near_t *h = nr->near;

    if (h == NULL) {
        return NULL;
    }
    nr->near = NULL;
    if (nr->prev != NULL) {
        nr->prev->next = nr->next;
    } else {
        nr->owner->nears = nr->next;
    }
    if (nr->next != NULL) {
        nr->next->prev = nr->prev;
    }
    nr->prev = nr->next = NULL;
    return h;
}

/*
 * A method about to use the engine: the handle (counted in `active` until
 * cache_leave), or NULL with Closed raised.  Methods keep the handle in a
 * local: self->cache turns NULL as soon as close() starts.
 */
static corral_t *
cache_enter(CacheObject *self)
{
    if (self->cache == NULL) {
        raise_closed();
        return NULL;
    }
    self->active++;
    return self->cache;
}

static void
cache_leave(CacheObject *self)
{
    self->active--;
}

/* Run stmt with the GIL released when cond holds. */
#define NOGIL_IF(cond, stmt)                                                   \
    do {                                                                       \
        PyThreadState *save_ = (cond) ? PyEval_SaveThread() : NULL;            \
        stmt;                                                                  \
        if (save_ != NULL) {                                                   \
            PyEval_RestoreThread(save_);                                       \
        }                                                                      \
    } while (0)

/* A copy of a pinned value as bytes; the item is released. */
static PyObject *
item_to_bytes(corral_item_t *item)
{
    size_t n;
    const char *p = corral_item_value(item, &n);
    PyObject *b;

    if ((Py_ssize_t)n < release_bytes) {
        b = PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
    } else {
        b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
        if (b != NULL) {
            char *dst = PyBytes_AS_STRING(b);
            {
                PyThreadState *save = PyEval_SaveThread();
                memcpy(dst, p, n);
                PyEval_RestoreThread(save);
            }
        }
    }
    corral_item_release(item);
    return b;
}

/* ---------------------------------------------------------------------- */
/* The error table                                                        */

/*
 * Record the pending exception and return its code.  The engine may hand
 * the code out until the key's failure is forgotten: max(error_ms, the
 * key's backoff) after the load, the backoff being at most backoff_max_ms,
 * so entries live for keep_ms = that bound plus a margin.  The table is
 * pruned of expired entries whenever it doubles, and holds at most
 * ERRORS_MAX entries (the oldest go first; a caller whose code is gone
 * gets a LoadError saying so).
 */
static int
errors_put(CacheObject *self, int64_t keep_ms)
{
    PyObject *exc = take_exception();
    PyObject *key = NULL, *entry = NULL;
    uint64_t now = mono_ms();
    int code;

    if (exc == NULL || self->errors == NULL) {
        Py_XDECREF(exc);
        return CODE_LOST;
    }
    for (;;) {
        code = self->next_code;
        self->next_code = code >= INT32_MAX - 1 ? 1 : code + 1;
        key = PyLong_FromLong(code);
        if (key == NULL) {
            goto fail;
        }
        if (PyDict_GetItemWithError(self->errors, key) == NULL) {
            break;
        }
        Py_CLEAR(key);
    }
    if (PyErr_Occurred()) {
        goto fail;
    }
    entry = Py_BuildValue("(OK)", exc, (unsigned long long)(now + keep_ms));
    if (entry == NULL || PyDict_SetItem(self->errors, key, entry) < 0) {
        goto fail;
    }
    Py_DECREF(entry);
    Py_DECREF(key);
    Py_DECREF(exc);

    if (PyDict_GET_SIZE(self->errors) >= self->errors_prune) {
        /* drop expired entries, and the oldest beyond ERRORS_MAX (the
         * dict iterates in insertion order) */
        PyObject *k, *v, *drop = PyList_New(0);
        Py_ssize_t pos = 0, size = PyDict_GET_SIZE(self->errors);
        Py_ssize_t over = size > ERRORS_MAX ? size - ERRORS_MAX * 3 / 4 : 0;
        while (drop != NULL && PyDict_Next(self->errors, &pos, &k, &v)) {
            uint64_t deadline =
                PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(v, 1));
            if (over > 0 || deadline <= now) {
                if (PyList_Append(drop, k) < 0) {
                    break;
                }
                over = over > 0 ? over - 1 : 0;
            }
        }
        for (Py_ssize_t i = 0; drop != NULL && i < PyList_GET_SIZE(drop); i++) {
            PyDict_DelItem(self->errors, PyList_GET_ITEM(drop, i));
        }
        Py_XDECREF(drop);
        PyErr_Clear();
        size = PyDict_GET_SIZE(self->errors);
        self->errors_prune = size * 2 < ERRORS_MIN_PRUNE ? ERRORS_MIN_PRUNE
                             : size * 2 > ERRORS_MAX     ? ERRORS_MAX + 1
                                                         : size * 2;
    }
    return code;

fail:
    PyErr_Clear();
    Py_XDECREF(entry);
    Py_XDECREF(key);
    Py_DECREF(exc);
    return CODE_LOST;
}

/* Raise LoadError for a loader's code (returns NULL). */
static PyObject *
raise_load_error(CacheObject *self, PyObject *key, int code)
{
    PyObject *exc = NULL, *inst, *msg;

    if (code > 0 && self->errors != NULL) {
        PyObject *k = PyLong_FromLong(code), *entry;
        if (k == NULL) {
            return NULL;
        }
        entry = PyDict_GetItemWithError(self->errors, k);
        Py_DECREF(k);
        if (entry == NULL && PyErr_Occurred()) {
            return NULL;
        }
        if (entry != NULL) {
            exc = Py_NewRef(PyTuple_GET_ITEM(entry, 0));
        }
    }
    if (exc != NULL &&
        !PyObject_TypeCheck(exc, (PyTypeObject *)PyExc_Exception)) {
        /* KeyboardInterrupt, SystemExit: not a loader failure to wrap */
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
        return NULL;
    }
    if (exc != NULL) {
        msg = PyUnicode_FromFormat("loading %R failed: %R", key, exc);
    } else if (code == CODE_FINALIZING) {
        msg = PyUnicode_FromFormat(
            "loading %R failed: the interpreter is shutting down", key);
    } else {
        msg = PyUnicode_FromFormat(
            "loading %R failed (error code %d); the loader's exception is "
            "no longer held",
            key, code);
    }
    if (msg == NULL) {
        Py_XDECREF(exc);
        return NULL;
    }
    inst = PyObject_CallOneArg(LoadError, msg);
    Py_DECREF(msg);
    if (inst == NULL) {
        Py_XDECREF(exc);
        return NULL;
    }
    if (PyObject_SetAttrString(inst, "exception", exc ? exc : Py_None) < 0 ||
        PyObject_SetAttrString(inst, "key", key) < 0) {
        Py_DECREF(inst);
        Py_XDECREF(exc);
        return NULL;
    }
    if (exc != NULL) {
        PyException_SetCause(inst, exc); /* steals exc */
    }
    PyErr_SetObject(LoadError, inst);
    Py_DECREF(inst);
    return NULL;
}

/* ---------------------------------------------------------------------- */
/* Loaders                                                                */

/* What a load needs besides the loader: the fetch's options. */
struct lctx {
    CacheObject *self;
    PyObject *loader;
    PyObject *tags; /* validated tuple, or NULL */
    uint32_t flags;
    int64_t ttl;
    int64_t stale_ttl;
    int64_t absent_ttl;
    int64_t keep_ms; /* how long the error table keeps exceptions */
};

/* An attribute of a Loaded/Absent result, or NULL (None) on error. */
static int
result_attr(PyObject *r, const char *name, PyObject **out)
{
    *out = PyObject_GetAttrString(r, name);
    return *out == NULL ? -1 : 0;
}

/* Apply the loader's result to the load; 0 or an error code. */
static int
load_result(struct lctx *x, corral_load_t *ld, PyObject *r)
{
    PyObject *value = r, *a_ttl = NULL, *a_stale = NULL, *a_flags = NULL;
    PyObject *a_tags = NULL;
    struct value v = {0};
    struct tags t = {0};
    uint32_t flags = x->flags;
    int64_t ttl, stale, absent_ttl;
    int rc = -1;
    corral_status_t st;

    if (AbsentType != NULL &&
        PyObject_TypeCheck(r, (PyTypeObject *)AbsentType)) {
        if (result_attr(r, "ttl", &a_ttl) < 0 ||
            arg_i64(a_ttl, "Absent.ttl", x->absent_ttl, &absent_ttl) < 0) {
            goto out;
        }
        corral_load_absent(ld, absent_ttl);
        rc = 0;
        goto out;
    }
    if (LoadedType != NULL &&
        PyObject_TypeCheck(r, (PyTypeObject *)LoadedType)) {
        if (result_attr(r, "value", &value) < 0 ||
            result_attr(r, "ttl", &a_ttl) < 0 ||
            result_attr(r, "stale_ttl", &a_stale) < 0 ||
            result_attr(r, "flags", &a_flags) < 0 ||
            result_attr(r, "tags", &a_tags) < 0 ||
            arg_flags(a_flags, x->flags, &flags) < 0) {
            goto out;
        }
    }
    if (PyUnicode_Check(value) || value == Py_None ||
        !PyObject_CheckBuffer(value)) {
        PyErr_Format(PyExc_TypeError,
                     "a loader must return bytes-like, corral.Loaded or "
                     "corral.ABSENT, not %.100s",
                     Py_TYPE(value)->tp_name);
        goto out;
    }
    if (value_get(value, &v) < 0) {
        goto out;
    }
    st = corral_load_set(ld, v.p, (size_t)v.n, flags);
    if (st != CORRAL_OK) {
        rc = 0; /* the engine answers the fetch with this status */
        goto out;
    }
    if (a_tags != NULL && a_tags != Py_None) {
        if (tags_get(a_tags, &t) < 0) {
            goto out;
        }
    } else if (x->tags != NULL && tags_get(x->tags, &t) < 0) {
        goto out;
    }
    if (t.n > 0 && corral_load_tags(ld, t.v, t.n) != CORRAL_OK) {
        PyErr_NoMemory();
        goto out;
    }
    if ((a_ttl != NULL && a_ttl != Py_None) ||
        (a_stale != NULL && a_stale != Py_None)) {
        if (arg_i64(a_ttl, "Loaded.ttl", x->ttl, &ttl) < 0 ||
            arg_i64(a_stale, "Loaded.stale_ttl", x->stale_ttl, &stale) < 0) {
            goto out;
        }
        corral_load_ttl(ld, ttl, stale);
    }
    rc = 0;
out:
    value_done(&v);
    tags_done(&t);
    if (value != r) {
        Py_XDECREF(value);
    }
    Py_XDECREF(a_ttl);
    Py_XDECREF(a_stale);
    Py_XDECREF(a_flags);
    Py_XDECREF(a_tags);
    return rc == 0 ? 0 : errors_put(x->self, x->keep_ms);
}

/* Call the loader (GIL held); 0 or an error code. */
static int
run_loader(struct lctx *x, corral_load_t *ld)
{
    PyObject *r = PyObject_CallNoArgs(x->loader);
    int rc;

    if (r == NULL) {
        return errors_put(x->self, x->keep_ms);
    }
    rc = load_result(x, ld, r);
    Py_DECREF(r);
    return rc;
}

/* The trampoline of a fetch whose loader is on the caller's stack. */
static int
loader_inline(corral_load_t *ld, const void *key, size_t nkey, void *ud)
{
    PyGILState_STATE g;
    int rc;

    if (py_finalizing()) {
        return CODE_FINALIZING;
    }
    g = PyGILState_Ensure();
    callback_depth++;
    rc = run_loader(ud, ld);
    callback_depth--;
    PyGILState_Release(g);
    return rc;
}

/* A background fetch's context: a heap copy of x, since the engine may
 * run its refresh after fetch() returned.  Holds references to the loader
 * and the tags; freed by the engine's release call
 * (CORRAL_FETCH_RELEASE). */
static struct lctx *
bg_new(const struct lctx *x)
{
    struct lctx *b = PyMem_RawMalloc(sizeof(*b));
    if (b == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    *b = *x;
    Py_INCREF(b->loader);
    Py_XINCREF(b->tags);
    return b;
}

/* The trampoline of background fetches: ud is bg_new's copy. */
static int
loader_background(corral_load_t *ld, const void *key, size_t nkey, void *ud)
{
    struct lctx *b = ud;
    PyGILState_STATE g;
    int rc = 0;

    (void)key;
    (void)nkey;
    if (py_finalizing()) {
        /* no Python now: the references are left to the exiting process */
        if (ld == NULL) {
            PyMem_RawFree(b);
        }
        return CODE_FINALIZING;
    }
    g = PyGILState_Ensure();
    if (ld == NULL) {
        Py_DECREF(b->loader);
        Py_XDECREF(b->tags);
        PyMem_RawFree(b);
    } else {
        callback_depth++;
        rc = run_loader(b, ld);
        callback_depth--;
    }
    PyGILState_Release(g);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Writers                                                                */

static PyObject *
write_new(const corral_write_t *w)
{
    PyObject *o = PyStructSequence_New(WriteType);
    PyObject *f[6];

    if (o == NULL) {
        return NULL;
    }
    f[0] = Py_NewRef(w->op == CORRAL_WRITE_SET ? str_set : str_delete);
    f[1] = PyBytes_FromStringAndSize(w->key, (Py_ssize_t)w->nkey);
    f[2] = w->op == CORRAL_WRITE_SET
               ? PyBytes_FromStringAndSize(w->value, (Py_ssize_t)w->nvalue)
               : Py_NewRef(Py_None);
    f[3] = PyLong_FromUnsignedLong(w->flags);
    f[4] = PyLong_FromUnsignedLongLong(w->seq);
    f[5] = PyLong_FromLongLong(w->expires);
    for (int i = 0; i < 6; i++) {
        if (f[i] == NULL) {
            for (int j = i + 1; j < 6; j++) {
                Py_XDECREF(f[j]);
            }
            Py_DECREF(o);
            return NULL;
        }
        PyStructSequence_SET_ITEM(o, i, f[i]);
    }
    return o;
}

/* Write-through: call the writer on the caller's thread. */
static int
writer_through(const corral_write_t *w, void *ud)
{
    CacheObject *self = ud;
    PyGILState_STATE g;
    PyObject *arg, *r = NULL;

    if (py_finalizing()) {
        return CODE_FINALIZING;
    }
    g = PyGILState_Ensure();
    callback_depth++;
    arg = write_new(w);
    if (arg != NULL && self->writer != NULL) {
        r = PyObject_CallOneArg(self->writer, arg);
    } else if (arg != NULL) {
        PyErr_SetString(Error, "the cache has no writer any more");
    }
    Py_XDECREF(arg);
    if (r == NULL) {
        Py_XSETREF(write_exc, take_exception());
    }
    Py_XDECREF(r);
    callback_depth--;
    PyGILState_Release(g);
    return r == NULL ? 1 : 0;
}

/* Write-behind: call the batch writer on the flusher thread. */
static int
writer_behind(const corral_write_t *writes, size_t n, int *results, void *ud)
{
    CacheObject *self = ud;
    PyGILState_STATE g;
    PyObject *batch, *r = NULL, *seq = NULL;
    int ok = 0;

    for (size_t i = 0; i < n; i++) {
        results[i] = 1;
    }
    if (py_finalizing()) {
        return 1;
    }
    g = PyGILState_Ensure();
    callback_depth++;
    batch = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; batch != NULL && i < n; i++) {
        PyObject *w = write_new(&writes[i]);
        if (w == NULL) {
            Py_CLEAR(batch);
            break;
        }
        PyList_SET_ITEM(batch, (Py_ssize_t)i, w);
    }
    if (batch != NULL && self->writer != NULL) {
        r = PyObject_CallOneArg(self->writer, batch);
    } else if (batch != NULL) {
        PyErr_SetString(Error, "the cache has no writer any more");
    }
    if (r == Py_None) {
        for (size_t i = 0; i < n; i++) {
            results[i] = 0;
        }
        ok = 1;
    } else if (r != NULL) {
        /* a copy: each result's __bool__ may change the writer's list */
        seq = snapshot(r, "a write-behind writer must return None or one "
                          "result per write");
        if (seq != NULL && PySequence_Fast_GET_SIZE(seq) != (Py_ssize_t)n) {
            PyErr_Format(PyExc_ValueError,
                         "the write-behind writer returned %zd results for "
                         "%zu writes",
                         PySequence_Fast_GET_SIZE(seq), n);
        } else if (seq != NULL) {
            ok = 1;
            for (size_t i = 0; i < n; i++) {
                int t = PyObject_IsTrue(
                    PySequence_Fast_GET_ITEM(seq, (Py_ssize_t)i));
                if (t < 0) {
                    ok = 0;
                    break;
                }
                results[i] = !t;
            }
            if (!ok) {
                for (size_t i = 0; i < n; i++) {
                    results[i] = 1;
                }
            }
        }
    }
    if (!ok) {
        Py_XSETREF(self->last_write_error, take_exception());
    }
    Py_XDECREF(seq);
    Py_XDECREF(r);
    Py_XDECREF(batch);
    callback_depth--;
    PyGILState_Release(g);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Events                                                                 */

static PyObject *
event_new(const corral_event_t *ev)
{
    PyObject *o = PyStructSequence_New(EventType);
    PyObject *f[6];
    unsigned t = (unsigned)ev->type;

    if (o == NULL) {
        return NULL;
    }
    f[0] = PyLong_FromUnsignedLongLong(ev->seq);
    f[1] = t < 8 && event_names[t] != NULL ? Py_NewRef(event_names[t])
                                           : PyLong_FromLong((long)t);
    f[2] = PyBytes_FromStringAndSize(ev->name, (Py_ssize_t)ev->len);
    f[3] = PyLong_FromUnsignedLongLong(ev->cas);
    f[4] = PyLong_FromUnsignedLongLong(ev->origin);
    f[5] = PyLong_FromLongLong(ev->flush_time);
    for (int i = 0; i < 6; i++) {
        if (f[i] == NULL) {
            for (int j = i + 1; j < 6; j++) {
                Py_XDECREF(f[j]);
            }
            Py_DECREF(o);
            return NULL;
        }
        PyStructSequence_SET_ITEM(o, i, f[i]);
    }
    return o;
}

/* Deliver one event to a subscription's callback (any thread). */
static void
event_trampoline(const corral_event_t *ev, void *ud)
{
    SubObject *sub = ud;
    PyGILState_STATE g;
    PyObject *cb, *e, *r = NULL;

    if (py_finalizing()) {
        return;
    }
    g = PyGILState_Ensure();
    callback_depth++;
    cb = sub->callback;
    if (cb != NULL) {
        Py_INCREF(sub);
        Py_INCREF(cb);
        e = event_new(ev);
        if (e != NULL) {
            r = PyObject_CallOneArg(cb, e);
            Py_DECREF(e);
        }
        if (r == NULL) {
            PyErr_WriteUnraisable(cb);
        }
        Py_XDECREF(r);
        Py_DECREF(cb);
        Py_DECREF(sub);
    }
    callback_depth--;
    PyGILState_Release(g);
}

/* ---------------------------------------------------------------------- */
/* Subscription                                                           */

/* End a subscription (GIL held; released while the engine waits for a
 * delivery in progress on another thread). */
static void
sub_end(SubObject *s)
{
    CacheObject *owner = s->owner;
    corral_sub_t *sub = s->sub;
    corral_t *c = owner != NULL ? owner->cache : NULL;

    if (owner == NULL || sub == NULL) {
        return;
    }
    s->sub = NULL;
    s->owner = NULL;
    if (c != NULL) {
        owner->active++;
        {
            PyThreadState *save = PyEval_SaveThread();
            corral_unsubscribe(c, sub);
            PyEval_RestoreThread(save);
        }
        owner->active--;
    }
    if (owner->subs != NULL) {
        Py_ssize_t n = PyList_GET_SIZE(owner->subs);
        for (Py_ssize_t i = 0; i < n; i++) {
            if (PyList_GET_ITEM(owner->subs, i) == (PyObject *)s) {
                PySequence_DelItem(owner->subs, i); /* may free s */
                break;
            }
        }
    }
}

static PyObject *
Sub_close(SubObject *self, PyObject *unused)
{
    Py_INCREF(self);
    sub_end(self);
    Py_CLEAR(self->callback);
    Py_DECREF(self);
    Py_RETURN_NONE;
}

static PyObject *
Sub_enter(SubObject *self, PyObject *unused)
{
    return Py_NewRef(self);
}

static PyObject *
Sub_exit(SubObject *self, PyObject *args)
{
    return Sub_close(self, NULL);
}

static PyObject *
Sub_get_active(SubObject *self, void *unused)
{
    return PyBool_FromLong(self->sub != NULL);
}

static PyObject *
Sub_get_callback(SubObject *self, void *unused)
{
    return Py_NewRef(self->callback ? self->callback : Py_None);
}

static int
Sub_traverse(SubObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->callback);
    return 0;
}

static int
Sub_clear(SubObject *self)
{
    Py_CLEAR(self->callback);
    return 0;
}

static void
Sub_dealloc(SubObject *self)
{
    PyObject_GC_UnTrack(self);
    /* the owner's list keeps active subscriptions alive: only closed
     * ones get here */
    Py_CLEAR(self->callback);
    PyObject_GC_Del(self);
}

static PyMethodDef Sub_methods[] = {
    {"close", (PyCFunction)Sub_close, METH_NOARGS,
     "close()\n--\n\nEnd the subscription.  When close() returns the "
     "callback is not\nrunning (unless close() was called from the "
     "callback itself) and will\nnot run again."},
    {"__enter__", (PyCFunction)Sub_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Sub_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Sub_getset[] = {
    {"active", (getter)Sub_get_active, NULL,
     "True until close() or the cache's close().", NULL},
    {"callback", (getter)Sub_get_callback, NULL, "The callback.", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject SubType = {
    /* the macro ends with its own comma */
    /* clang-format off */
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "corral.Subscription",
    /* clang-format on */
    .tp_basicsize = sizeof(SubObject),
    .tp_dealloc = (destructor)Sub_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A subscription to a cache's invalidation events, from "
              "Cache.subscribe().",
    .tp_traverse = (traverseproc)Sub_traverse,
    .tp_clear = (inquiry)Sub_clear,
    .tp_methods = Sub_methods,
    .tp_getset = Sub_getset,
};

/* ---------------------------------------------------------------------- */
/* Cache: creation and destruction                                        */

static PyObject *
Cache_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    CacheObject *self = (CacheObject *)type->tp_alloc(type, 0);

    if (self == NULL) {
        return NULL;
    }
    self->subs = PyList_New(0);
    self->errors = PyDict_New();
    if (self->subs == NULL || self->errors == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->errors_prune = ERRORS_MIN_PRUNE;
    self->next_code = 1;
    return (PyObject *)self;
}

static int
Cache_init(CacheObject *self, PyObject *args, PyObject *kwds)
{
    /* PyArg_ParseTupleAndKeywords takes char *[] before Python 3.13 */
    static char *kwlist[] = {(char *)"max_memory",
                             (char *)"shards",
                             (char *)"max_items",
                             (char *)"max_item_size",
                             (char *)"event_ring",
                             (char *)"refresh_threads",
                             (char *)"breaker_failures",
                             (char *)"breaker_open",
                             (char *)"backoff_min",
                             (char *)"backoff_max",
                             NULL};
    corral_config_t cfg;
    uint64_t max_memory, max_items, max_item_size, event_ring;
    uint64_t shards, refresh_threads, breaker_failures;
    PyObject *o_mem = NULL, *o_shards = NULL, *o_items = NULL;
    PyObject *o_isize = NULL, *o_ring = NULL, *o_threads = NULL;
    PyObject *o_fail = NULL, *o_open = NULL, *o_bmin = NULL, *o_bmax = NULL;
    int64_t open_ms, bmin_ms, bmax_ms;
    corral_status_t st;

    if (self->cache != NULL || self->closing) {
        PyErr_SetString(Error, "the cache is already initialised");
        return -1;
    }
    if (self->closed) {
        PyErr_SetString(Error, "a closed cache cannot be initialised again");
        return -1;
    }
    corral_config_init(&cfg);
    if (!PyArg_ParseTupleAndKeywords(
            args, kwds, "|O$OOOOOOOOO:Cache", kwlist, &o_mem, &o_shards,
            &o_items, &o_isize, &o_ring, &o_threads, &o_fail, &o_open,
            &o_bmin, &o_bmax)) {
        return -1;
    }
    if (arg_upto(o_mem, "max_memory", cfg.max_memory, SIZE_MAX,
                 &max_memory) < 0 ||
        arg_upto(o_shards, "shards", cfg.shards, UINT_MAX, &shards) < 0 ||
        arg_upto(o_items, "max_items", cfg.max_items, SIZE_MAX,
                 &max_items) < 0 ||
        arg_upto(o_isize, "max_item_size", cfg.max_item_size, SIZE_MAX,
                 &max_item_size) < 0 ||
        arg_upto(o_ring, "event_ring", cfg.event_ring, SIZE_MAX,
                 &event_ring) < 0 ||
        arg_upto(o_threads, "refresh_threads", cfg.refresh_threads, UINT_MAX,
                 &refresh_threads) < 0 ||
        arg_upto(o_fail, "breaker_failures", cfg.breaker_failures, UINT_MAX,
                 &breaker_failures) < 0 ||
        arg_ms(o_open, "breaker_open", cfg.breaker_open_ms, &open_ms) < 0 ||
        arg_ms(o_bmin, "backoff_min", cfg.backoff_min_ms, &bmin_ms) < 0 ||
        arg_ms(o_bmax, "backoff_max", cfg.backoff_max_ms, &bmax_ms) < 0) {
        return -1;
    }
    cfg.max_memory = (size_t)max_memory;
    cfg.shards = (unsigned)shards;
    cfg.max_items = (size_t)max_items;
    cfg.max_item_size = (size_t)max_item_size;
    cfg.event_ring = (size_t)event_ring;
    cfg.refresh_threads = (unsigned)refresh_threads;
    cfg.breaker_failures = (unsigned)breaker_failures;
    cfg.breaker_open_ms = open_ms;
    cfg.backoff_min_ms = bmin_ms;
    cfg.backoff_max_ms = bmax_ms;
    st = corral_create(&cfg, &self->cache);
    if (st == CORRAL_EINVAL) {
        PyErr_Format(InvalidArgument,
                     "invalid cache configuration (max_memory=%llu, "
                     "max_item_size=%llu, shards=%llu, event_ring=%llu, "
                     "refresh_threads=%llu): max_memory must be at least "
                     "1 MiB; max_item_size 1 KiB to max_memory / 2; shards "
                     "a power of two up to 1024 leaving each shard room "
                     "for two items; event_ring 16 to 1048576; "
                     "refresh_threads at most 64; backoff_min at least "
                     "0.001 s and at most backoff_max",
                     (unsigned long long)max_memory,
                     (unsigned long long)max_item_size,
                     (unsigned long long)shards,
                     (unsigned long long)event_ring,
                     (unsigned long long)refresh_threads);
        return -1;
    }
    if (st != CORRAL_OK) {
        raise_status(st, "Cache()", NULL);
        return -1;
    }
    self->backoff_max_ms = bmax_ms;
    self->max_item_size = cfg.max_item_size;
    return 0;
}

/* Forget the engine's references (after corral_destroy, GIL held). */
static void
cache_detach(CacheObject *self)
{
    self->closed = true;
    self->closing = false;
    if (self->subs != NULL) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(self->subs); i++) {
            SubObject *s = (SubObject *)PyList_GET_ITEM(self->subs, i);
            s->owner = NULL;
            s->sub = NULL;
        }
        Py_CLEAR(self->subs);
    }
    Py_CLEAR(self->writer);
    Py_CLEAR(self->errors);
}

struct deferred {
    corral_t *cache;
    CacheObject *self;
    size_t nnears;
    corral_near_t *nears[]; /* destroyed before the cache */
};

static void *
deferred_destroy(void *arg)
{
    struct deferred *d = arg;
    PyGILState_STATE g;

    for (size_t i = 0; i < d->nnears; i++) {
        corral_near_destroy(d->nears[i]);
    }
    corral_destroy(d->cache);
    if (!py_finalizing()) {
        g = PyGILState_Ensure();
        cache_detach(d->self);
        Py_DECREF(d->self);
        PyGILState_Release(g);
    }
    PyMem_RawFree(d);
    return NULL;
}

/* Let other threads run for a millisecond (GIL held on entry and exit):
 * the wait of close() for calls and closes in progress elsewhere. */
static void
nap_without_gil(void)
{
    PyThreadState *save = PyEval_SaveThread();
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
    PyEval_RestoreThread(save);
}

/* A close that another thread began has finished (GIL held; released
 * while waiting).  Not from a callback of this cache: its close may be
 * waiting for that callback to return. */
static void
wait_closed(CacheObject *self)
{
    if (callback_depth > 0) {
        return;
    }
    while (self->closing) {
        nap_without_gil();
    }
}

/*
 * Destroy the engine, and first the near caches bound to it.  From a
 * callback thread of any cache (the engine cannot join the thread it runs
 * on, and that thread may be a near cache's), a finalizer hands the work
 * to a helper thread, keeping the object alive until it is done; close()
 * refuses.
 */
static int
cache_close(CacheObject *self, int finalizer)
{
    corral_t *c = self->cache;

    if (c == NULL) {
        wait_closed(self);
        return 0;
    }
    self->closing = true;
    if (callback_depth > 0) {
        struct deferred *d;
        size_t n = 0;
        pthread_t t;
        pthread_attr_t attr;

        if (!finalizer) {
            PyErr_SetString(Error, "close() cannot run inside a loader, "
                                   "writer or event callback");
            return -1;
        }
        self->cache = NULL;
        for (NearObject *nr = self->nears; nr != NULL; nr = nr->next) {
            n++;
        }
        d = PyMem_RawMalloc(sizeof(*d) + n * sizeof(d->nears[0]));
        if (d == NULL) {
            return 0; /* leaked: destroying here could deadlock */
        }
        d->nnears = 0;
        while (self->nears != NULL) {
            d->nears[d->nnears++] = near_unlink(self->nears);
        }
        d->cache = c;
        d->self = (CacheObject *)Py_NewRef(self);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, deferred_destroy, d) != 0) {
            Py_DECREF(self); /* resurrected for nothing; finalized once */
            PyMem_RawFree(d);
        }
        pthread_attr_destroy(&attr);
        return 0;
    }
    self->cache = NULL;
    while (self->active > 0) {
        nap_without_gil();
    }
    /* no near cache method runs now (each counts in `active` too), and
     * none can start: their threads apply events to c until destroyed */
    while (self->nears != NULL) {
        corral_near_t *h = near_unlink(self->nears);
        PyThreadState *save = PyEval_SaveThread();
        corral_near_destroy(h);
        PyEval_RestoreThread(save);
    }
    {
        PyThreadState *save = PyEval_SaveThread();
        corral_destroy(c);
        PyEval_RestoreThread(save);
    }
    cache_detach(self);
    return 0;
}

static void
Cache_finalize(CacheObject *self)
{
    PyObject *type, *value, *tb;

    if (self->cache == NULL) {
        return;
    }
    if (py_finalizing()) {
        /* corral/__init__.py closes every cache at exit; one still open
         * now cannot run Python callbacks any more: leave it to the OS */
        self->cache = NULL;
        return;
    }
    PyErr_Fetch(&type, &value, &tb);
    if (cache_close(self, 1) < 0) {
        PyErr_WriteUnraisable((PyObject *)self);
    }
    PyErr_Restore(type, value, tb);
}

static int
Cache_traverse(CacheObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->subs);
    Py_VISIT(self->writer);
    Py_VISIT(self->last_write_error);
    Py_VISIT(self->errors);
    return 0;
}

static int
Cache_clear(CacheObject *self)
{
    if (self->cache != NULL) {
        return 0; /* the engine still calls these */
    }
    if (self->subs != NULL) {
        cache_detach(self);
    }
    Py_CLEAR(self->writer);
    Py_CLEAR(self->last_write_error);
    Py_CLEAR(self->errors);
    return 0;
}

static void
Cache_dealloc(CacheObject *self)
{
    if (PyObject_CallFinalizerFromDealloc((PyObject *)self) < 0) {
        return; /* resurrected: a helper thread destroys the engine */
    }
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    self->cache = NULL; /* if still set, leaked on purpose (finalizing) */
    Cache_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* ---------------------------------------------------------------------- */
/* Cache: retrieval                                                       */

static const char *const get_names[] = {"key", "default", NULL};
static const struct argspec get_spec = {"get", get_names, 2, 1};

static PyObject *
Cache_get(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    corral_t *c;
    PyObject *a[2];
    struct key k;
    corral_item_t *item;
    corral_status_t st;

    if (parse_args(&get_spec, args, nargs, kwnames, a) < 0 ||
        key_get(a[0], &k) < 0) {
        return NULL;
    }
    c = cache_enter(self);
    if (c == NULL) {
        key_done(&k);
        return NULL;
    }
    st = corral_get(c, k.p, (size_t)k.n, &item);
    cache_leave(self);
    key_done(&k);
    if (st == CORRAL_OK) {
        return item_to_bytes(item);
    }
    if (st == CORRAL_ENOTFOUND) {
        return Py_NewRef(a[1] != NULL ? a[1] : Py_None);
    }
    return raise_status(st, "get", a[0]);
}

static PyObject *
Cache_subscript(CacheObject *self, PyObject *key)
{
    corral_t *c;
    struct key k;
    corral_item_t *item;
    corral_status_t st;

    if (key_get(key, &k) < 0) {
        return NULL;
    }
    c = cache_enter(self);
    if (c == NULL) {
        key_done(&k);
        return NULL;
    }
    st = corral_get(c, k.p, (size_t)k.n, &item);
    cache_leave(self);
    key_done(&k);
    if (st == CORRAL_OK) {
        return item_to_bytes(item);
    }
    return raise_status(st, "get", key);
}

static const struct argspec get_view_spec = {"get_view", get_names, 2, 1};

static PyObject *
Cache_get_view(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames)
{
    corral_t *c;
    PyObject *a[2];
    struct key k;
    corral_item_t *item;
    corral_status_t st;

    if (parse_args(&get_view_spec, args, nargs, kwnames, a) < 0 ||
        key_get(a[0], &k) < 0) {
        return NULL;
    }
    c = cache_enter(self);
    if (c == NULL) {
        key_done(&k);
        return NULL;
    }
    st = corral_get(c, k.p, (size_t)k.n, &item);
    cache_leave(self);
    key_done(&k);
    if (st == CORRAL_OK) {
        return value_new(item);
    }
    if (st == CORRAL_ENOTFOUND) {
        return Py_NewRef(a[1] != NULL ? a[1] : Py_None);
    }
    return raise_status(st, "get_view", a[0]);
}

static const struct argspec gets_spec = {"gets", get_names, 2, 1};

static PyObject *
Cache_gets(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    corral_t *c;
    PyObject *a[2], *v;
    struct key k;
    corral_item_t *item;
    corral_status_t st;
    uint64_t cas;

    if (parse_args(&gets_spec, args, nargs, kwnames, a) < 0 ||
        key_get(a[0], &k) < 0) {
        return NULL;
    }
    c = cache_enter(self);
    if (c == NULL) {
        key_done(&k);
        return NULL;
    }
    st = corral_get(c, k.p, (size_t)k.n, &item);
    cache_leave(self);
    key_done(&k);
    if (st == CORRAL_ENOTFOUND) {
        return Py_NewRef(a[1] != NULL ? a[1] : Py_None);
    }
    if (st != CORRAL_OK) {
        return raise_status(st, "gets", a[0]);
    }
    cas = corral_item_cas(item);
    v = item_to_bytes(item);
    return v == NULL ? NULL : Py_BuildValue("(NK)", v, (unsigned long long)cas);
}

static int
Cache_contains(CacheObject *self, PyObject *key)
{
    corral_get_opts_t o = {0};
    struct key k;
    corral_item_t *item;
    corral_status_t st;

    if (key_get(key, &k) < 0) {
        return -1;
    }
    if (self->cache == NULL) {
        key_done(&k);
        raise_closed();
        return -1;
    }
    o.flags = CORRAL_GET_NOBUMP;
    st = corral_get_ex(self->cache, k.p, (size_t)k.n, &o, &item, NULL);
    key_done(&k);
    if (st == CORRAL_OK) {
        corral_item_release(item);
        return 1;
    }
    if (st == CORRAL_ENOTFOUND) {
        return 0;
    }
    raise_status(st, "in", key);
    return -1;
}

static const char *const ttl_names[] = {"key", NULL};
static const struct argspec ttl_spec = {"ttl", ttl_names, 1, 1};

static PyObject *
Cache_ttl(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    corral_t *c;
    corral_get_opts_t o = {0};
    PyObject *a[1];
    struct key k;
    corral_item_t *item;
    corral_status_t st;
    int64_t ttl;

    if (parse_args(&ttl_spec, args, nargs, kwnames, a) < 0 ||
        key_get(a[0], &k) < 0) {
        return NULL;
    }
    c = cache_enter(self);
    if (c == NULL) {
        key_done(&k);
        return NULL;
    }
    o.flags = CORRAL_GET_NOBUMP;
    st = corral_get_ex(c, k.p, (size_t)k.n, &o, &item, NULL);
    if (st == CORRAL_OK) {
        ttl = corral_item_ttl(c, item);
        corral_item_release(item);
    }
    cache_leave(self);
    key_done(&k);
    if (st == CORRAL_ENOTFOUND) {
        Py_RETURN_NONE;
    }
    if (st != CORRAL_OK) {
        return raise_status(st, "ttl", a[0]);
    }
    return PyLong_FromLongLong(ttl);
}

/* Keys from an iterable, converted; release with keys_done(). */
struct keys {
    PyObject *seq;
    Py_ssize_t n;
    struct key *k;
    const void **p;
    size_t *len;
};

static void
keys_done(struct keys *ks)
{
    if (ks->k != NULL) {
        for (Py_ssize_t i = 0; i < ks->n; i++) {
            key_done(&ks->k[i]);
        }
    }
    PyMem_Free(ks->k);
    PyMem_Free(ks->p);
    PyMem_Free(ks->len);
    Py_CLEAR(ks->seq);
}

static int
keys_get(PyObject *o, struct keys *ks)
{
    memset(ks, 0, sizeof(*ks));
    if (PyUnicode_Check(o) || PyBytes_Check(o)) {
        PyErr_SetString(PyExc_TypeError,
                        "keys must be an iterable of keys, not one key");
        return -1;
    }
    ks->seq = snapshot(o, "keys must be an iterable");
    if (ks->seq == NULL) {
        return -1;
    }
    ks->n = PySequence_Fast_GET_SIZE(ks->seq);
    ks->k = PyMem_Calloc((size_t)ks->n + 1, sizeof(*ks->k));
    ks->p = PyMem_Calloc((size_t)ks->n + 1, sizeof(*ks->p));
    ks->len = PyMem_Calloc((size_t)ks->n + 1, sizeof(*ks->len));
    if (ks->k == NULL || ks->p == NULL || ks->len == NULL) {
        PyErr_NoMemory();
        keys_done(ks);
        return -1;
    }
    for (Py_ssize_t i = 0; i < ks->n; i++) {
        if (key_get(PySequence_Fast_GET_ITEM(ks->seq, i), &ks->k[i]) < 0) {
            Py_ssize_t n = ks->n;
            ks->n = i;
            keys_done(ks);
            (void)n;
            return -1;
        }
        ks->p[i] = ks->k[i].p;
        ks->len[i] = (size_t)ks->k[i].n;
    }
    return 0;
}

static const char *const get_many_names[] = {"keys", NULL};
static const struct argspec get_many_spec = {"get_many", get_many_names, 1, 1};

static PyObject *
Cache_get_many(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames)
{
    corral_t *c;
    PyObject *a[1], *out = NULL, *key;
    struct keys ks;
    corral_item_t **items;
    Py_ssize_t i;

    if (parse_args(&get_many_spec, args, nargs, kwnames, a) < 0 ||
        keys_get(a[0], &ks) < 0) {
        return NULL;
    }
    items = PyMem_Calloc((size_t)ks.n + 1, sizeof(*items));
    if (items == NULL) {
        keys_done(&ks);
        return PyErr_NoMemory();
    }
    c = cache_enter(self);
    if (c == NULL) {
        PyMem_Free(items);
        keys_done(&ks);
        return NULL;
    }
    NOGIL_IF(ks.n >= 64,
             corral_get_multi(c, (size_t)ks.n, ks.p, ks.len, items));
    cache_leave(self);
    out = PyDict_New();
    for (i = 0; i < ks.n; i++) {
        PyObject *v;
        if (items[i] == NULL) {
            continue;
        }
        if (out == NULL) {
            corral_item_release(items[i]);
            continue;
        }
        v = item_to_bytes(items[i]);
        key = PySequence_Fast_GET_ITEM(ks.seq, i);
        if (PyObject_Hash(key) == -1) {
            /* a bytearray key, say: reported as bytes */
            PyErr_Clear();
            key = PyBytes_FromStringAndSize(ks.k[i].p, ks.k[i].n);
        } else {
            Py_INCREF(key);
        }
        if (v == NULL || key == NULL || PyDict_SetItem(out, key, v) < 0) {
            Py_CLEAR(out);
        }
        Py_XDECREF(key);
        Py_XDECREF(v);
    }
    PyMem_Free(items);
    keys_done(&ks);
    return out;
}

/* ---------------------------------------------------------------------- */
/* Cache: storage                                                         */

static const char *const set_names[] = {"key",   "value", "ttl",
                                        "flags", "tags",  NULL};

static PyObject *
raise_store(CacheObject *self, corral_status_t st, const char *what,
            PyObject *key, Py_ssize_t nvalue)
{
    if (st == CORRAL_ETOOBIG) {
        PyErr_Format(TooLarge,
                     "%s %R: a value of %zd bytes is larger than the "
                     "maximum item size (%zu bytes, key and metadata "
                     "included)",
                     what, key, nvalue, self->max_item_size);
        return NULL;
    }
    return raise_status(st, what, key);
}

/*
 * Store under a mode with set()'s arguments: key, value, ttl, flags, tags.
 * Sets *out_st; returns -1 with an exception set when the arguments are
 * bad or the cache is closed.
 */
static int
store_args(CacheObject *self, corral_mode_t mode, PyObject **a, uint64_t cas,
           corral_status_t *out_st, Py_ssize_t *out_nvalue)
{
    corral_store_opts_t o = {0};
    struct key k;
    struct value v;
    struct tags t;
    corral_t *c;
    int rc = -1;

    if (arg_i64(a[2], "ttl", 0, &o.exptime) < 0 ||
        arg_flags(a[3], 0, &o.flags) < 0 || tags_get(a[4], &t) < 0) {
        return -1;
    }
    if (key_get(a[0], &k) < 0) {
        tags_done(&t);
        return -1;
    }
    if (value_get(a[1], &v) < 0) {
        goto out_key;
    }
    *out_nvalue = v.n;
    o.mode = mode;
    o.cas = cas;
    o.tags = t.v;
    o.ntags = t.n;
    c = cache_enter(self);
    if (c != NULL) {
        NOGIL_IF(v.n >= release_bytes,
                 *out_st = corral_store(c, k.p, (size_t)k.n, v.p, (size_t)v.n,
                                        &o, NULL));
        cache_leave(self);
        rc = 0;
    }
    value_done(&v);
out_key:
    key_done(&k);
    tags_done(&t);
    return rc;
}

static const struct argspec set_spec = {"set", set_names, 5, 2};
static const struct argspec add_spec = {"add", set_names, 5, 2};
static const struct argspec replace_spec = {"replace", set_names, 5, 2};

static PyObject *
Cache_set(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    PyObject *a[5];
    corral_status_t st;
    Py_ssize_t nv;

    if (parse_args(&set_spec, args, nargs, kwnames, a) < 0 ||
        store_args(self, CORRAL_SET, a, 0, &st, &nv) < 0) {
        return NULL;
    }
    if (st != CORRAL_OK) {
        return raise_store(self, st, "set", a[0], nv);
    }
    Py_RETURN_NONE;
}

static PyObject *
cache_add_replace(CacheObject *self, corral_mode_t mode,
                  const struct argspec *sp, PyObject *const *args,
                  Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[5];
    corral_status_t st;
    Py_ssize_t nv;

    if (parse_args(sp, args, nargs, kwnames, a) < 0 ||
        store_args(self, mode, a, 0, &st, &nv) < 0) {
        return NULL;
    }
    if (st == CORRAL_OK) {
        Py_RETURN_TRUE;
    }
    if (st == CORRAL_ENOTSTORED) {
        Py_RETURN_FALSE;
    }
    return raise_store(self, st, sp->fname, a[0], nv);
}

static PyObject *
Cache_add(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    return cache_add_replace(self, CORRAL_ADD, &add_spec, args, nargs, kwnames);
}

static PyObject *
Cache_replace(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames)
{
    return cache_add_replace(self, CORRAL_REPLACE, &replace_spec, args, nargs,
                             kwnames);
}

static const char *const append_names[] = {"key", "value", NULL};
static const struct argspec append_spec = {"append", append_names, 2, 2};
static const struct argspec prepend_spec = {"prepend", append_names, 2, 2};

static PyObject *
cache_pend(CacheObject *self, corral_mode_t mode, const struct argspec *sp,
           PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[5];
    corral_status_t st;
    Py_ssize_t nv;

    if (parse_args(sp, args, nargs, kwnames, a) < 0) {
        return NULL;
    }
    a[2] = a[3] = a[4] = NULL;
    if (store_args(self, mode, a, 0, &st, &nv) < 0) {
        return NULL;
    }
    if (st == CORRAL_OK) {
        Py_RETURN_TRUE;
    }
    if (st == CORRAL_ENOTSTORED) {
        Py_RETURN_FALSE;
    }
    return raise_store(self, st, sp->fname, a[0], nv);
}

static PyObject *
Cache_append(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    return cache_pend(self, CORRAL_APPEND, &append_spec, args, nargs, kwnames);
}

static PyObject *
Cache_prepend(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames)
{
    return cache_pend(self, CORRAL_PREPEND, &prepend_spec, args, nargs,
                      kwnames);
}

static const char *const cas_names[] = {"key",   "value", "cas", "ttl",
                                        "flags", "tags",  NULL};
static const struct argspec cas_spec = {"cas", cas_names, 6, 3};

static PyObject *
Cache_cas(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    PyObject *a[6], *b[5];
    corral_status_t st;
    uint64_t cas;
    Py_ssize_t nv;

    if (parse_args(&cas_spec, args, nargs, kwnames, a) < 0 ||
        arg_u64(a[2], "cas", 0, &cas) < 0) {
        return NULL;
    }
    if (cas == 0) {
        PyErr_SetString(InvalidArgument, "cas must be a CAS from gets()");
        return NULL;
    }
    b[0] = a[0];
    b[1] = a[1];
    b[2] = a[3];
    b[3] = a[4];
    b[4] = a[5];
    if (store_args(self, CORRAL_CAS, b, cas, &st, &nv) < 0) {
        return NULL;
    }
    if (st == CORRAL_OK) {
        Py_RETURN_TRUE;
    }
    if (st == CORRAL_EEXISTS) {
        Py_RETURN_FALSE;
    }
    if (st == CORRAL_ENOTFOUND) {
        Py_RETURN_NONE;
    }
    return raise_store(self, st, "cas", a[0], nv);
}

static const char *const set_many_names[] = {"items", "ttl", "flags", "tags",
                                             NULL};
static const struct argspec set_many_spec = {"set_many", set_many_names, 4, 1};

static PyObject *
Cache_set_many(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames)
{
    PyObject *a[4], *items, *seq = NULL, *res = NULL;
    Py_ssize_t n;

    if (parse_args(&set_many_spec, args, nargs, kwnames, a) < 0) {
        return NULL;
    }
    if (PyDict_Check(a[0])) {
        items = PyDict_Items(a[0]);
    } else if (PyMapping_Check(a[0]) && PyObject_HasAttrString(a[0], "items")) {
        items = PyMapping_Items(a[0]);
    } else {
        items = Py_NewRef(a[0]);
    }
    if (items == NULL) {
        return NULL;
    }
    seq = snapshot(items, "set_many() needs a mapping or an "
                          "iterable of (key, value) pairs");
    Py_DECREF(items);
    if (seq == NULL) {
        return NULL;
    }
    n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(seq, i), *b[5];
        corral_status_t st;
        Py_ssize_t nv;

        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError,
                            "set_many() needs (key, value) pairs");
            goto out;
        }
        b[0] = PyTuple_GET_ITEM(pair, 0);
        b[1] = PyTuple_GET_ITEM(pair, 1);
        b[2] = a[1];
        b[3] = a[2];
        b[4] = a[3];
        if (store_args(self, CORRAL_SET, b, 0, &st, &nv) < 0) {
            goto out;
        }
        if (st != CORRAL_OK) {
            raise_store(self, st, "set_many", b[0], nv);
            goto out;
        }
    }
    res = Py_NewRef(Py_None);
out:
    Py_DECREF(seq);
    return res;
}

static int
Cache_ass_subscript(CacheObject *self, PyObject *key, PyObject *value)
{
    corral_status_t st;
    Py_ssize_t nv = 0;
    struct key k;
    corral_t *c;

    if (value != NULL) {
        PyObject *a[5] = {key, value, NULL, NULL, NULL};
        if (store_args(self, CORRAL_SET, a, 0, &st, &nv) < 0) {
            return -1;
        }
    } else {
        if (key_get(key, &k) < 0) {
            return -1;
        }
        c = cache_enter(self);
        if (c == NULL) {
            key_done(&k);
            return -1;
        }
        st = corral_delete(c, k.p, (size_t)k.n);
        cache_leave(self);
        key_done(&k);
    }
    if (st != CORRAL_OK) {
        raise_store(self, st, value != NULL ? "set" : "del", key, nv);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Cache: deletion, touch, arithmetic                                     */

static const char *const key_names[] = {"key", NULL};
static const struct argspec delete_spec = {"delete", key_names, 1, 1};

static PyObject *
Cache_delete(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    PyObject *a[1];
    struct key k;
    corral_status_t st;
    corral_t *c;

    if (parse_args(&delete_spec, args, nargs, kwnames, a) < 0 ||
        key_get(a[0], &k) < 0) {
        return NULL;
    }
    c = cache_enter(self);
    if (c == NULL) {
        key_done(&k);
        return NULL;
    }
    st = corral_delete(c, k.p, (size_t)k.n);
    cache_leave(self);
    key_done(&k);
    if (st == CORRAL_OK) {
        Py_RETURN_TRUE;
    }
    if (st == CORRAL_ENOTFOUND) {
        Py_RETURN_FALSE;
    }
    return raise_status(st, "delete", a[0]);
}

static const char *const keys_names[] = {"keys", NULL};
static const struct argspec delete_many_spec = {"delete_many", keys_names, 1,
                                                1};

static PyObject *
Cache_delete_many(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames)
{
    PyObject *a[1];
    struct keys ks;
    size_t deleted = 0;
    corral_t *c;

    if (parse_args(&delete_many_spec, args, nargs, kwnames, a) < 0 ||
        keys_get(a[0], &ks) < 0) {
        return NULL;
    }
    c = cache_enter(self);
    if (c == NULL) {
        keys_done(&ks);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < ks.n; i++) {
        deleted += corral_delete(c, ks.p[i], ks.len[i]) == CORRAL_OK;
    }
    cache_leave(self);
    keys_done(&ks);
    return PyLong_FromSize_t(deleted);
}

static const char *const touch_names[] = {"key", "ttl", NULL};
static const struct argspec touch_spec = {"touch", touch_names, 2, 2};

static PyObject *
Cache_touch(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    PyObject *a[2];
    struct key k;
    corral_status_t st;
    int64_t ttl;
    corral_t *c;

    if (parse_args(&touch_spec, args, nargs, kwnames, a) < 0 ||
        arg_i64(a[1], "ttl", 0, &ttl) < 0 || key_get(a[0], &k) < 0) {
        return NULL;
    }
    c = cache_enter(self);
    if (c == NULL) {
        key_done(&k);
        return NULL;
    }
    st = corral_touch(c, k.p, (size_t)k.n, ttl);
    cache_leave(self);
    key_done(&k);
    if (st == CORRAL_OK) {
        Py_RETURN_TRUE;
    }
    if (st == CORRAL_ENOTFOUND) {
        Py_RETURN_FALSE;
    }
    return raise_status(st, "touch", a[0]);
}

static const char *const incr_names[] = {"key", "delta", "initial", "ttl",
                                         NULL};
static const struct argspec incr_spec = {"incr", incr_names, 2, 1};
static const struct argspec decr_spec = {"decr", incr_names, 2, 1};

static PyObject *
cache_arith(CacheObject *self, unsigned options, const struct argspec *sp,
            PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[4];
    corral_arith_opts_t o = {0};
    corral_arith_result_t r;
    struct key k;
    corral_status_t st;
    corral_t *c;

    if (parse_args(sp, args, nargs, kwnames, a) < 0 ||
        arg_u64(a[1], "delta", 1, &o.delta) < 0 ||
        arg_i64(a[3], "ttl", 0, &o.vivify_exptime) < 0) {
        return NULL;
    }
    o.options = options;
    if (a[2] != NULL && a[2] != Py_None) {
        if (arg_u64(a[2], "initial", 0, &o.initial) < 0) {
            return NULL;
        }
        o.options |= CORRAL_ARITH_VIVIFY;
    }
    if (key_get(a[0], &k) < 0) {
        return NULL;
    }
    c = cache_enter(self);
    if (c == NULL) {
        key_done(&k);
        return NULL;
    }
    st = corral_arith(c, k.p, (size_t)k.n, &o, &r);
    cache_leave(self);
    key_done(&k);
    if (st == CORRAL_OK) {
        return PyLong_FromUnsignedLongLong(r.value);
    }
    if (st == CORRAL_ENONNUMERIC) {
        PyErr_Format(NonNumeric,
                     "%s %R: the value is not a decimal number below 2**64",
                     sp->fname, a[0]);
        return NULL;
    }
    return raise_status(st, sp->fname, a[0]);
}

static PyObject *
Cache_incr(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    return cache_arith(self, 0, &incr_spec, args, nargs, kwnames);
}

static PyObject *
Cache_decr(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    return cache_arith(self, CORRAL_ARITH_DECR, &decr_spec, args, nargs,
                       kwnames);
}

/* ---------------------------------------------------------------------- */
/* Cache: flush, invalidation, maintenance, statistics                    */

static const char *const flush_names[] = {"delay", NULL};
static const struct argspec flush_spec = {"flush", flush_names, 1, 0};

static PyObject *
Cache_flush(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    PyObject *a[1];
    int64_t when;
    corral_t *c;

    if (parse_args(&flush_spec, args, nargs, kwnames, a) < 0 ||
        arg_i64(a[0], "delay", 0, &when) < 0) {
        return NULL;
    }
    c = cache_enter(self);
    if (c == NULL) {
        return NULL;
    }
    {
        PyThreadState *save = PyEval_SaveThread();
        corral_flush(c, when);
        PyEval_RestoreThread(save);
    }
    cache_leave(self);
    Py_RETURN_NONE;
}

static const char *const tag_names[] = {"tag", NULL};
static const struct argspec invalidate_tag_spec = {"invalidate_tag", tag_names,
                                                   1, 1};

static PyObject *
Cache_invalidate_tag(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
                     PyObject *kwnames)
{
    PyObject *a[1];
    const char *tag;
    corral_status_t st;
    corral_t *c;

    if (parse_args(&invalidate_tag_spec, args, nargs, kwnames, a) < 0 ||
        (tag = name_get(a[0], "tag", CORRAL_TAG_MAX, NULL)) == NULL) {
        return NULL;
    }
    c = cache_enter(self);
    if (c == NULL) {
        return NULL;
    }
    st = corral_invalidate_tag(c, tag);
    cache_leave(self);
    if (st != CORRAL_OK) {
        return raise_status(st, "invalidate_tag", a[0]);
    }
    Py_RETURN_NONE;
}

static const char *const prefix_names[] = {"prefix", NULL};
static const struct argspec invalidate_prefix_spec = {"invalidate_prefix",
                                                      prefix_names, 1, 1};

static PyObject *
Cache_invalidate_prefix(CacheObject *self, PyObject *const *args,
                        Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[1];
    struct key k;
    corral_status_t st;
    corral_t *c;

    if (parse_args(&invalidate_prefix_spec, args, nargs, kwnames, a) < 0 ||
        key_get(a[0], &k) < 0) {
        return NULL;
    }
    c = cache_enter(self);
    if (c == NULL) {
        key_done(&k);
        return NULL;
    }
    {
        PyThreadState *save = PyEval_SaveThread();
        st = corral_invalidate_prefix(c, k.p, (size_t)k.n);
        PyEval_RestoreThread(save);
    }
    cache_leave(self);
    key_done(&k);
    if (st != CORRAL_OK) {
        return raise_status(st, "invalidate_prefix", a[0]);
    }
    Py_RETURN_NONE;
}

static const char *const invalidate_names[] = {"type", "name", "origin",
                                               "flush_time", NULL};
static const struct argspec invalidate_spec = {"invalidate", invalidate_names,
                                               2, 1};

static PyObject *
Cache_invalidate(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    PyObject *a[4];
    corral_invalidation_t inv = {0};
    struct key k = {0};
    corral_status_t st;
    const char *tag;
    Py_ssize_t n;
    corral_t *c;

    if (parse_args(&invalidate_spec, args, nargs, kwnames, a) < 0 ||
        arg_u64(a[2], "origin", 0, &inv.origin) < 0 ||
        arg_i64(a[3], "flush_time", 0, &inv.flush_time) < 0) {
        return NULL;
    }
    if (PyUnicode_Check(a[0]) &&
        PyUnicode_CompareWithASCIIString(a[0], "delete") == 0) {
        inv.type = CORRAL_EVENT_DELETE;
    } else if (PyUnicode_Check(a[0]) &&
               PyUnicode_CompareWithASCIIString(a[0], "tag") == 0) {
        inv.type = CORRAL_EVENT_TAG;
    } else if (PyUnicode_Check(a[0]) &&
               PyUnicode_CompareWithASCIIString(a[0], "prefix") == 0) {
        inv.type = CORRAL_EVENT_PREFIX;
    } else if (PyUnicode_Check(a[0]) &&
               PyUnicode_CompareWithASCIIString(a[0], "flush") == 0) {
        inv.type = CORRAL_EVENT_FLUSH;
    } else if (PyUnicode_Check(a[0]) &&
               PyUnicode_CompareWithASCIIString(a[0], "gap") == 0) {
        inv.type = CORRAL_EVENT_GAP;
    } else {
        PyErr_Format(PyExc_ValueError,
                     "type must be 'delete', 'tag', 'prefix', 'flush' or "
                     "'gap', not %R",
                     a[0]);
        return NULL;
    }
    if (inv.type == CORRAL_EVENT_TAG) {
        if (a[1] == NULL ||
            (tag = name_get(a[1], "tag", CORRAL_TAG_MAX, &n)) == NULL) {
            if (a[1] == NULL) {
                PyErr_SetString(PyExc_TypeError, "a tag needs a name");
            }
            return NULL;
        }
        inv.name = tag;
        inv.len = (size_t)n;
    } else if (inv.type != CORRAL_EVENT_FLUSH &&
               inv.type != CORRAL_EVENT_GAP) {
        if (a[1] == NULL) {
            PyErr_SetString(PyExc_TypeError, "a key or prefix needs a name");
            return NULL;
        }
        if (key_get(a[1], &k) < 0) {
            return NULL;
        }
        inv.name = k.p;
        inv.len = (size_t)k.n;
    }
    c = cache_enter(self);
    if (c == NULL) {
        key_done(&k);
        return NULL;
    }
    {
        PyThreadState *save = PyEval_SaveThread();
        st = corral_invalidate(c, &inv);
        PyEval_RestoreThread(save);
    }
    cache_leave(self);
    key_done(&k);
    if (st != CORRAL_OK) {
        return raise_status(st, "invalidate", a[1]);
    }
    Py_RETURN_NONE;
}

static const char *const sweep_names[] = {"budget", NULL};
static const struct argspec sweep_spec = {"sweep", sweep_names, 1, 0};

static PyObject *
Cache_sweep(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    PyObject *a[1];
    uint64_t budget;
    size_t freed;
    corral_t *c;

    if (parse_args(&sweep_spec, args, nargs, kwnames, a) < 0 ||
        arg_u64(a[0], "budget", 1000, &budget) < 0) {
        return NULL;
    }
    c = cache_enter(self);
    if (c == NULL) {
        return NULL;
    }
    {
        PyThreadState *save = PyEval_SaveThread();
        freed = corral_sweep(c, (size_t)budget);
        PyEval_RestoreThread(save);
    }
    cache_leave(self);
    return PyLong_FromSize_t(freed);
}

static const char *const max_memory_names[] = {"max_memory", NULL};
static const struct argspec max_memory_spec = {"set_max_memory",
                                               max_memory_names, 1, 1};

static PyObject *
Cache_set_max_memory(CacheObject *self, PyObject *const *args,
                     Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[1];
    uint64_t bytes;
    corral_status_t st;
    corral_t *c;

    if (parse_args(&max_memory_spec, args, nargs, kwnames, a) < 0 ||
        arg_upto(a[0], "max_memory", 0, SIZE_MAX, &bytes) < 0) {
        return NULL;
    }
    c = cache_enter(self);
    if (c == NULL) {
        return NULL;
    }
    {
        PyThreadState *save = PyEval_SaveThread();
        st = corral_set_max_memory(c, (size_t)bytes);
        PyEval_RestoreThread(save);
    }
    cache_leave(self);
    if (st == CORRAL_EINVAL) {
        PyErr_Format(InvalidArgument,
                     "set_max_memory(%llu): at least 1 MiB and two items of "
                     "max_item_size per shard",
                     (unsigned long long)bytes);
        return NULL;
    }
    if (st != CORRAL_OK) {
        return raise_status(st, "set_max_memory", NULL);
    }
    Py_RETURN_NONE;
}

static PyObject *
Cache_stats(CacheObject *self, PyObject *unused)
{
    corral_stats_t s;
    PyObject *d, *v;
    corral_t *c = cache_enter(self);

    if (c == NULL) {
        return NULL;
    }
    corral_stats(c, &s, sizeof(s));
    cache_leave(self);
    d = PyDict_New();
    if (d == NULL) {
        return NULL;
    }
#define STAT_ITEM(name, kind, text)                                            \
    v = PyLong_FromUnsignedLongLong(s.name);                                   \
    if (v == NULL || PyDict_SetItemString(d, #name, v) < 0) {                  \
        Py_XDECREF(v);                                                         \
        Py_DECREF(d);                                                          \
        return NULL;                                                           \
    }                                                                          \
    Py_DECREF(v);
    CORRAL_STATS_TABLE(STAT_ITEM)
#undef STAT_ITEM
    return d;
}

static PyObject *
Cache_reset_stats(CacheObject *self, PyObject *unused)
{
    corral_t *c = cache_enter(self);

    if (c == NULL) {
        return NULL;
    }
    corral_stats_reset(c);
    cache_leave(self);
    Py_RETURN_NONE;
}

static Py_ssize_t
Cache_len(CacheObject *self)
{
    corral_stats_t s;
    corral_t *c = cache_enter(self);

    if (c == NULL) {
        return -1;
    }
    corral_stats(c, &s, sizeof(s));
    cache_leave(self);
    return (Py_ssize_t)s.curr_items;
}

static PyObject *
Cache_get_config(CacheObject *self, void *unused)
{
    corral_config_t cfg;
    corral_t *c = cache_enter(self);

    if (c == NULL) {
        return NULL;
    }
    corral_config_get(c, &cfg);
    cache_leave(self);
    return Py_BuildValue(
        "{sKsKsKsIsKsIsIsdsdsd}", "max_memory",
        (unsigned long long)cfg.max_memory, "max_items",
        (unsigned long long)cfg.max_items, "max_item_size",
        (unsigned long long)cfg.max_item_size, "shards", cfg.shards,
        "event_ring", (unsigned long long)cfg.event_ring, "refresh_threads",
        cfg.refresh_threads, "breaker_failures", cfg.breaker_failures,
        "breaker_open", cfg.breaker_open_ms / 1000.0, "backoff_min",
        cfg.backoff_min_ms / 1000.0, "backoff_max",
        cfg.backoff_max_ms / 1000.0);
}

static PyObject *
Cache_get_event_seq(CacheObject *self, void *unused)
{
    uint64_t seq;
    corral_t *c = cache_enter(self);

    if (c == NULL) {
        return NULL;
    }
    seq = corral_event_seq(c);
    cache_leave(self);
    return PyLong_FromUnsignedLongLong(seq);
}

static PyObject *
Cache_get_closed(CacheObject *self, void *unused)
{
    return PyBool_FromLong(self->cache == NULL);
}

static PyObject *
Cache_get_last_write_error(CacheObject *self, void *unused)
{
    return Py_NewRef(self->last_write_error ? self->last_write_error : Py_None);
}

/* ---------------------------------------------------------------------- */
/* Cache: fetch                                                           */

static const char *const fetch_names[] = {
    "key",   "loader",     "ttl",   "stale_ttl", "tags",
    "flags", "absent_ttl", "wait",  "error_ttl", "stale_if_error",
    "beta",  "background", "early", "default",   NULL};
static const struct argspec fetch_spec = {"fetch", fetch_names, 2, 2};

static corral_near_t *near_enter(NearObject *self);
static void near_leave(NearObject *self);

/*
 * Cache.fetch(), and NearCache.fetch() when @nr is not NULL: the same
 * arguments, with corral_near_fetch() on nr's handle instead of
 * corral_fetch() on the cache's (@self is then nr's owner).
 */
static PyObject *
fetch_impl(CacheObject *self, NearObject *nr, PyObject *const *args,
           Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[14], *res = NULL;
    corral_fetch_opts_t o = {0};
    struct lctx x;
    struct tags t = {0};
    struct key k;
    corral_item_t *item = NULL;
    corral_status_t st;
    int64_t wait_ms, error_ms, sie;
    int background, early, err = 0;
    struct lctx *bg = NULL;
    double beta = 0;
    corral_t *c = NULL;
    corral_near_t *h = NULL;

    if (parse_args(&fetch_spec, args, nargs, kwnames, a) < 0) {
        return NULL;
    }
    memset(&x, 0, sizeof(x));
    x.self = self;
    x.loader = a[1];
    if (!PyCallable_Check(x.loader)) {
        PyErr_Format(PyExc_TypeError,
                     "the loader must be callable, not "
                     "%.100s",
                     Py_TYPE(x.loader)->tp_name);
        return NULL;
    }
    if (arg_i64(a[2], "ttl", 0, &x.ttl) < 0 ||
        arg_i64(a[3], "stale_ttl", 0, &x.stale_ttl) < 0 ||
        arg_flags(a[5], 0, &x.flags) < 0 ||
        arg_i64(a[6], "absent_ttl", x.ttl, &x.absent_ttl) < 0 ||
        arg_ms(a[7], "wait", 0, &wait_ms) < 0 ||
        arg_ms(a[8], "error_ttl", 0, &error_ms) < 0 ||
        arg_i64(a[9], "stale_if_error", 0, &sie) < 0 ||
        (background = arg_bool(a[11], 0)) < 0 ||
        (early = arg_bool(a[12], 1)) < 0) {
        return NULL;
    }
    if (a[10] != NULL && a[10] != Py_None) {
        beta = PyFloat_AsDouble(a[10]);
        if (beta == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
        if (!(beta > 0)) {
            PyErr_SetString(PyExc_ValueError, "beta must be > 0");
            return NULL;
        }
    }
    if (tags_get(a[4], &t) < 0) {
        return NULL;
    }
    x.tags = t.keep;
    o.ttl = x.ttl;
    o.stale_ttl = x.stale_ttl;
    /* wait=0 means "do not wait"; None the engine's default */
    o.wait_ms = a[7] == NULL || a[7] == Py_None ? 0
                : wait_ms == 0                  ? -1
                                                : wait_ms;
    o.error_ms = error_ms;
    o.stale_if_error = sie;
    o.beta = beta;
    o.options = (background ? CORRAL_FETCH_BACKGROUND : 0) |
                (early ? 0 : CORRAL_FETCH_NO_EARLY);
    x.keep_ms = (error_ms > 0 ? error_ms : 1000);
    if (x.keep_ms < self->backoff_max_ms) {
        x.keep_ms = self->backoff_max_ms;
    }
    x.keep_ms += 2000;
    if (key_get(a[0], &k) < 0) {
        tags_done(&t);
        return NULL;
    }
    if (nr != NULL) {
        h = near_enter(nr);
    } else {
        c = cache_enter(self);
    }
    if (c == NULL && h == NULL) {
        goto out;
    }
    if (background && (bg = bg_new(&x)) == NULL) {
        if (h != NULL) {
            near_leave(nr);
        } else {
            cache_leave(self);
        }
        goto out;
    }
    if (background) {
        o.options |= CORRAL_FETCH_RELEASE; /* the engine frees bg */
    }
    {
        corral_loader_fn fn = background ? loader_background : loader_inline;
        void *ud = background ? (void *)bg : (void *)&x;
        PyThreadState *save = PyEval_SaveThread();
        st = h != NULL
                 ? corral_near_fetch(h, k.p, (size_t)k.n, fn, ud, &o, &item,
                                     &err)
                 : corral_fetch(c, k.p, (size_t)k.n, fn, ud, &o, &item, &err);
        PyEval_RestoreThread(save);
    }
    if (h != NULL) {
        near_leave(nr);
    } else {
        cache_leave(self);
    }
    if (st == CORRAL_OK) {
        res = item_to_bytes(item);
    } else if (st == CORRAL_ENOTFOUND) {
        res = Py_NewRef(a[13] != NULL ? a[13] : Py_None);
    } else if (st == CORRAL_ELOAD) {
        raise_load_error(self, a[0], err);
    } else if (st == CORRAL_ETOOBIG) {
        PyErr_Format(TooLarge,
                     "fetch %R: the loaded value is larger than the maximum "
                     "item size (%zu bytes, key and metadata included)",
                     a[0], self->max_item_size);
    } else if (st == CORRAL_EBUSY) {
        PyErr_Format(Busy,
                     "fetch %R: the loader's circuit breaker is open (too "
                     "many consecutive failures) and no stale value is "
                     "held",
                     a[0]);
    } else if (st == CORRAL_ETIMEDOUT) {
        PyErr_Format(Timeout,
                     "fetch %R: gave up waiting for another caller's load",
                     a[0]);
    } else {
        raise_status(st, "fetch", a[0]);
    }
out:
    key_done(&k);
    tags_done(&t);
    return res;
}

static PyObject *
Cache_fetch(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    return fetch_impl(self, NULL, args, nargs, kwnames);
}

/* ---------------------------------------------------------------------- */
/* Cache: events                                                          */

static const char *const subscribe_names[] = {"callback", "since", NULL};
static const struct argspec subscribe_spec = {"subscribe", subscribe_names, 2,
                                              1};

static PyObject *
Cache_subscribe(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames)
{
    PyObject *a[2];
    SubObject *s;
    uint64_t since;
    corral_status_t st;
    corral_t *c;

    if (parse_args(&subscribe_spec, args, nargs, kwnames, a) < 0 ||
        arg_u64(a[1], "since", 0, &since) < 0) {
        return NULL;
    }
    if (!PyCallable_Check(a[0])) {
        PyErr_SetString(PyExc_TypeError, "the callback must be callable");
        return NULL;
    }
    s = PyObject_GC_New(SubObject, &SubType);
    if (s == NULL) {
        return NULL;
    }
    s->owner = NULL;
    s->sub = NULL;
    s->callback = Py_NewRef(a[0]);
    PyObject_GC_Track(s);
    c = cache_enter(self);
    if (c == NULL) {
        Py_DECREF(s);
        return NULL;
    }
    if (PyList_Append(self->subs, (PyObject *)s) < 0) {
        cache_leave(self);
        Py_DECREF(s);
        return NULL;
    }
    /* no callback runs before this returns: it needs the GIL */
    st = corral_subscribe(c, event_trampoline, s, since, &s->sub);
    cache_leave(self);
    if (st != CORRAL_OK) {
        PySequence_DelItem(self->subs, PyList_GET_SIZE(self->subs) - 1);
        Py_DECREF(s);
        return raise_status(st, "subscribe", NULL);
    }
    s->owner = self;
    return (PyObject *)s;
}

/* ---------------------------------------------------------------------- */
/* Cache: writers                                                         */

static const char *const wt_names[] = {"writer", NULL};
static const struct argspec wt_spec = {"use_write_through", wt_names, 1, 1};

static int
writer_check(CacheObject *self, PyObject *writer)
{
    if (!PyCallable_Check(writer)) {
        PyErr_SetString(PyExc_TypeError, "the writer must be callable");
        return -1;
    }
    if (self->writer_mode != 0) {
        PyErr_SetString(Error, "the cache already has a writer");
        return -1;
    }
    return 0;
}

static PyObject *
Cache_use_write_through(CacheObject *self, PyObject *const *args,
                        Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[1];
    corral_status_t st;
    corral_t *c;

    if (parse_args(&wt_spec, args, nargs, kwnames, a) < 0 ||
        writer_check(self, a[0]) < 0) {
        return NULL;
    }
    c = cache_enter(self);
    if (c == NULL) {
        return NULL;
    }
    self->writer = Py_NewRef(a[0]);
    st = corral_use_write_through(c, writer_through, self);
    cache_leave(self);
    if (st != CORRAL_OK) {
        Py_CLEAR(self->writer);
        return raise_status(st, "use_write_through", NULL);
    }
    self->writer_mode = 1;
    Py_RETURN_NONE;
}

static const char *const wb_names[] = {
    "writer",    "queue_max", "batch_max",        "delay",
    "retry_min", "retry_max", "refuse_when_full", NULL};
static const struct argspec wb_spec = {"use_write_behind", wb_names, 1, 1};

static PyObject *
Cache_use_write_behind(CacheObject *self, PyObject *const *args,
                       Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[7];
    corral_wb_opts_t o = {0};
    uint64_t qmax, bmax;
    int refuse;
    corral_status_t st;
    corral_t *c;

    if (parse_args(&wb_spec, args, nargs, kwnames, a) < 0 ||
        writer_check(self, a[0]) < 0 ||
        arg_u64(a[1], "queue_max", 0, &qmax) < 0 ||
        arg_u64(a[2], "batch_max", 0, &bmax) < 0 ||
        arg_ms(a[3], "delay", 0, &o.delay_ms) < 0 ||
        arg_ms(a[4], "retry_min", 0, &o.retry_min_ms) < 0 ||
        arg_ms(a[5], "retry_max", 0, &o.retry_max_ms) < 0 ||
        (refuse = arg_bool(a[6], 0)) < 0) {
        return NULL;
    }
    o.queue_max = (size_t)qmax;
    o.batch_max = (size_t)bmax;
    o.refuse_when_full = refuse;
    c = cache_enter(self);
    if (c == NULL) {
        return NULL;
    }
    self->writer = Py_NewRef(a[0]);
    st = corral_use_write_behind(c, writer_behind, self, &o);
    cache_leave(self);
    if (st != CORRAL_OK) {
        Py_CLEAR(self->writer);
        return raise_status(st, "use_write_behind", NULL);
    }
    self->writer_mode = 2;
    Py_RETURN_NONE;
}

/* Raise WriteError for a write-through failure on this thread. */
static PyObject *
raise_write_error(PyObject *key)
{
    PyObject *exc = write_exc, *inst, *msg;

    write_exc = NULL;
    if (exc != NULL &&
        !PyObject_TypeCheck(exc, (PyTypeObject *)PyExc_Exception)) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
        return NULL;
    }
    msg = exc != NULL ? PyUnicode_FromFormat("writing %R failed: %R", key, exc)
                      : PyUnicode_FromFormat("writing %R failed", key);
    inst = msg != NULL ? PyObject_CallOneArg(WriteError, msg) : NULL;
    Py_XDECREF(msg);
    if (inst == NULL ||
        PyObject_SetAttrString(inst, "exception", exc ? exc : Py_None) < 0 ||
        PyObject_SetAttrString(inst, "key", key) < 0) {
        Py_XDECREF(inst);
        Py_XDECREF(exc);
        return NULL;
    }
    if (exc != NULL) {
        PyException_SetCause(inst, exc);
    }
    PyErr_SetObject(WriteError, inst);
    Py_DECREF(inst);
    return NULL;
}

static PyObject *
raise_no_writer(const char *what)
{
    PyErr_Format(Error,
                 "%s() needs a writer: call use_write_through() or "
                 "use_write_behind() first",
                 what);
    return NULL;
}

static PyObject *
cache_write_status(CacheObject *self, corral_status_t st, const char *what,
                   PyObject *key, Py_ssize_t nv)
{
    if (st == CORRAL_OK) {
        Py_RETURN_NONE;
    }
    if (st == CORRAL_ELOAD) {
        return raise_write_error(key);
    }
    if (st == CORRAL_EBUSY) {
        PyErr_Format(Busy, "%s %R: the write-behind queue is full", what, key);
        return NULL;
    }
    return raise_store(self, st, what, key, nv);
}

static const char *const put_names[] = {"key", "value", "ttl", "flags", NULL};
static const struct argspec put_spec = {"put", put_names, 4, 2};

static PyObject *
Cache_put(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    PyObject *a[4];
    struct key k;
    struct value v;
    int64_t ttl;
    uint32_t flags;
    corral_status_t st;
    int err = 0;
    corral_t *c;

    if (parse_args(&put_spec, args, nargs, kwnames, a) < 0 ||
        arg_i64(a[2], "ttl", 0, &ttl) < 0 || arg_flags(a[3], 0, &flags) < 0) {
        return NULL;
    }
    if (self->writer_mode == 0 && self->cache != NULL) {
        return raise_no_writer("put");
    }
    if (key_get(a[0], &k) < 0) {
        return NULL;
    }
    if (value_get(a[1], &v) < 0) {
        key_done(&k);
        return NULL;
    }
    c = cache_enter(self);
    if (c != NULL) {
        {
            PyThreadState *save = PyEval_SaveThread();
            st = corral_put(c, k.p, (size_t)k.n, v.p, (size_t)v.n, flags, ttl,
                            &err);
            PyEval_RestoreThread(save);
        }
        cache_leave(self);
    }
    key_done(&k);
    value_done(&v);
    if (c == NULL) {
        return NULL;
    }
    return cache_write_status(self, st, "put", a[0], v.n);
}

static const struct argspec remove_spec = {"remove", key_names, 1, 1};

static PyObject *
Cache_remove(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    PyObject *a[1];
    struct key k;
    corral_status_t st;
    int err = 0;
    corral_t *c;

    if (parse_args(&remove_spec, args, nargs, kwnames, a) < 0) {
        return NULL;
    }
    if (self->writer_mode == 0 && self->cache != NULL) {
        return raise_no_writer("remove");
    }
    if (key_get(a[0], &k) < 0) {
        return NULL;
    }
    c = cache_enter(self);
    if (c == NULL) {
        key_done(&k);
        return NULL;
    }
    {
        PyThreadState *save = PyEval_SaveThread();
        st = corral_remove(c, k.p, (size_t)k.n, &err);
        PyEval_RestoreThread(save);
    }
    cache_leave(self);
    key_done(&k);
    return cache_write_status(self, st, "remove", a[0], 0);
}

static const char *const timeout_names[] = {"timeout", NULL};
static const struct argspec write_flush_spec = {"write_flush", timeout_names, 1,
                                                0};

static PyObject *
Cache_write_flush(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames)
{
    PyObject *a[1];
    int64_t ms;
    corral_status_t st;
    corral_t *c;

    if (parse_args(&write_flush_spec, args, nargs, kwnames, a) < 0 ||
        arg_ms(a[0], "timeout", -1, &ms) < 0) {
        return NULL;
    }
    c = cache_enter(self);
    if (c == NULL) {
        return NULL;
    }
    {
        PyThreadState *save = PyEval_SaveThread();
        st = corral_write_flush(c, ms, NULL);
        PyEval_RestoreThread(save);
    }
    cache_leave(self);
    return PyBool_FromLong(st == CORRAL_OK);
}

/* ---------------------------------------------------------------------- */
/* Cache: closing                                                         */

static const struct argspec close_spec = {"close", timeout_names, 1, 0};

static PyObject *
Cache_close(CacheObject *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    PyObject *a[1];
    int64_t ms;
    size_t pending = 0;
    corral_status_t st = CORRAL_OK;
    corral_t *c;

    if (parse_args(&close_spec, args, nargs, kwnames, a) < 0 ||
        arg_ms(a[0], "timeout", -1, &ms) < 0) {
        return NULL;
    }
    if (self->cache == NULL) {
        wait_closed(self);
        Py_RETURN_NONE;
    }
    if (callback_depth > 0) {
        PyErr_SetString(Error, "close() cannot run inside a loader, writer "
                               "or event callback");
        return NULL;
    }
    if (ms >= 0 && self->writer_mode == 2) {
        c = cache_enter(self);
        if (c == NULL) {
            return NULL;
        }
        {
            PyThreadState *save = PyEval_SaveThread();
            st = corral_write_flush(c, ms, &pending);
            PyEval_RestoreThread(save);
        }
        cache_leave(self);
        if (st != CORRAL_OK) {
            PyErr_Format(Timeout,
                         "close: %zu write-behind write%s still pending "
                         "after the timeout; the cache stays open",
                         pending, pending == 1 ? "" : "s");
            return NULL;
        }
    }
    if (cache_close(self, 0) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Cache_enter(CacheObject *self, PyObject *unused)
{
    if (self->cache == NULL) {
        return raise_closed();
    }
    return Py_NewRef(self);
}

static PyObject *
Cache_exit(CacheObject *self, PyObject *args)
{
    if (cache_close(self, 0) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------------- */
/* Cache: the type                                                        */

/* A METH_FASTCALL | METH_KEYWORDS entry (cast through void (*)(void)). */
#define FASTKW(f)                                                              \
    (PyCFunction)(void (*)(void))(f), METH_FASTCALL | METH_KEYWORDS

static PyMethodDef Cache_methods[] = {
    {"get", FASTKW(Cache_get),
     "get(key, default=None)\n--\n\n"
     "The value of key as bytes, or default when absent (or expired,\n"
     "flushed or invalidated)."},
    {"get_view", FASTKW(Cache_get_view),
     "get_view(key, default=None)\n--\n\n"
     "The value of key as a Value: no copy; the bytes stay valid until\n"
     "the Value is released or collected.  default when absent."},
    {"gets", FASTKW(Cache_gets),
     "gets(key, default=None)\n--\n\n"
     "(value, cas) for key, or default when absent.  Pass the CAS to\n"
     "cas() to store only if nobody changed the key since."},
    {"get_many", FASTKW(Cache_get_many),
     "get_many(keys)\n--\n\n"
     "A dict of the keys found, mapping each key as given to its value."},
    {"ttl", FASTKW(Cache_ttl),
     "ttl(key)\n--\n\n"
     "Remaining seconds to live: -1 if key never expires, None if absent."},
    {"set", FASTKW(Cache_set),
     "set(key, value, ttl=0, flags=0, tags=())\n--\n\n"
     "Store value under key.  ttl in seconds: 0 never expires, up to 30\n"
     "days is relative, larger an absolute Unix time, negative already\n"
     "expired (memcached's rules).  flags: 32 bits kept for the caller.\n"
     "tags: up to 8 names (str) for invalidate_tag().\n"
     "Raises TooLarge, OutOfMemory, InvalidArgument."},
    {"add", FASTKW(Cache_add),
     "add(key, value, ttl=0, flags=0, tags=())\n--\n\n"
     "Store only if key is absent.  True if stored, False if present."},
    {"replace", FASTKW(Cache_replace),
     "replace(key, value, ttl=0, flags=0, tags=())\n--\n\n"
     "Store only if key is present.  True if stored, False if absent."},
    {"append", FASTKW(Cache_append),
     "append(key, value)\n--\n\n"
     "Add bytes after key's value.  True if done, False if absent."},
    {"prepend", FASTKW(Cache_prepend),
     "prepend(key, value)\n--\n\n"
     "Add bytes before key's value.  True if done, False if absent."},
    {"cas", FASTKW(Cache_cas),
     "cas(key, value, cas, ttl=0, flags=0, tags=())\n--\n\n"
     "Store only if key's CAS is still cas (from gets()).  True if\n"
     "stored, False if the key changed meanwhile, None if it is absent."},
    {"set_many", FASTKW(Cache_set_many),
     "set_many(items, ttl=0, flags=0, tags=())\n--\n\n"
     "set() every (key, value) of a mapping or iterable of pairs; stops\n"
     "at the first error and raises it."},
    {"delete", FASTKW(Cache_delete),
     "delete(key)\n--\n\nRemove key.  True if it was present."},
    {"delete_many", FASTKW(Cache_delete_many),
     "delete_many(keys)\n--\n\nRemove keys; the number that were present."},
    {"touch", FASTKW(Cache_touch),
     "touch(key, ttl)\n--\n\n"
     "Set key's expiry without reading it.  True if present."},
    {"incr", FASTKW(Cache_incr),
     "incr(key, delta=1, initial=None, ttl=0)\n--\n\n"
     "Add delta to a value holding a decimal number; the new number.\n"
     "Wraps at 2**64.  A missing key raises NotFound, or is created with\n"
     "initial (and ttl) when initial is given.  Raises NonNumeric when\n"
     "the value is not a number."},
    {"decr", FASTKW(Cache_decr),
     "decr(key, delta=1, initial=None, ttl=0)\n--\n\n"
     "As incr(), subtracting; stops at 0."},
    {"flush", FASTKW(Cache_flush),
     "flush(delay=0)\n--\n\n"
     "Invalidate every item now, or at a later time (memcached's\n"
     "flush_all delay: items stored from then on are kept)."},
    {"invalidate_tag", FASTKW(Cache_invalidate_tag),
     "invalidate_tag(tag)\n--\n\n"
     "Make every item stored with tag so far a miss.  O(1)."},
    {"invalidate_prefix", FASTKW(Cache_invalidate_prefix),
     "invalidate_prefix(prefix)\n--\n\n"
     "Make every key starting with prefix (as stored so far) a miss."},
    {"invalidate", FASTKW(Cache_invalidate),
     "invalidate(type, name=None, *, origin=0, flush_time=0)\n--\n\n"
     "Apply an invalidation received from elsewhere: type 'delete' (a\n"
     "key), 'tag', 'prefix' or 'flush', or 'gap': the flush of a cache\n"
     "that missed invalidations, which leaves a delayed flush pending\n"
     "(its events: a flush now, and one at the pending time if any).\n"
     "The events carry origin, so that relays can tell local changes\n"
     "from relayed ones."},
    {"sweep", FASTKW(Cache_sweep),
     "sweep(budget=1000)\n--\n\n"
     "Free expired, flushed and removed items, examining about budget\n"
     "items.  The number freed."},
    {"set_max_memory", FASTKW(Cache_set_max_memory),
     "set_max_memory(max_memory)\n--\n\n"
     "Change the memory limit (bytes); a lower one evicts down to it\n"
     "before returning.  InvalidArgument under 1 MiB or under two items\n"
     "of max_item_size per shard."},
    {"stats", (PyCFunction)Cache_stats, METH_NOARGS,
     "stats()\n--\n\n"
     "The cache's statistics as a dict of ints (memcached's names where\n"
     "the meaning is the same)."},
    {"reset_stats", (PyCFunction)Cache_reset_stats, METH_NOARGS,
     "reset_stats()\n--\n\nZero every counter (gauges keep their value)."},
    {"fetch", FASTKW(Cache_fetch),
     "fetch($self, key, loader, *, ttl=0, stale_ttl=0, tags=(), flags=0,\n"
     "      absent_ttl=None, wait=None, error_ttl=None, stale_if_error=0,\n"
     "      beta=None, background=False, early=True, default=None)\n"
     "--\n"
     "\n"
     "Return key's value, calling ``loader()`` to produce it if needed.\n"
     "\n"
     "Single flight: however many threads fetch a missing key at once,\n"
     "``loader`` runs once, in one of them; the others wait up to\n"
     "``wait`` seconds (default 10; 0 does not wait) with the GIL\n"
     "released, and get the same value, or raise :class:`LoadError`\n"
     "carrying the loader's exception (the same object in every thread),\n"
     "or :class:`Timeout` when the wait runs out.\n"
     "\n"
     "The loader takes no argument and returns a bytes-like value, a\n"
     ":class:`Loaded`, or :data:`ABSENT` / :class:`Absent` (the key does\n"
     "not exist: remembered for ``absent_ttl`` seconds, default\n"
     "``ttl``, during which fetch returns ``default`` at once).\n"
     "\n"
     "A loaded value is fresh for ``ttl`` seconds (0: never expires),\n"
     "then stale for ``stale_ttl`` seconds: the first caller refreshes\n"
     "it (inline, or on the refresh threads with ``background=True``)\n"
     "while everyone else gets the stale value at once.  With\n"
     "``early`` (XFetch, ``beta``), a caller may refresh a little before\n"
     "``ttl`` runs out.  ``tags`` and ``flags`` are stored with the\n"
     "value.\n"
     "\n"
     "A failed load is answered to fetches of the key for ``error_ttl``\n"
     "seconds (default 1) or the key's backoff, whichever is longer,\n"
     "without calling the loader; a stale value stays servable for\n"
     "``stale_if_error`` seconds (default ``stale_ttl``) after its\n"
     "refresh failed.  When the circuit breaker is open, fetches that\n"
     "would load raise :class:`Busy`.  A load that began before a write,\n"
     "delete, tag or prefix invalidation or flush of its key returns\n"
     "its value to its callers but does not store it."},
    {"subscribe", FASTKW(Cache_subscribe),
     "subscribe($self, callback, since=0)\n"
     "--\n"
     "\n"
     "Call ``callback(event)`` for every invalidation; a Subscription.\n"
     "\n"
     "Events (:class:`Event`) report deletes, overwrites, stale marks,\n"
     "tag and prefix invalidations and flushes, numbered by ``seq`` (+1\n"
     "per event of this cache).  Keys expiring or evicted send nothing.\n"
     "``since`` replays from an earlier sequence number while the ring\n"
     "still holds it.  A subscriber that falls more than ``event_ring``\n"
     "events behind first receives a ``'gap'`` event: treat everything\n"
     "as invalidated.\n"
     "\n"
     "The callback runs one event at a time per cache, on a thread that\n"
     "changed the cache, after the change, holding the GIL and no engine\n"
     "lock.  It may use the cache (but not close it).  An exception it\n"
     "raises goes to ``sys.unraisablehook``.  The subscription lasts\n"
     "until ``Subscription.close()`` or the cache's close."},
    {"use_write_through", FASTKW(Cache_use_write_through),
     "use_write_through(writer)\n--\n\n"
     "Make put() and remove() call writer(write) before changing the\n"
     "cache; if it raises, the cache is untouched and put() raises\n"
     "WriteError."},
    {"use_write_behind", FASTKW(Cache_use_write_behind),
     "use_write_behind($self, writer, *, queue_max=0, batch_max=0,\n"
     "                 delay=None, retry_min=None, retry_max=None,\n"
     "                 refuse_when_full=False)\n"
     "--\n"
     "\n"
     "Route put() and remove() through a batch writer, asynchronously.\n"
     "\n"
     "put() and remove() change the cache and queue the write; the\n"
     "cache's flusher thread calls ``writer(writes)`` with a list of up\n"
     "to ``batch_max`` (default 128) :class:`Write` records for distinct\n"
     "keys, after each waited ``delay`` seconds (default 0.05) so that\n"
     "writes of one key coalesce (the latest wins).  The writer returns\n"
     "None when every write succeeded, or one result per write (true:\n"
     "written, false: retry); raising retries the whole batch and is\n"
     "kept in :attr:`last_write_error`.  Failed writes are retried with\n"
     "exponential backoff from ``retry_min`` to ``retry_max`` seconds\n"
     "(defaults 0.01 and 5), in order per key, until they succeed or a\n"
     "newer write of the key replaces them.\n"
     "\n"
     "At most ``queue_max`` keys (default 65536) wait; past that put()\n"
     "blocks (GIL released) until there is room, or raises :class:`Busy`\n"
     "with ``refuse_when_full``.  :meth:`write_flush` waits for the\n"
     "queue to drain; :meth:`close` flushes everything first."},
    {"put", FASTKW(Cache_put),
     "put(key, value, ttl=0, flags=0)\n--\n\n"
     "Store through the writer (use_write_through / use_write_behind)."},
    {"remove", FASTKW(Cache_remove),
     "remove(key)\n--\n\nDelete through the writer."},
    {"write_flush", FASTKW(Cache_write_flush),
     "write_flush(timeout=None)\n--\n\n"
     "Wait until every queued write-behind write is written: True, or\n"
     "False if timeout seconds passed first."},
    {"close", FASTKW(Cache_close),
     "close(timeout=None)\n--\n\n"
     "Flush write-behind writes, stop the cache's threads and free it.\n"
     "With a timeout, raises Timeout (and stays open) if writes are\n"
     "still pending after it.  Closing twice is a no-op."},
    {"__enter__", (PyCFunction)Cache_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Cache_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Cache_getset[] = {
    {"config", (getter)Cache_get_config, NULL,
     "The configuration in effect (dict), automatic choices resolved.", NULL},
    {"event_seq", (getter)Cache_get_event_seq, NULL,
     "The sequence number the next event will get.", NULL},
    {"closed", (getter)Cache_get_closed, NULL, "True once closed.", NULL},
    {"last_write_error", (getter)Cache_get_last_write_error, NULL,
     "The last exception raised by the write-behind writer, or None.", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyMappingMethods Cache_as_mapping = {
    .mp_length = (lenfunc)Cache_len,
    .mp_subscript = (binaryfunc)Cache_subscript,
    .mp_ass_subscript = (objobjargproc)Cache_ass_subscript,
};

static PySequenceMethods Cache_as_sequence = {
    .sq_contains = (objobjproc)Cache_contains,
};

static PyTypeObject CacheType = {
    /* the macro ends with its own comma */
    /* clang-format off */
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "corral._corral.Cache",
    /* clang-format on */
    .tp_basicsize = sizeof(CacheObject),
    .tp_dealloc = (destructor)Cache_dealloc,
    .tp_as_sequence = &Cache_as_sequence,
    .tp_as_mapping = &Cache_as_mapping,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The engine's cache; use corral.Cache.",
    .tp_traverse = (traverseproc)Cache_traverse,
    .tp_clear = (inquiry)Cache_clear,
    .tp_weaklistoffset = offsetof(CacheObject, weakrefs),
    .tp_methods = Cache_methods,
    .tp_getset = Cache_getset,
    .tp_init = (initproc)Cache_init,
    .tp_new = Cache_new,
    .tp_finalize = (destructor)Cache_finalize,
};

/* ---------------------------------------------------------------------- */
/* NearCache: a Cache kept coherent with a corrald (corral_near.h)        */

/*
 * Threads.  The C near cache runs a thread of its own that applies the
 * server's invalidation stream to the Cache (corral_invalidate()), which
 * may deliver events to the Cache's Python subscribers on that thread, so
 * that thread can need the GIL: corral_near_destroy() (which joins it)
 * and corral_near_wait_synced() run with the GIL released.  get() keeps
 * the GIL, like Cache.get(); fetch() releases it like Cache.fetch().
 *
 * Lifetime.  Methods count themselves in `active` and in the owner's
 * `active` (so that the Cache's close() waits for them too).  close()
 * unlinks the handle, waits until `active` is zero and destroys it with
 * the GIL released, counted in the owner's `active` meanwhile so that a
 * concurrent Cache.close() does not free the engine under the near
 * cache's thread.  A near cache collected on a callback thread (possibly
 * its own thread, delivering an event) is destroyed on a helper thread.
 */

static PyObject *
raise_near_closed(void)
{
    PyErr_SetString(Closed, "the near cache is closed");
    return NULL;
}

static corral_near_t *
near_enter(NearObject *self)
{
    if (self->near == NULL) {
        raise_near_closed();
        return NULL;
    }
    if (cache_enter(self->owner) == NULL) {
        return NULL; /* not reached: closing the cache closes self first */
    }
    self->active++;
    return self->near;
}

static void
near_leave(NearObject *self)
{
    self->active--;
    cache_leave(self->owner);
}

struct near_deferred {
    corral_near_t *near;
    CacheObject *owner;
};

static void *
near_deferred_destroy(void *arg)
{
    struct near_deferred *d = arg;
    PyGILState_STATE g;

    corral_near_destroy(d->near);
    if (!py_finalizing()) {
        g = PyGILState_Ensure();
        d->owner->active--;
        Py_DECREF(d->owner);
        PyGILState_Release(g);
    }
    PyMem_RawFree(d);
    return NULL;
}

/* Stop the near cache's thread and free it (GIL held). */
static int
near_close(NearObject *self, int finalizer)
{
    CacheObject *owner = self->owner;
    corral_near_t *h;

    if (self->near == NULL) {
        return 0;
    }
    if (callback_depth > 0) {
        struct near_deferred *d;
        pthread_t t;
        pthread_attr_t attr;

        if (!finalizer) {
            PyErr_SetString(Error, "close() cannot run inside a loader, "
                                   "writer or event callback");
            return -1;
        }
        h = near_unlink(self);
        d = PyMem_RawMalloc(sizeof(*d));
        if (d == NULL) {
            return 0; /* leaked: destroying here could deadlock */
        }
        d->near = h;
        d->owner = (CacheObject *)Py_NewRef(owner);
        owner->active++; /* the engine outlives the near cache's thread */
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, near_deferred_destroy, d) != 0) {
            owner->active--; /* leaked, with the cache it may still use */
            PyMem_RawFree(d);
        }
        pthread_attr_destroy(&attr);
        return 0;
    }
    h = near_unlink(self);
    owner->active++;
    while (self->active > 0) {
        nap_without_gil();
    }
    {
        PyThreadState *save = PyEval_SaveThread();
        corral_near_destroy(h);
        PyEval_RestoreThread(save);
    }
    owner->active--;
    return 0;
}

static int
Near_init(NearObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {(char *)"cache",       (char *)"host",
                             (char *)"port",        (char *)"connect_timeout",
                             (char *)"backoff_min", (char *)"backoff_max",
                             (char *)"filters",     (char *)"silence",
                             NULL};
    PyObject *cache, *host, *port, *o_ct = NULL, *o_bmin = NULL;
    PyObject *o_bmax = NULL, *filters = NULL, *o_silence = NULL;
    CacheObject *owner;
    corral_near_opts_t opts;
    const char *h, *f = NULL;
    Py_ssize_t hlen, flen = 0;
    long p;
    corral_status_t st;

    if (self->owner != NULL) {
        PyErr_SetString(Error, "the near cache is already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OUO|$OOOOO:NearCache",
                                     kwlist, &cache, &host, &port, &o_ct,
                                     &o_bmin, &o_bmax, &filters,
                                     &o_silence)) {
        return -1;
    }
    if (!PyObject_TypeCheck(cache, &CacheType)) {
        PyErr_Format(PyExc_TypeError,
                     "NearCache() binds a corral.Cache, not %.100s",
                     Py_TYPE(cache)->tp_name);
        return -1;
    }
    owner = (CacheObject *)cache;
    if (owner->cache == NULL) {
        raise_closed();
        return -1;
    }
    h = PyUnicode_AsUTF8AndSize(host, &hlen);
    if (h == NULL) {
        return -1;
    }
    if (hlen == 0 || hlen > 255 || strlen(h) != (size_t)hlen) {
        PyErr_Format(InvalidArgument,
                     "NearCache(): the host must be a name or address of "
                     "1 to 255 bytes without NUL, not %R",
                     host);
        return -1;
    }
    if (!PyLong_Check(port) || PyBool_Check(port)) {
        PyErr_Format(PyExc_TypeError,
                     "NearCache(): the port must be an int, not %.100s",
                     Py_TYPE(port)->tp_name);
        return -1;
    }
    p = PyLong_AsLong(port);
    if (p == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        p = 0;
    }
    if (p < 1 || p > 65535) {
        PyErr_Format(InvalidArgument,
                     "NearCache(): the port must be 1 to 65535, not %R", port);
        return -1;
    }
    corral_near_opts_init(&opts);
    if (arg_ms(o_ct, "connect_timeout", opts.connect_timeout_ms,
               &opts.connect_timeout_ms) < 0 ||
        arg_ms(o_bmin, "backoff_min", opts.backoff_min_ms,
               &opts.backoff_min_ms) < 0 ||
        arg_ms(o_bmax, "backoff_max", opts.backoff_max_ms,
               &opts.backoff_max_ms) < 0 ||
        arg_ms(o_silence, "silence", 5000, &opts.silence_ms) < 0) {
        return -1;
    }
    if (opts.silence_ms < 0 ||
        (opts.silence_ms > 0 && opts.silence_ms < 2000) ||
        opts.silence_ms > INT32_MAX) {
        PyErr_SetString(InvalidArgument,
                        "NearCache(): silence must be 0 (off) or 2 s to "
                        "24 days");
        return -1;
    }
    if (opts.silence_ms == 0) {
        opts.silence_ms = -1; /* off */
    }
    if (opts.connect_timeout_ms <= 0 || opts.connect_timeout_ms > INT32_MAX ||
        opts.backoff_min_ms <= 0 || opts.backoff_max_ms < opts.backoff_min_ms) {
        PyErr_SetString(InvalidArgument,
                        "NearCache(): connect_timeout and backoff_min must "
                        "be above 0 (connect_timeout within 24 days), and "
                        "backoff_max at least backoff_min");
        return -1;
    }
    if (filters != NULL && filters != Py_None) {
        if (!PyUnicode_Check(filters)) {
            PyErr_Format(PyExc_TypeError,
                         "NearCache(): filters must be a str such as "
                         "'prefix=user%%3A tag=site', not %.100s",
                         Py_TYPE(filters)->tp_name);
            return -1;
        }
        f = PyUnicode_AsUTF8AndSize(filters, &flen);
        if (f == NULL) {
            return -1;
        }
        if (flen > 1000 || strlen(f) != (size_t)flen ||
            strpbrk(f, "\r\n") != NULL) {
            PyErr_SetString(InvalidArgument,
                            "NearCache(): filters must be at most 1000 bytes "
                            "on one line (corrald's watch syntax, "
                            "'prefix=user%3A tag=site')");
            return -1;
        }
        opts.filters = flen > 0 ? f : NULL;
    }
    st = corral_near_create(owner->cache, h, (unsigned)p, &opts, &self->near);
    if (st != CORRAL_OK) {
        self->near = NULL;
        raise_status(st, "NearCache()", NULL);
        return -1;
    }
    self->owner = (CacheObject *)Py_NewRef(owner);
    self->host = Py_NewRef(host);
    self->port = (unsigned)p;
    self->next = owner->nears;
    if (owner->nears != NULL) {
        owner->nears->prev = self;
    }
    owner->nears = self;
    return 0;
}

static void
Near_finalize(NearObject *self)
{
    PyObject *type, *value, *tb;

    if (self->near == NULL) {
        return;
    }
    if (py_finalizing()) {
        /* its thread could not run Python callbacks any more: leave it
         * to the OS */
        near_unlink(self);
        return;
    }
    PyErr_Fetch(&type, &value, &tb);
    if (near_close(self, 1) < 0) {
        PyErr_WriteUnraisable((PyObject *)self);
    }
    PyErr_Restore(type, value, tb);
}

static int
Near_traverse(NearObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->owner);
    return 0;
}

static int
Near_clear(NearObject *self)
{
    if (self->near != NULL) {
        return 0; /* its thread still uses the owner's engine */
    }
    Py_CLEAR(self->owner);
    return 0;
}

static void
Near_dealloc(NearObject *self)
{
    if (PyObject_CallFinalizerFromDealloc((PyObject *)self) < 0) {
        return;
    }
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    Py_CLEAR(self->owner);
    Py_CLEAR(self->host);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Near_get(NearObject *self, PyObject *const *args, Py_ssize_t nargs,
         PyObject *kwnames)
{
    corral_near_t *h;
    PyObject *a[2];
    struct key k;
    corral_item_t *item;
    corral_status_t st;

    if (parse_args(&get_spec, args, nargs, kwnames, a) < 0 ||
        key_get(a[0], &k) < 0) {
        return NULL;
    }
    h = near_enter(self);
    if (h == NULL) {
        key_done(&k);
        return NULL;
    }
    st = corral_near_get(h, k.p, (size_t)k.n, &item);
    near_leave(self);
    key_done(&k);
    if (st == CORRAL_OK) {
        return item_to_bytes(item);
    }
    if (st == CORRAL_ENOTFOUND) {
        return Py_NewRef(a[1] != NULL ? a[1] : Py_None);
    }
    return raise_status(st, "get", a[0]);
}

static PyObject *
Near_get_view(NearObject *self, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames)
{
    corral_near_t *h;
    PyObject *a[2];
    struct key k;
    corral_item_t *item;
    corral_status_t st;

    if (parse_args(&get_view_spec, args, nargs, kwnames, a) < 0 ||
        key_get(a[0], &k) < 0) {
        return NULL;
    }
    h = near_enter(self);
    if (h == NULL) {
        key_done(&k);
        return NULL;
    }
    st = corral_near_get(h, k.p, (size_t)k.n, &item);
    near_leave(self);
    key_done(&k);
    if (st == CORRAL_OK) {
        return value_new(item);
    }
    if (st == CORRAL_ENOTFOUND) {
        return Py_NewRef(a[1] != NULL ? a[1] : Py_None);
    }
    return raise_status(st, "get_view", a[0]);
}

static PyObject *
Near_fetch(NearObject *self, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    if (self->near == NULL) {
        return raise_near_closed();
    }
    return fetch_impl(self->owner, self, args, nargs, kwnames);
}

static const struct argspec wait_synced_spec = {"wait_synced", timeout_names, 1,
                                                0};

/*
 * Wait in slices, so that Ctrl-C (on the main thread) and a close() of the
 * near cache or its Cache from another thread end an unbounded wait (both
 * wait for this call to return).
 */
static PyObject *
Near_wait_synced(NearObject *self, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    PyObject *a[1];
    int64_t ms;
    uint64_t deadline;
    corral_near_t *h;
    corral_status_t st;

    if (parse_args(&wait_synced_spec, args, nargs, kwnames, a) < 0 ||
        arg_ms(a[0], "timeout", -1, &ms) < 0) {
        return NULL;
    }
    h = near_enter(self);
    if (h == NULL) {
        return NULL;
    }
    deadline = ms >= 0 ? mono_ms() + (uint64_t)ms : 0;
    for (;;) {
        int64_t slice = 100;
        uint64_t now = mono_ms();

        if (ms >= 0) {
            slice = now >= deadline        ? 0
                    : deadline - now < 100 ? (int64_t)(deadline - now)
                                           : 100;
        }
        {
            PyThreadState *save = PyEval_SaveThread();
            st = corral_near_wait_synced(h, slice);
            PyEval_RestoreThread(save);
        }
        /* closing either the near cache or its Cache ends the wait */
        if (st == CORRAL_OK || self->near == NULL ||
            self->owner->cache == NULL || (ms >= 0 && mono_ms() >= deadline)) {
            break;
        }
        if (PyErr_CheckSignals() < 0) {
            near_leave(self);
            return NULL;
        }
    }
    near_leave(self);
    return PyBool_FromLong(st == CORRAL_OK);
}

static PyObject *
Near_stats(NearObject *self, PyObject *unused)
{
    corral_near_t *h = near_enter(self);
    corral_near_stats_t ns;

    if (h == NULL) {
        return NULL;
    }
    corral_near_stats(h, &ns);
    near_leave(self);
    return Py_BuildValue(
        "{sKsKsKsKsK}", "connects", (unsigned long long)ns.connects, "applied",
        (unsigned long long)ns.applied, "flushes",
        (unsigned long long)ns.flushes, "last_seq",
        (unsigned long long)ns.last_seq, "node", (unsigned long long)ns.node);
}

static PyObject *
Near_close(NearObject *self, PyObject *unused)
{
    if (near_close(self, 0) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Near_enter(NearObject *self, PyObject *unused)
{
    if (self->near == NULL) {
        return raise_near_closed();
    }
    return Py_NewRef(self);
}

static PyObject *
Near_exit(NearObject *self, PyObject *args)
{
    return Near_close(self, NULL);
}

static PyObject *
Near_get_synced(NearObject *self, void *unused)
{
    return PyBool_FromLong(self->near != NULL &&
                           corral_near_synced(self->near));
}

static PyObject *
Near_get_closed(NearObject *self, void *unused)
{
    return PyBool_FromLong(self->near == NULL);
}

static PyObject *
Near_get_cache(NearObject *self, void *unused)
{
    return Py_NewRef(self->owner != NULL ? (PyObject *)self->owner : Py_None);
}

static PyObject *
Near_get_address(NearObject *self, void *unused)
{
    if (self->host == NULL) {
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(OI)", self->host, self->port);
}

static PyMethodDef Near_methods[] = {
    {"get", FASTKW(Near_get),
     "get(key, default=None)\n--\n\n"
     "The local value of key as bytes while the stream is live (synced);\n"
     "default when absent locally or when the stream is not live."},
    {"get_view", FASTKW(Near_get_view),
     "get_view(key, default=None)\n--\n\n"
     "As get(), as a Value (no copy; see Cache.get_view())."},
    {"fetch", FASTKW(Near_fetch),
     "fetch($self, key, loader, *, ttl=0, stale_ttl=0, tags=(), flags=0,\n"
     "      absent_ttl=None, wait=None, error_ttl=None, stale_if_error=0,\n"
     "      beta=None, background=False, early=True, default=None)\n"
     "--\n"
     "\n"
     "Read through the local cache: Cache.fetch() with ``loader`` (which\n"
     "reads the server, with any memcached client) while the stream is\n"
     "live.  While it is not, the local copy is deleted first, so the\n"
     "loader always runs (what it stores is flushed when the stream\n"
     "comes back).  Arguments, results and exceptions as Cache.fetch();\n"
     "the GIL is released while waiting.  Give the value the tags it\n"
     "has on the server for the server's tag invalidations to reach it."},
    {"wait_synced", FASTKW(Near_wait_synced),
     "wait_synced(timeout=None)\n--\n\n"
     "Wait until the stream is live, at most timeout seconds (None: no\n"
     "limit).  True if it is, False on timeout or when the near cache\n"
     "is closed meanwhile.  The GIL is released; Ctrl-C interrupts."},
    {"stats", (PyCFunction)Near_stats, METH_NOARGS,
     "stats()\n--\n\n"
     "What the near cache's thread has done, as a dict of ints:\n"
     "connects (streams established), applied (invalidations applied to\n"
     "the local cache), flushes (local flushes: reconnections, gaps,\n"
     "flushes received), last_seq (the server's sequence number of the\n"
     "last event applied) and node (the server's node id, 0 before the\n"
     "first connection)."},
    {"close", (PyCFunction)Near_close, METH_NOARGS,
     "close()\n--\n\n"
     "Stop following the server and close the connection.  The Cache\n"
     "stays open and keeps its contents (no longer kept coherent).\n"
     "Closing twice is a no-op; closing the Cache closes it too."},
    {"__enter__", (PyCFunction)Near_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Near_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Near_getset[] = {
    {"synced", (getter)Near_get_synced, NULL,
     "True while the stream is live: connected and past the server's\n"
     "sync line.  Only then are local copies served.",
     NULL},
    {"closed", (getter)Near_get_closed, NULL, "True once closed.", NULL},
    {"cache", (getter)Near_get_cache, NULL, "The Cache it keeps coherent.",
     NULL},
    {"address", (getter)Near_get_address, NULL, "The server's (host, port).",
     NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject NearType = {
    /* the macro ends with its own comma */
    /* clang-format off */
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "corral._corral.NearCache",
    /* clang-format on */
    .tp_basicsize = sizeof(NearObject),
    .tp_dealloc = (destructor)Near_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A near cache bound to a corrald; use corral.NearCache.",
    .tp_traverse = (traverseproc)Near_traverse,
    .tp_clear = (inquiry)Near_clear,
    .tp_weaklistoffset = offsetof(NearObject, weakrefs),
    .tp_methods = Near_methods,
    .tp_getset = Near_getset,
    .tp_init = (initproc)Near_init,
    .tp_new = PyType_GenericNew,
    .tp_finalize = (destructor)Near_finalize,
};

/* ---------------------------------------------------------------------- */
/* The module                                                             */

static PyObject *
mod_register(PyObject *mod, PyObject *args)
{
    PyObject *loaded, *absent;

    if (!PyArg_ParseTuple(args, "OO:_register", &loaded, &absent)) {
        return NULL;
    }
    if (!PyType_Check(loaded) || !PyType_Check(absent)) {
        PyErr_SetString(PyExc_TypeError, "_register() takes two classes");
        return NULL;
    }
    Py_XSETREF(LoadedType, Py_NewRef(loaded));
    Py_XSETREF(AbsentType, Py_NewRef(absent));
    Py_RETURN_NONE;
}

static PyObject *
mod_set_release_bytes(PyObject *mod, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg), old = release_bytes;

    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    release_bytes = n < 0 ? 0 : n;
    return PyLong_FromSsize_t(old);
}

static PyMethodDef mod_methods[] = {
    {"_register", mod_register, METH_VARARGS,
     "_register(Loaded, Absent)\n--\n\n"
     "Tell the extension the classes a loader may return."},
    {"_set_release_bytes", mod_set_release_bytes, METH_O,
     "_set_release_bytes(n)\n--\n\n"
     "Copy values of n bytes or more with the GIL released (0: always);\n"
     "returns the previous setting.  For benchmarks."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef corral_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "corral._corral",
    .m_doc = "The C extension behind the corral package: libcorral's engine "
             "compiled in.",
    .m_size = -1,
    .m_methods = mod_methods,
};

static PyStructSequence_Field write_fields[] = {
    {"op", "'set' or 'delete'"},
    {"key", "the key (bytes)"},
    {"value", "the value (bytes) of a set, None for a delete"},
    {"flags", "the client flags of a set"},
    {"seq", "increases with every put/remove of the cache: a key's "
            "writes arrive in increasing seq"},
    {"expires", "a set's expiry as a Unix time (its ttl resolved when it "
                "was put; 1 if already past), 0 = never; 0 for a delete "
                "(an attribute, not part of the tuple)"},
    {NULL, NULL}};

static PyStructSequence_Desc write_desc = {
    "corral.Write", "A change for the backend, passed to writers.",
    write_fields, 5};

static PyStructSequence_Field event_fields[] = {
    {"seq", "+1 per event in this cache"},
    {"type", "'delete', 'overwrite', 'stale', 'tag', 'prefix', 'flush' or "
             "'gap'"},
    {"name", "the key, tag or prefix (bytes); b'' for flush and gap"},
    {"cas", "the item's CAS where there is one (new for an overwrite, old "
            "for a delete), else 0"},
    {"origin", "0 for changes made through this cache's API, else the "
               "origin given to invalidate()"},
    {"flush_time", "for a flush: the Unix time it takes effect, 0 = at "
                   "once"},
    {NULL, NULL}};

static PyStructSequence_Desc event_desc = {
    "corral.Event", "An invalidation event, passed to subscribers.",
    event_fields, 6};

/* Create an exception class with a `status` attribute. */
static PyObject *
new_exception(PyObject *mod, const char *name, PyObject *base1, PyObject *base2,
              long status, const char *doc)
{
    char qual[64];
    PyObject *bases, *dict, *type;

    snprintf(qual, sizeof(qual), "corral.%s", name);
    bases =
        base2 != NULL ? PyTuple_Pack(2, base1, base2) : PyTuple_Pack(1, base1);
    dict = PyDict_New();
    if (bases == NULL || dict == NULL) {
        goto fail;
    }
    if (status != 0) {
        PyObject *s = PyLong_FromLong(status);
        if (s == NULL || PyDict_SetItemString(dict, "status", s) < 0) {
            Py_XDECREF(s);
            goto fail;
        }
        Py_DECREF(s);
    } else if (PyDict_SetItemString(dict, "status", Py_None) < 0) {
        goto fail;
    }
    type = PyErr_NewExceptionWithDoc(qual, doc, bases, dict);
    Py_DECREF(bases);
    Py_DECREF(dict);
    if (type != NULL && PyModule_AddObjectRef(mod, name, type) < 0) {
        Py_CLEAR(type);
    }
    return type;
fail:
    Py_XDECREF(bases);
    Py_XDECREF(dict);
    return NULL;
}

PyMODINIT_FUNC PyInit__corral(void);

PyMODINIT_FUNC
PyInit__corral(void)
{
    static const char *const evnames[8] = {
        NULL, "delete", "overwrite", "stale", "tag", "prefix", "flush", "gap"};
    PyObject *m = PyModule_Create(&corral_module);

    if (m == NULL) {
        return NULL;
    }
    if (PyType_Ready(&ValueType) < 0 || PyType_Ready(&SubType) < 0 ||
        PyType_Ready(&CacheType) < 0 || PyType_Ready(&NearType) < 0) {
        goto fail;
    }
    if (PyModule_AddObjectRef(m, "Cache", (PyObject *)&CacheType) < 0 ||
        PyModule_AddObjectRef(m, "Value", (PyObject *)&ValueType) < 0 ||
        PyModule_AddObjectRef(m, "Subscription", (PyObject *)&SubType) < 0 ||
        PyModule_AddObjectRef(m, "NearCache", (PyObject *)&NearType) < 0) {
        goto fail;
    }
    WriteType = PyStructSequence_NewType(&write_desc);
    EventType = PyStructSequence_NewType(&event_desc);
    if (WriteType == NULL || EventType == NULL ||
        PyModule_AddObjectRef(m, "Write", (PyObject *)WriteType) < 0 ||
        PyModule_AddObjectRef(m, "Event", (PyObject *)EventType) < 0) {
        goto fail;
    }
    str_set = PyUnicode_InternFromString("set");
    str_delete = PyUnicode_InternFromString("delete");
    if (str_set == NULL || str_delete == NULL) {
        goto fail;
    }
    for (int i = 1; i < 8; i++) {
        event_names[i] = PyUnicode_InternFromString(evnames[i]);
        if (event_names[i] == NULL) {
            goto fail;
        }
    }

    Error = new_exception(m, "Error", PyExc_Exception, NULL, 0,
                          "Base class of Corral's errors; `status` is the "
                          "engine's status code.");
    if (Error == NULL) {
        goto fail;
    }
    NotFound =
        new_exception(m, "NotFound", Error, PyExc_KeyError, CORRAL_ENOTFOUND,
                      "The key is absent (a KeyError).");
    Exists = new_exception(m, "Exists", Error, NULL, CORRAL_EEXISTS,
                           "The item changed since its CAS was read.");
    NotStored = new_exception(m, "NotStored", Error, NULL, CORRAL_ENOTSTORED,
                              "Not stored: the mode's condition was not "
                              "met.");
    OutOfMemory =
        new_exception(m, "OutOfMemory", Error, PyExc_MemoryError, CORRAL_ENOMEM,
                      "Nothing could be evicted to make room.");
    TooLarge =
        new_exception(m, "TooLarge", Error, PyExc_ValueError, CORRAL_ETOOBIG,
                      "The item is larger than max_item_size.");
    InvalidArgument = new_exception(m, "InvalidArgument", Error,
                                    PyExc_ValueError, CORRAL_EINVAL,
                                    "A key, tag or setting the engine "
                                    "refuses.");
    NonNumeric = new_exception(m, "NonNumeric", Error, PyExc_ValueError,
                               CORRAL_ENONNUMERIC,
                               "incr/decr on a value that is not a decimal "
                               "number.");
    Timeout = new_exception(m, "Timeout", Error, PyExc_TimeoutError,
                            CORRAL_ETIMEDOUT, "A bounded wait ran out.");
    Stale = new_exception(m, "Stale", Error, NULL, CORRAL_ESTALE,
                          "Superseded by a newer write or invalidation.");
    Busy = new_exception(m, "Busy", Error, NULL, CORRAL_EBUSY,
                         "The loader's circuit breaker is open, or the "
                         "write-behind queue is full.");
    LoadError = new_exception(m, "LoadError", Error, NULL, CORRAL_ELOAD,
                              "A loader failed.  `exception` is the "
                              "loader's exception (also the __cause__), "
                              "the same object in every caller that "
                              "waited for the load.");
    WriteError = new_exception(m, "WriteError", Error, NULL, CORRAL_ELOAD,
                               "A write-through writer failed; the cache "
                               "was not changed.  `exception` is the "
                               "writer's exception.");
    Closed = new_exception(m, "Closed", Error, PyExc_ValueError, 0,
                           "The cache is closed.");
    if (NotFound == NULL || Exists == NULL || NotStored == NULL ||
        OutOfMemory == NULL || TooLarge == NULL || InvalidArgument == NULL ||
        NonNumeric == NULL || Timeout == NULL || Stale == NULL ||
        Busy == NULL || LoadError == NULL || WriteError == NULL ||
        Closed == NULL) {
        goto fail;
    }
    if (PyObject_SetAttrString(LoadError, "exception", Py_None) < 0 ||
        PyObject_SetAttrString(LoadError, "key", Py_None) < 0 ||
        PyObject_SetAttrString(WriteError, "exception", Py_None) < 0 ||
        PyObject_SetAttrString(WriteError, "key", Py_None) < 0) {
        goto fail;
    }
    if (PyModule_AddStringConstant(m, "ENGINE_VERSION", corral_version()) < 0 ||
        PyModule_AddIntConstant(m, "KEY_MAX", CORRAL_KEY_MAX) < 0 ||
        PyModule_AddIntConstant(m, "TAGS_MAX", CORRAL_TAGS_MAX) < 0 ||
        PyModule_AddIntConstant(m, "TAG_MAX", CORRAL_TAG_MAX) < 0) {
        goto fail;
    }
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
