/* The job observers' stamps and ring in C: an optional accelerator for gearman_gateway/scheduler/observing.py.

   With observers, three transitions run per job (submit, start, WORK_COMPLETE) and each must stamp the
   job with the clock, the last one also recording the end in a ring. In Python each wrapper is a frame, a
   clock call and a few attribute stores: ~1,000-2,500 instructions a transition, more than issue 19's
   +3 % budget for all three. Here no transition is wrapped: the scheduler's own dict stores do the work.
   An observed scheduler's ``jobs_by_handle`` (``StampedJobs``) stamps a new job's submit time as submit
   stores it, and each worker's ``jobs`` (``WorkerJobs``) stamps the start as ``_start`` stores the job and
   records the end as WORK_COMPLETE deletes it. The ring (``Ring``) keeps its ends in C arrays, the clock as
   a double (clock_gettime when the clock is time.time): an end's tuple is built only when a reader asks
   for it (``view``); the latency histograms count straight from the arrays (``tally``), and the hooks
   look at an end only when its function and outcome are hooked (checked per function once, then cached).

   observing.py keeps the pure-Python ring and wrappers as the fallback when this module is not built;
   both keep the same fields and behave the same. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <time.h>

static PyObject *time_time; /* time.time: a clock read as clock_gettime(CLOCK_REALTIME) */
static PyObject *empty_bytes;
static PyObject *zero_float;

/* Function objects whose hook classification is cached, at most (then the cache starts again). */
#define HOOK_CACHE_MAX 10000

/* ------------------------------------------------------------------ Ring: the ends and the stamping state */

typedef struct {
    PyObject_HEAD
    /* the ends, ``size`` slots each: job, outcome, data, worker (NULL: a slot not written yet), time */
    PyObject **jobs, **outcomes, **datas, **workers;
    double *times;
    char *hooked;        /* 1: a hook wants this end (its function and outcome) */
    Py_ssize_t index;    /* the next slot */
    Py_ssize_t size;
    Py_ssize_t first;    /* ends recorded before slot 0 of this round */
    long long last_seq;  /* the newest job sequence number stamped at submit */
    int blank;           /* a completed job's payload is dropped as it is recorded (not under a memory bound) */
    int hook_armed;      /* a hooked end waits to be read: on_hooked was called, not yet answered */
    PyObject *read;      /* the clock: NULL for time.time */
    PyObject *want_turn; /* [bool]: an eager observer waits for the turn's end to be armed */
    PyObject *arm;       /* called when want_turn[0] is true after an end */
    PyObject *wrap;      /* called when the ring is full (index == size) */
    PyObject *complete;  /* the outcome of WORK_COMPLETE */
    PyObject *classify;  /* classify(function) -> frozenset of hooked outcomes; NULL: no hooks */
    PyObject *on_hooked; /* called at a hooked end when hook_armed was 0 */
    PyObject *hook_cache; /* Function -> classify's answer */
    PyTypeObject *job_type;
    Py_ssize_t seq, worker, data, submitted_at, started_at, function; /* Job's slot offsets */
} Ring;

static Py_ssize_t
slot_offset(PyTypeObject *type, const char *name)
{
    PyObject *descr = PyObject_GetAttrString((PyObject *)type, name);
    if (descr == NULL)
        return -1;
    Py_ssize_t offset = -1;
    if (Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type == T_OBJECT_EX)
            offset = member->offset;
    }
    Py_DECREF(descr);
    if (offset < 0)
        PyErr_Format(PyExc_TypeError, "%s.%s is not a __slots__ slot", type->tp_name, name);
    return offset;
}

static void
free_slots(PyObject **slots, Py_ssize_t size)
{
    if (slots == NULL)
        return;
    for (Py_ssize_t i = 0; i < size; i++)
        Py_CLEAR(slots[i]);
    PyMem_Free(slots);
}

static void
Ring_free_arrays(Ring *self)
{
    free_slots(self->jobs, self->size);
    free_slots(self->outcomes, self->size);
    free_slots(self->datas, self->size);
    free_slots(self->workers, self->size);
    PyMem_Free(self->times);
    PyMem_Free(self->hooked);
    self->jobs = self->outcomes = self->datas = self->workers = NULL;
    self->times = NULL;
    self->hooked = NULL;
}

/* Arrays for ``size`` slots, all empty (0 on success, -1 with MemoryError). */
static int
new_arrays(Py_ssize_t size, PyObject ***jobs, PyObject ***outcomes, PyObject ***datas, PyObject ***workers,
           double **times, char **hooked)
{
    *jobs = PyMem_Calloc(size, sizeof(PyObject *));
    *outcomes = PyMem_Calloc(size, sizeof(PyObject *));
    *datas = PyMem_Calloc(size, sizeof(PyObject *));
    *workers = PyMem_Calloc(size, sizeof(PyObject *));
    *times = PyMem_Calloc(size, sizeof(double));
    *hooked = PyMem_Calloc(size, 1);
    if (*jobs && *outcomes && *datas && *workers && *times && *hooked)
        return 0;
    PyMem_Free(*jobs);
    PyMem_Free(*outcomes);
    PyMem_Free(*datas);
    PyMem_Free(*workers);
    PyMem_Free(*times);
    PyMem_Free(*hooked);
    PyErr_NoMemory();
    return -1;
}

static int
Ring_init(Ring *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"read", "want_turn", "arm", "wrap", "complete", "job_type", "size", "blank", NULL};
    PyObject *read, *want_turn, *arm, *wrap, *complete;
    PyTypeObject *job_type;
    Py_ssize_t size;
    int blank = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!OOUO!n|p", kwlist, &read, &PyList_Type, &want_turn, &arm, &wrap,
                                     &complete, &PyType_Type, &job_type, &size, &blank))
        return -1;
    if (size <= 0 || PyList_GET_SIZE(want_turn) != 1) {
        PyErr_SetString(PyExc_ValueError, "size must be positive and want_turn a list of one");
        return -1;
    }
    if ((self->seq = slot_offset(job_type, "seq")) < 0 || (self->worker = slot_offset(job_type, "worker")) < 0 ||
        (self->data = slot_offset(job_type, "data")) < 0 ||
        (self->submitted_at = slot_offset(job_type, "submitted_at")) < 0 ||
        (self->started_at = slot_offset(job_type, "started_at")) < 0 ||
        (self->function = slot_offset(job_type, "function")) < 0)
        return -1;
    Ring_free_arrays(self);
    if (new_arrays(size, &self->jobs, &self->outcomes, &self->datas, &self->workers, &self->times, &self->hooked) < 0)
        return -1;
    self->index = 0;
    self->size = size;
    self->first = 0;
    self->last_seq = 0;
    self->blank = blank;
    self->hook_armed = 0;
    Py_XSETREF(self->read, read == time_time ? NULL : Py_NewRef(read));
    Py_XSETREF(self->want_turn, Py_NewRef(want_turn));
    Py_XSETREF(self->arm, Py_NewRef(arm));
    Py_XSETREF(self->wrap, Py_NewRef(wrap));
    Py_XSETREF(self->complete, Py_NewRef(complete));
    Py_CLEAR(self->classify);
    Py_CLEAR(self->on_hooked);
    Py_CLEAR(self->hook_cache);
    Py_XSETREF(self->job_type, (PyTypeObject *)Py_NewRef(job_type));
    return 0;
}

static int
Ring_traverse(Ring *self, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; self->jobs != NULL && i < self->size; i++) {
        Py_VISIT(self->jobs[i]);
        Py_VISIT(self->outcomes[i]);
        Py_VISIT(self->datas[i]);
        Py_VISIT(self->workers[i]);
    }
    Py_VISIT(self->read);
    Py_VISIT(self->want_turn);
    Py_VISIT(self->arm);
    Py_VISIT(self->wrap);
    Py_VISIT(self->classify);
    Py_VISIT(self->on_hooked);
    Py_VISIT(self->hook_cache);
    Py_VISIT(self->job_type);
    return 0;
}

static int
Ring_clear(Ring *self)
{
    Ring_free_arrays(self);
    self->size = self->index = 0;
    Py_CLEAR(self->read);
    Py_CLEAR(self->want_turn);
    Py_CLEAR(self->arm);
    Py_CLEAR(self->wrap);
    Py_CLEAR(self->complete);
    Py_CLEAR(self->classify);
    Py_CLEAR(self->on_hooked);
    Py_CLEAR(self->hook_cache);
    Py_CLEAR(self->job_type);
    return 0;
}

static void
Ring_dealloc(Ring *self)
{
    PyObject_GC_UnTrack(self);
    Ring_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The clock, as a double (-1.0 with an exception set on error). */
static inline double
Ring_clock(Ring *self)
{
    if (self->read != NULL) {
        PyObject *now = PyObject_CallNoArgs(self->read);
        if (now == NULL)
            return -1.0;
        double value = PyFloat_AsDouble(now);
        Py_DECREF(now);
        return value;
    }
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1.0;
    }
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The clock, as a new float. */
static inline PyObject *
Ring_now(Ring *self)
{
    if (self->read != NULL)
        return PyObject_CallNoArgs(self->read);
    double now = Ring_clock(self);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    return PyFloat_FromDouble(now);
}

#define SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

/* obj.<slot at offset> = value (a new reference, stolen); by offset when obj is of the expected type. */
static inline int
set_slot(PyObject *obj, PyTypeObject *type, Py_ssize_t offset, const char *name, PyObject *value)
{
    if (value == NULL)
        return -1;
    if (Py_IS_TYPE(obj, type)) {
        Py_XSETREF(SLOT(obj, offset), value);
        return 0;
    }
    int result = PyObject_SetAttrString(obj, name, value);
    Py_DECREF(value);
    return result;
}

/* obj.<slot at offset>, a new reference (NULL with an exception if unset). */
static inline PyObject *
get_slot(PyObject *obj, PyTypeObject *type, Py_ssize_t offset, const char *name)
{
    if (Py_IS_TYPE(obj, type)) {
        PyObject *value = SLOT(obj, offset);
        if (value == NULL) {
            PyErr_Format(PyExc_AttributeError, "'%s' object has no attribute '%s'", type->tp_name, name);
            return NULL;
        }
        return Py_NewRef(value);
    }
    return PyObject_GetAttrString(obj, name);
}

/* Whether a hook wants this end: its function's hooked outcomes, classified once per function. */
static int
Ring_hooked(Ring *self, PyObject *job, PyObject *outcome)
{
    PyObject *function = get_slot(job, self->job_type, self->function, "function");
    if (function == NULL)
        return -1;
    PyObject *wanted = PyDict_GetItemWithError(self->hook_cache, function);
    if (wanted == NULL) {
        if (PyErr_Occurred()) {
            Py_DECREF(function);
            return -1;
        }
        wanted = PyObject_CallOneArg(self->classify, function);
        if (wanted == NULL || !PyAnySet_Check(wanted)) {
            if (wanted != NULL)
                PyErr_SetString(PyExc_TypeError, "classify must return a set of outcomes");
            Py_XDECREF(wanted);
            Py_DECREF(function);
            return -1;
        }
        if (PyDict_GET_SIZE(self->hook_cache) >= HOOK_CACHE_MAX)
            PyDict_Clear(self->hook_cache);
        int stored = PyDict_SetItem(self->hook_cache, function, wanted);
        Py_DECREF(wanted); /* the cache holds it */
        if (stored < 0) {
            Py_DECREF(function);
            return -1;
        }
    }
    Py_DECREF(function);
    if (PySet_GET_SIZE(wanted) == 0)
        return 0;
    return PySet_Contains(wanted, outcome);
}

/* One end into the ring; the caller's references stay theirs. */
static int
Ring_record(Ring *self, PyObject *job, PyObject *outcome, PyObject *data, PyObject *worker)
{
    double now = Ring_clock(self);
    if (now == -1.0 && PyErr_Occurred())
        return -1;
    Py_ssize_t i = self->index;
    if (self->jobs == NULL || i < 0 || i >= self->size) {
        PyErr_SetString(PyExc_RuntimeError, "the ring's index is out of its slots");
        return -1;
    }
    int hooked = 0;
    if (self->classify != NULL && (hooked = Ring_hooked(self, job, outcome)) < 0)
        return -1;
    Py_XSETREF(self->jobs[i], Py_NewRef(job));
    Py_XSETREF(self->outcomes[i], Py_NewRef(outcome));
    Py_XSETREF(self->datas[i], Py_NewRef(data));
    Py_XSETREF(self->workers[i], Py_NewRef(worker));
    self->times[i] = now;
    self->hooked[i] = (char)hooked;
    self->index = i + 1;
    if (hooked && !self->hook_armed) {
        self->hook_armed = 1;
        PyObject *result = PyObject_CallNoArgs(self->on_hooked);
        if (result == NULL)
            return -1;
        Py_DECREF(result);
    }
    if (self->index >= self->size) {
        PyObject *result = PyObject_CallNoArgs(self->wrap);
        if (result == NULL)
            return -1;
        Py_DECREF(result);
    }
    if (PyList_GET_ITEM(self->want_turn, 0) == Py_True) {
        PyObject *result = PyObject_CallNoArgs(self->arm);
        if (result == NULL)
            return -1;
        Py_DECREF(result);
    }
    return 0;
}

/* The slots of ends ``start`` to ``end`` (counted since start; at most the ring's size back): ``*a`` to
   ``*b`` with ``*a`` possibly negative (the previous round, slot a + size). False: none. */
static int
Ring_span(Ring *self, long long start, long long end, Py_ssize_t *a, Py_ssize_t *b)
{
    long long oldest = (long long)self->first + self->index - self->size;
    if (start < oldest)
        start = oldest;
    if (start < 0)
        start = 0;
    if (end > (long long)self->first + self->index)
        end = (long long)self->first + self->index;
    if (end <= start)
        return 0;
    *a = (Py_ssize_t)(start - self->first);
    *b = (Py_ssize_t)(end - self->first);
    return 1;
}

static inline Py_ssize_t
Ring_slot(Ring *self, Py_ssize_t k)
{
    return k < 0 ? k + self->size : k;
}

/* view(start, end, hooked_only=False) -> [(job, outcome, data, worker, time)], oldest first. */
static PyObject *
Ring_view(Ring *self, PyObject *args)
{
    long long start, end;
    int hooked_only = 0;
    if (!PyArg_ParseTuple(args, "LL|p", &start, &end, &hooked_only))
        return NULL;
    PyObject *list = PyList_New(0);
    Py_ssize_t a, b;
    if (list == NULL || !Ring_span(self, start, end, &a, &b))
        return list;
    for (Py_ssize_t k = a; k < b; k++) {
        Py_ssize_t s = Ring_slot(self, k);
        if (self->jobs[s] == NULL || (hooked_only && !self->hooked[s]))
            continue;
        PyObject *time = PyFloat_FromDouble(self->times[s]);
        PyObject *item = time == NULL ? NULL
                                      : PyTuple_Pack(5, self->jobs[s], self->outcomes[s], self->datas[s],
                                                     self->workers[s], time);
        Py_XDECREF(time);
        if (item == NULL || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(item);
    }
    return list;
}

/* reserve(count): keep at least ``count`` ends (a history of that size): bigger arrays, the ends in order. */
static PyObject *
Ring_reserve(Ring *self, PyObject *arg)
{
    Py_ssize_t count = PyLong_AsSsize_t(arg);
    if (count == -1 && PyErr_Occurred())
        return NULL;
    if (count <= self->size)
        Py_RETURN_NONE;
    PyObject **jobs, **outcomes, **datas, **workers;
    double *times;
    char *hooked;
    if (new_arrays(count, &jobs, &outcomes, &datas, &workers, &times, &hooked) < 0)
        return NULL;
    Py_ssize_t kept = 0, a, b;
    long long position = (long long)self->first + self->index;
    if (Ring_span(self, 0, position, &a, &b)) {
        for (Py_ssize_t k = a; k < b; k++) {
            Py_ssize_t s = Ring_slot(self, k);
            if (self->jobs[s] == NULL)
                continue;
            /* moved: the new arrays take the references */
            jobs[kept] = self->jobs[s];
            outcomes[kept] = self->outcomes[s];
            datas[kept] = self->datas[s];
            workers[kept] = self->workers[s];
            times[kept] = self->times[s];
            hooked[kept] = self->hooked[s];
            self->jobs[s] = self->outcomes[s] = self->datas[s] = self->workers[s] = NULL;
            kept++;
        }
    }
    Ring_free_arrays(self);
    self->jobs = jobs;
    self->outcomes = outcomes;
    self->datas = datas;
    self->workers = workers;
    self->times = times;
    self->hooked = hooked;
    self->first = (Py_ssize_t)(position - kept);
    self->index = kept;
    self->size = count;
    Py_RETURN_NONE;
}

/* watch(classify, on_hooked): hooks from now on (``Ring_hooked``); watch(None, None): none. */
static PyObject *
Ring_watch(Ring *self, PyObject *args)
{
    PyObject *classify, *on_hooked;
    if (!PyArg_ParseTuple(args, "OO", &classify, &on_hooked))
        return NULL;
    if (classify == Py_None) {
        Py_CLEAR(self->classify);
        Py_CLEAR(self->on_hooked);
        Py_CLEAR(self->hook_cache);
        Py_RETURN_NONE;
    }
    PyObject *cache = PyDict_New();
    if (cache == NULL)
        return NULL;
    Py_XSETREF(self->classify, Py_NewRef(classify));
    Py_XSETREF(self->on_hooked, Py_NewRef(on_hooked));
    Py_XSETREF(self->hook_cache, cache);
    Py_RETURN_NONE;
}

static PyObject *
Ring_now_method(Ring *self, PyObject *Py_UNUSED(ignored))
{
    return Ring_now(self);
}

static PyObject *Ring_tally(Ring *self, PyObject *args); /* below, with the latency's counts */

static PyMemberDef Ring_members[] = {
    {"index", T_PYSSIZET, offsetof(Ring, index), 0, "the next slot"},
    {"size", T_PYSSIZET, offsetof(Ring, size), READONLY, "slots in the ring"},
    {"first", T_PYSSIZET, offsetof(Ring, first), 0, "ends recorded before slot 0 of this round"},
    {"last_seq", T_LONGLONG, offsetof(Ring, last_seq), 0, "the newest job stamped at submit"},
    {"blank", T_INT, offsetof(Ring, blank), READONLY, "a completed job's payload is dropped as it is recorded"},
    {"hook_armed", T_INT, offsetof(Ring, hook_armed), 0, "a hooked end waits to be read"},
    {NULL},
};

static PyMethodDef Ring_methods[] = {
    {"now", (PyCFunction)Ring_now_method, METH_NOARGS, "The clock."},
    {"view", (PyCFunction)Ring_view, METH_VARARGS,
     "view(start, end, hooked_only=False): the ends start to end as tuples, oldest first."},
    {"reserve", (PyCFunction)Ring_reserve, METH_O, "reserve(count): keep at least count ends."},
    {"watch", (PyCFunction)Ring_watch, METH_VARARGS,
     "watch(classify, on_hooked): mark the ends hooks want; on_hooked() at the first one not yet read."},
    {"tally", (PyCFunction)Ring_tally, METH_VARARGS,
     "tally(start, end, group, bounds): the latency's counts of ends start to end (module tally)."},
    {NULL},
};

static PyTypeObject RingType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gearman_gateway._stamps.Ring",
    .tp_doc = "The ring of ends and the stamping state of one observed scheduler (observing.Ring's fields).",
    .tp_basicsize = sizeof(Ring),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Ring_init,
    .tp_dealloc = (destructor)Ring_dealloc,
    .tp_traverse = (traverseproc)Ring_traverse,
    .tp_clear = (inquiry)Ring_clear,
    .tp_members = Ring_members,
    .tp_methods = Ring_methods,
};

/* ------------------------------------------------------------------ module */

static PyObject *
record(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyObject_TypeCheck(args[0], &RingType)) {
        PyErr_SetString(PyExc_TypeError, "record(ring, job, outcome, data, worker)");
        return NULL;
    }
    if (Ring_record((Ring *)args[0], args[1], args[2], args[3], args[4]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ get and pop of the job tables */

/* dict.get and dict.pop, defined again on the two dict subclasses below: CPython 3.11 specializes a call of
   a method descriptor only when the object's type is exactly the descriptor's class, so dict's own would
   take the generic call path at every ``worker.jobs.get(handle)`` and ``jobs_by_handle.pop(handle, None)``
   of the job path. These do what dict's do. */
static PyObject *
jobs_get(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get(key, default=None)");
        return NULL;
    }
    PyObject *value = PyDict_GetItemWithError(self, args[0]);
    if (value != NULL)
        return Py_NewRef(value);
    if (PyErr_Occurred())
        return NULL;
    return Py_NewRef(nargs == 2 ? args[1] : Py_None);
}

static PyObject *
jobs_pop(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "pop(key[, default])");
        return NULL;
    }
    return _PyDict_Pop(self, args[0], nargs == 2 ? args[1] : NULL);
}

static PyMethodDef jobs_methods[] = {
    {"get", (PyCFunction)(void (*)(void))jobs_get, METH_FASTCALL, "dict.get"},
    {"pop", (PyCFunction)(void (*)(void))jobs_pop, METH_FASTCALL, "dict.pop"},
    {NULL},
};

/* ------------------------------------------------------------------ StampedJobs: the submit stamp */

/* The observed scheduler's ``jobs_by_handle``: a dict that stamps each new job put in it with its submit
   time (started_at 0.0). Every submit puts its new job there, so this replaces a wrapper around
   ``submit``: a C call from the dict store, no call back into Python. A job put back (a dead letter
   requeued, sequence number not newer) keeps its times. */
typedef struct {
    PyDictObject dict;
    Ring *state;
} StampedJobs;

static PyMappingMethods StampedJobs_mapping;

static int
StampedJobs_ass_subscript(StampedJobs *self, PyObject *key, PyObject *value)
{
    Ring *r = self->state;
    if (value != NULL && r != NULL && Py_IS_TYPE(value, r->job_type)) {
        PyObject *seq = SLOT(value, r->seq);
        long long number = seq == NULL ? 0 : PyLong_AsLongLong(seq);
        if (number == -1 && PyErr_Occurred())
            return -1;
        if (number > r->last_seq) {
            r->last_seq = number;
            if (set_slot(value, r->job_type, r->submitted_at, "submitted_at", Ring_now(r)) < 0 ||
                set_slot(value, r->job_type, r->started_at, "started_at", Py_NewRef(zero_float)) < 0)
                return -1;
        }
    }
    return PyDict_Type.tp_as_mapping->mp_ass_subscript((PyObject *)self, key, value);
}

static int
StampedJobs_traverse(StampedJobs *self, visitproc visit, void *arg)
{
    Py_VISIT(self->state);
    return PyDict_Type.tp_traverse((PyObject *)self, visit, arg);
}

static int
StampedJobs_clear(StampedJobs *self)
{
    Py_CLEAR(self->state);
    return PyDict_Type.tp_clear((PyObject *)self);
}

static void
StampedJobs_dealloc(StampedJobs *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->state);
    PyDict_Type.tp_dealloc((PyObject *)self);
}

static PyTypeObject StampedJobsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gearman_gateway._stamps.StampedJobs",
    .tp_doc = "jobs_by_handle of an observed scheduler: stamps each new job's submit time as it is put in.",
    .tp_basicsize = sizeof(StampedJobs),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DICT_SUBCLASS,
    .tp_as_mapping = &StampedJobs_mapping,
    .tp_methods = jobs_methods,
    .tp_traverse = (traverseproc)StampedJobs_traverse,
    .tp_clear = (inquiry)StampedJobs_clear,
    .tp_dealloc = (destructor)StampedJobs_dealloc,
};

/* stamped_jobs(ring, jobs) -> a StampedJobs holding ``jobs``' items, stamping with ``ring``'s clock. */
static PyObject *
stamped_jobs(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyObject_TypeCheck(args[0], &RingType) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "stamped_jobs(ring, jobs: dict)");
        return NULL;
    }
    StampedJobs *table = (StampedJobs *)PyObject_CallNoArgs((PyObject *)&StampedJobsType);
    if (table == NULL)
        return NULL;
    if (PyDict_Update((PyObject *)table, args[1]) < 0) {
        Py_DECREF(table);
        return NULL;
    }
    table->state = (Ring *)Py_NewRef(args[0]);
    return (PyObject *)table;
}

/* ------------------------------------------------------------------ WorkerJobs: the start and the end */

/* A worker's ``jobs`` in an observed scheduler (its ``_worker_jobs``): a dict that stamps a job's start as
   ``_start`` puts it in and records its end as WORK_COMPLETE deletes it (``del worker.jobs[handle]``, the
   only ``del`` of the job path: a job let go otherwise, requeued or failed, leaves by ``pop``). So neither
   transition is wrapped: a C call from the dict store, no call back into Python. */
typedef struct {
    PyDictObject dict;
    Ring *state;
} WorkerJobs;

static PyMappingMethods WorkerJobs_mapping;

static int
WorkerJobs_ass_subscript(WorkerJobs *self, PyObject *key, PyObject *value)
{
    Ring *r = self->state;
    if (value != NULL) {
        if (r != NULL && set_slot(value, r->job_type, r->started_at, "started_at", Ring_now(r)) < 0)
            return -1;
        return PyDict_Type.tp_as_mapping->mp_ass_subscript((PyObject *)self, key, value);
    }
    PyObject *job = _PyDict_Pop((PyObject *)self, key, NULL); /* one lookup; KeyError if missing, as del */
    if (job == NULL)
        return -1;
    if (r == NULL) {
        Py_DECREF(job);
        return 0;
    }
    int result = -1;
    PyObject *worker = get_slot(job, r->job_type, r->worker, "worker");
    if (worker != NULL) {
        /* done: the ring keeps the job, not its payload (a bounded scheduler drops it once counted) */
        if ((!r->blank || set_slot(job, r->job_type, r->data, "data", Py_NewRef(empty_bytes)) == 0) &&
            Ring_record(r, job, r->complete, Py_None, worker) == 0)
            result = 0;
        Py_DECREF(worker);
    }
    Py_DECREF(job);
    return result;
}

static int
WorkerJobs_traverse(WorkerJobs *self, visitproc visit, void *arg)
{
    Py_VISIT(self->state);
    return PyDict_Type.tp_traverse((PyObject *)self, visit, arg);
}

static int
WorkerJobs_clear(WorkerJobs *self)
{
    Py_CLEAR(self->state);
    return PyDict_Type.tp_clear((PyObject *)self);
}

static void
WorkerJobs_dealloc(WorkerJobs *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->state);
    PyDict_Type.tp_dealloc((PyObject *)self);
}

static PyTypeObject WorkerJobsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gearman_gateway._stamps.WorkerJobs",
    .tp_doc = "A worker's jobs in an observed scheduler: stamps a job's start as it is put in, records its end "
              "as it is deleted.",
    .tp_basicsize = sizeof(WorkerJobs),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DICT_SUBCLASS,
    .tp_as_mapping = &WorkerJobs_mapping,
    .tp_methods = jobs_methods,
    .tp_traverse = (traverseproc)WorkerJobs_traverse,
    .tp_clear = (inquiry)WorkerJobs_clear,
    .tp_dealloc = (destructor)WorkerJobs_dealloc,
};

/* worker_jobs(ring) -> an empty WorkerJobs stamping with ``ring``'s clock and recording into it. */
static PyObject *
worker_jobs(PyObject *Py_UNUSED(module), PyObject *ring)
{
    if (!PyObject_TypeCheck(ring, &RingType)) {
        PyErr_SetString(PyExc_TypeError, "worker_jobs(ring)");
        return NULL;
    }
    WorkerJobs *table = (WorkerJobs *)PyObject_CallNoArgs((PyObject *)&WorkerJobsType);
    if (table == NULL)
        return NULL;
    table->state = (Ring *)Py_NewRef(ring);
    return (PyObject *)table;
}

/* ------------------------------------------------------------------ the latency histograms' counts */

#define MAX_BOUNDS 128

/* The bucket of time t: the first bound >= t (bucket i holds bounds[i-1] < t <= bounds[i]; the last one
   the times past every bound), as latency's sort-and-bisect counts them. */
static inline Py_ssize_t
bucket(const double *bounds, Py_ssize_t nbounds, double t)
{
    Py_ssize_t low = 0, high = nbounds;
    while (low < high) {
        Py_ssize_t mid = (low + high) / 2;
        if (bounds[mid] < t)
            low = mid + 1;
        else
            high = mid;
    }
    return low;
}

/* stats.<name> (a list of ints, one per bucket) += counts; stats.<sum_name> += total. */
static int
add_counts(PyObject *stats, const char *name, const char *sum_name, const long long *counts, Py_ssize_t size,
           double total)
{
    PyObject *list = PyObject_GetAttrString(stats, name);
    if (list == NULL)
        return -1;
    if (!PyList_CheckExact(list) || PyList_GET_SIZE(list) != size) {
        Py_DECREF(list);
        PyErr_Format(PyExc_ValueError, "stats.%s must be a list of %zd counts", name, size);
        return -1;
    }
    for (Py_ssize_t i = 0; i < size; i++) {
        if (!counts[i])
            continue;
        PyObject *more = PyLong_FromLongLong(counts[i]);
        PyObject *sum = more == NULL ? NULL : PyNumber_Add(PyList_GET_ITEM(list, i), more);
        Py_XDECREF(more);
        if (sum == NULL) {
            Py_DECREF(list);
            return -1;
        }
        PyList_SetItem(list, i, sum);
    }
    Py_DECREF(list);
    PyObject *old = PyObject_GetAttrString(stats, sum_name);
    if (old == NULL)
        return -1;
    PyObject *more = PyFloat_FromDouble(total);
    PyObject *sum = more == NULL ? NULL : PyNumber_Add(old, more);
    Py_DECREF(old);
    Py_XDECREF(more);
    if (sum == NULL)
        return -1;
    int result = PyObject_SetAttrString(stats, sum_name, sum);
    Py_DECREF(sum);
    return result;
}

/* Functions counted at once within one second of ends (more: their counts are added and they start over). */
#define MAX_GROUPS 16

typedef struct {
    PyObject *stats;    /* the function's stats for this second (owned) */
    PyObject *function; /* borrowed */
    long long wait[MAX_BOUNDS + 1], run[MAX_BOUNDS + 1];
    double wait_sum, run_sum;
} Group;

/* Add every group's counts to its stats, and forget the groups. */
static int
flush_groups(Group *groups, int *ngroups, Py_ssize_t size)
{
    int result = 0;
    for (int k = 0; k < *ngroups; k++) {
        Group *g = &groups[k];
        if (result == 0)
            result = add_counts(g->stats, "wait", "wait_sum", g->wait, size, g->wait_sum);
        if (result == 0)
            result = add_counts(g->stats, "run", "run_sum", g->run, size, g->run_sum);
        Py_CLEAR(g->stats);
    }
    *ngroups = 0;
    return result;
}

/* One batch of ends being counted: per function and second of end, counts summed in C. */
typedef struct {
    PyObject *group;
    PyTypeObject *job_type;
    Py_ssize_t o_function, o_submitted, o_started;
    double bounds[MAX_BOUNDS];
    Py_ssize_t nbounds;
    Group groups[MAX_GROUPS];
    int ngroups;
    long long second;
} Tally;

/* Ready to count into ``group``'s stats with ``bounds`` (a tuple of floats); -1 with an exception. */
static int
tally_start(Tally *t, PyObject *group, PyTypeObject *job_type, PyObject *bounds_tuple)
{
    if (!PyTuple_CheckExact(bounds_tuple)) {
        PyErr_SetString(PyExc_TypeError, "bounds must be a tuple");
        return -1;
    }
    t->group = group;
    t->job_type = job_type;
    t->ngroups = 0;
    t->second = 0;
    t->nbounds = PyTuple_GET_SIZE(bounds_tuple);
    if (t->nbounds > MAX_BOUNDS) {
        PyErr_SetString(PyExc_ValueError, "at most 128 bounds");
        return -1;
    }
    for (Py_ssize_t i = 0; i < t->nbounds; i++) {
        t->bounds[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(bounds_tuple, i));
        if (t->bounds[i] == -1.0 && PyErr_Occurred())
            return -1;
    }
    if ((t->o_function = slot_offset(job_type, "function")) < 0 ||
        (t->o_submitted = slot_offset(job_type, "submitted_at")) < 0 ||
        (t->o_started = slot_offset(job_type, "started_at")) < 0)
        return -1;
    return 0;
}

/* A float slot of the job as a double (-1.0 with an exception on error). */
static inline double
double_slot(PyObject *job, PyTypeObject *type, Py_ssize_t offset, const char *name)
{
    if (Py_IS_TYPE(job, type)) { /* the usual: a float in the job's slot, read in place */
        PyObject *slot = SLOT(job, offset);
        if (slot != NULL && PyFloat_CheckExact(slot))
            return PyFloat_AS_DOUBLE(slot);
    }
    PyObject *value = get_slot(job, type, offset, name);
    if (value == NULL)
        return -1.0;
    double result = PyFloat_AsDouble(value);
    Py_DECREF(value);
    return result;
}

/* Count one end: the job and the time it ended. A job that never ran (started_at 0.0: cancelled, dropped
   while queued) has no wait and no run time. */
static int
tally_one(Tally *t, PyObject *job, double finish)
{
    double start = double_slot(job, t->job_type, t->o_started, "started_at");
    if (start == -1.0 && PyErr_Occurred())
        return -1;
    if (start == 0.0)
        return 0;
    double submit = double_slot(job, t->job_type, t->o_submitted, "submitted_at");
    if (submit == -1.0 && PyErr_Occurred())
        return -1;
    PyObject *function = get_slot(job, t->job_type, t->o_function, "function");
    if (function == NULL)
        return -1;
    Py_DECREF(function); /* borrowed from here on: the job holds it, and the caller the job */
    Py_ssize_t size = t->nbounds + 1;
    long long this_second = (long long)finish; /* as int(): toward zero */
    if (t->ngroups && this_second != t->second) { /* a new second: every function's stats roll */
        if (flush_groups(t->groups, &t->ngroups, size) < 0)
            return -1;
    }
    t->second = this_second;
    Group *g = NULL;
    for (int k = t->ngroups - 1; k >= 0; k--) {
        if (t->groups[k].function == function) {
            g = &t->groups[k];
            break;
        }
    }
    if (g == NULL) {
        if (t->ngroups == MAX_GROUPS && flush_groups(t->groups, &t->ngroups, size) < 0)
            return -1;
        g = &t->groups[t->ngroups];
        PyObject *py_second = PyLong_FromLongLong(t->second);
        g->stats = py_second == NULL ? NULL : PyObject_CallFunctionObjArgs(t->group, function, py_second, NULL);
        Py_XDECREF(py_second);
        if (g->stats == NULL)
            return -1;
        t->ngroups++;
        g->function = function;
        memset(g->wait, 0, sizeof(g->wait[0]) * size);
        memset(g->run, 0, sizeof(g->run[0]) * size);
        g->wait_sum = g->run_sum = 0.0;
    }
    double wait = start - submit, run = finish - start;
    g->wait[bucket(t->bounds, t->nbounds, wait)]++;
    g->run[bucket(t->bounds, t->nbounds, run)]++;
    g->wait_sum += wait;
    g->run_sum += run;
    return 0;
}

/* The counts into their stats (ok: 0 so far), or on error the groups forgotten; None or NULL. */
static PyObject *
tally_end(Tally *t, int ok)
{
    if (ok == 0 && flush_groups(t->groups, &t->ngroups, t->nbounds + 1) == 0)
        Py_RETURN_NONE;
    for (int k = 0; k < t->ngroups; k++)
        Py_XDECREF(t->groups[k].stats);
    return NULL;
}

/* tally(ended, job_type, group, bounds): count the queue wait and run time of each end (a list of
   ``Ended`` tuples) whose job ran into its stats, ``group(function, second)`` (called once per function
   and second of end, in the order of the ends: it rolls the window). No Python object per job
   (latency.Latency's Python code is the fallback). */
static PyObject *
tally(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyList_CheckExact(args[0]) || !PyType_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "tally(ended: list, job_type: type, group, bounds: tuple)");
        return NULL;
    }
    Tally t;
    if (tally_start(&t, args[2], (PyTypeObject *)args[1], args[3]) < 0)
        return NULL;
    PyObject *ended = args[0];
    int ok = 0;
    for (Py_ssize_t i = 0; ok == 0 && i < PyList_GET_SIZE(ended); i++) {
        PyObject *end = PyList_GET_ITEM(ended, i);
        if (!PyTuple_CheckExact(end) || PyTuple_GET_SIZE(end) != 5) {
            PyErr_SetString(PyExc_TypeError, "an end is a tuple of 5");
            ok = -1;
            break;
        }
        Py_INCREF(end);
        double finish = PyFloat_AsDouble(PyTuple_GET_ITEM(end, 4));
        ok = finish == -1.0 && PyErr_Occurred() ? -1 : tally_one(&t, PyTuple_GET_ITEM(end, 0), finish);
        Py_DECREF(end);
    }
    return tally_end(&t, ok);
}

/* Ring.tally(start, end, group, bounds): the same counts, of the ends start to end read from the ring's
   arrays (no tuple per end). The ring's jobs stay in it while counted: ``group`` must not record ends. */
static PyObject *
Ring_tally(Ring *self, PyObject *args)
{
    long long start, end;
    PyObject *group, *bounds;
    if (!PyArg_ParseTuple(args, "LLOO", &start, &end, &group, &bounds))
        return NULL;
    Tally t;
    if (self->job_type == NULL || tally_start(&t, group, self->job_type, bounds) < 0)
        return NULL;
    Py_ssize_t a, b;
    int ok = 0;
    if (Ring_span(self, start, end, &a, &b)) {
        for (Py_ssize_t k = a; ok == 0 && k < b; k++) {
            Py_ssize_t s = Ring_slot(self, k);
            PyObject *job = self->jobs[s];
            if (job == NULL)
                continue;
            Py_INCREF(job);
            ok = tally_one(&t, job, self->times[s]);
            Py_DECREF(job);
        }
    }
    return tally_end(&t, ok);
}

static PyMethodDef module_methods[] = {
    {"stamped_jobs", (PyCFunction)(void (*)(void))stamped_jobs, METH_FASTCALL,
     "stamped_jobs(ring, jobs) -> a dict of jobs that stamps each new job's submit time as it is put in."},
    {"record", (PyCFunction)(void (*)(void))record, METH_FASTCALL,
     "record(ring, job, outcome, data, worker): one end into the ring, stamped with its clock."},
    {"worker_jobs", (PyCFunction)worker_jobs, METH_O,
     "worker_jobs(ring) -> a worker's jobs dict that stamps starts and records WORK_COMPLETE's ends."},
    {"tally", (PyCFunction)(void (*)(void))tally, METH_FASTCALL,
     "tally(ended, job_type, group, bounds): count each end's queue wait and run time into group(function, "
     "second)'s stats."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "gearman_gateway._stamps",
    .m_doc = "The job observers' stamps and ring in C (optional; scheduler/observing.py falls back to Python).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__stamps(void)
{
    StampedJobs_mapping.mp_ass_subscript = (objobjargproc)StampedJobs_ass_subscript;
    StampedJobsType.tp_base = &PyDict_Type;
    WorkerJobs_mapping.mp_ass_subscript = (objobjargproc)WorkerJobs_ass_subscript;
    WorkerJobsType.tp_base = &PyDict_Type;
    if (PyType_Ready(&RingType) < 0 || PyType_Ready(&StampedJobsType) < 0 || PyType_Ready(&WorkerJobsType) < 0)
        return NULL;
    PyObject *time_module = PyImport_ImportModule("time");
    if (time_module == NULL)
        return NULL;
    time_time = PyObject_GetAttrString(time_module, "time");
    Py_DECREF(time_module);
    if (time_time == NULL)
        return NULL;
    empty_bytes = PyBytes_FromStringAndSize(NULL, 0);
    zero_float = PyFloat_FromDouble(0.0);
    if (empty_bytes == NULL || zero_float == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Ring", (PyObject *)&RingType) < 0 ||
        PyModule_AddObjectRef(m, "WorkerJobs", (PyObject *)&WorkerJobsType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
