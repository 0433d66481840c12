/* The job observers' stamps in C: an optional accelerator for gearman_gateway/scheduler/observing.py.

   With observers, three transitions run per job (submit, start, WORK_COMPLETE) and each must stamp the
   job with the clock, the last one also recording the end in a ring. In Python each wrapper is a frame, a
   clock call and a few attribute stores: ~1,000-2,500 instructions a transition, more than issue 19's
   +3 % budget for all three. Here a wrapper is an object whose type has vectorcall and
   Py_TPFLAGS_METHOD_DESCRIPTOR (a method call does not bind it): it calls the Scheduler's method, then
   reads the clock (clock_gettime when the clock is time.time) and writes the job's slots directly.

   observing.py keeps the pure-Python wrappers as the fallback when this module is not built; both share
   the ``Ring`` state (its fields are this type's members) and behave the same. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <time.h>

static PyObject *time_time; /* time.time: a clock read as clock_gettime(CLOCK_REALTIME) */

/* ------------------------------------------------------------------ Ring: the state the wrappers share */

typedef struct {
    PyObject_HEAD
    PyObject *ring;      /* list of ends, ``size`` slots */
    Py_ssize_t index;    /* the next slot */
    Py_ssize_t size;
    Py_ssize_t first;    /* ends recorded before slot 0 of this round */
    long long last_seq;  /* the newest job sequence number stamped at submit */
    PyObject *read;      /* the clock: NULL for time.time */
    PyObject *want_turn; /* [bool]: an eager observer waits for the turn's end to be armed */
    PyObject *arm;       /* called when want_turn[0] is true after an end */
    PyObject *wrap;      /* called when the ring is full (index == size) */
    PyObject *complete;  /* the outcome of WORK_COMPLETE */
    PyTypeObject *job_type;
    Py_ssize_t seq, worker, data, submitted_at, started_at; /* Job's slot offsets */
    PyTypeObject *worker_type;
    Py_ssize_t jobs; /* Worker.jobs offset */
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

static int
Ring_init(Ring *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"read", "want_turn", "arm", "wrap", "complete", "job_type", "worker_type", "size", NULL};
    PyObject *read, *want_turn, *arm, *wrap, *complete;
    PyTypeObject *job_type, *worker_type;
    Py_ssize_t size;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!OOUO!O!n", kwlist, &read, &PyList_Type, &want_turn, &arm,
                                     &wrap, &complete, &PyType_Type, &job_type, &PyType_Type, &worker_type, &size))
        return -1;
    if (size <= 0 || PyList_GET_SIZE(want_turn) != 1) {
        PyErr_SetString(PyExc_ValueError, "size must be positive and want_turn a list of one");
        return -1;
    }
    if ((self->seq = slot_offset(job_type, "seq")) < 0 || (self->worker = slot_offset(job_type, "worker")) < 0 ||
        (self->data = slot_offset(job_type, "data")) < 0 ||
        (self->submitted_at = slot_offset(job_type, "submitted_at")) < 0 ||
        (self->started_at = slot_offset(job_type, "started_at")) < 0 ||
        (self->jobs = slot_offset(worker_type, "jobs")) < 0)
        return -1;
    PyObject *ring = PyList_New(size);
    if (ring == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < size; i++)
        PyList_SET_ITEM(ring, i, Py_NewRef(Py_None));
    Py_XSETREF(self->ring, ring);
    self->index = 0;
    self->size = size;
    self->first = 0;
    self->last_seq = 0;
    Py_XSETREF(self->read, read == time_time ? NULL : Py_NewRef(read));
    Py_XSETREF(self->want_turn, Py_NewRef(want_turn));
    Py_XSETREF(self->arm, Py_NewRef(arm));
    Py_XSETREF(self->wrap, Py_NewRef(wrap));
    Py_XSETREF(self->complete, Py_NewRef(complete));
    Py_XSETREF(self->job_type, (PyTypeObject *)Py_NewRef(job_type));
    Py_XSETREF(self->worker_type, (PyTypeObject *)Py_NewRef(worker_type));
    return 0;
}

static int
Ring_traverse(Ring *self, visitproc visit, void *arg)
{
    Py_VISIT(self->ring);
    Py_VISIT(self->read);
    Py_VISIT(self->want_turn);
    Py_VISIT(self->arm);
    Py_VISIT(self->wrap);
    Py_VISIT(self->job_type);
    Py_VISIT(self->worker_type);
    return 0;
}

static int
Ring_clear(Ring *self)
{
    Py_CLEAR(self->ring);
    Py_CLEAR(self->read);
    Py_CLEAR(self->want_turn);
    Py_CLEAR(self->arm);
    Py_CLEAR(self->wrap);
    Py_CLEAR(self->complete);
    Py_CLEAR(self->job_type);
    Py_CLEAR(self->worker_type);
    return 0;
}

static void
Ring_dealloc(Ring *self)
{
    PyObject_GC_UnTrack(self);
    Ring_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The clock, as a new float. */
static inline PyObject *
Ring_now(Ring *self)
{
    if (self->read != NULL)
        return PyObject_CallNoArgs(self->read);
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyFloat_FromDouble((double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
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

/* One end into the ring; the caller's references stay theirs. */
static int
Ring_record(Ring *self, PyObject *job, PyObject *outcome, PyObject *data, PyObject *worker)
{
    PyObject *now = Ring_now(self);
    if (now == NULL)
        return -1;
    PyObject *end = PyTuple_New(5);
    if (end == NULL) {
        Py_DECREF(now);
        return -1;
    }
    PyTuple_SET_ITEM(end, 0, Py_NewRef(job));
    PyTuple_SET_ITEM(end, 1, Py_NewRef(outcome));
    PyTuple_SET_ITEM(end, 2, Py_NewRef(data));
    PyTuple_SET_ITEM(end, 3, Py_NewRef(worker));
    PyTuple_SET_ITEM(end, 4, now);
    PyObject *ring = self->ring;
    if (!PyList_CheckExact(ring) || self->index < 0 || self->index >= PyList_GET_SIZE(ring)) {
        Py_DECREF(end);
        PyErr_SetString(PyExc_RuntimeError, "the ring's index is out of its list");
        return -1;
    }
    PyObject *old = PyList_GET_ITEM(ring, self->index);
    PyList_SET_ITEM(ring, self->index, end);
    Py_DECREF(old);
    self->index++;
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

static PyObject *
Ring_now_method(Ring *self, PyObject *Py_UNUSED(ignored))
{
    return Ring_now(self);
}

static PyMemberDef Ring_members[] = {
    {"ring", T_OBJECT_EX, offsetof(Ring, ring), 0, "the ends, a list of ``size`` slots"},
    {"index", T_PYSSIZET, offsetof(Ring, index), 0, "the next slot"},
    {"size", T_PYSSIZET, offsetof(Ring, size), 0, "slots in the ring"},
    {"first", T_PYSSIZET, offsetof(Ring, first), 0, "ends recorded before slot 0 of this round"},
    {"last_seq", T_LONGLONG, offsetof(Ring, last_seq), 0, "the newest job stamped at submit"},
    {NULL},
};

static PyMethodDef Ring_methods[] = {
    {"now", (PyCFunction)Ring_now_method, METH_NOARGS, "The clock."},
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

/* ------------------------------------------------------------------ Wrapper: one wrapped transition */

enum { SUBMIT, START, COMPLETE };

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    int kind;
    PyObject *base; /* the Scheduler's method (a function taking self first) */
    Ring *state;
} Wrapper;

static PyObject *empty_bytes;

static PyObject *
stamp_submit(Wrapper *w, PyObject *job)
{
    Ring *r = w->state;
    PyObject *seq = get_slot(job, r->job_type, r->seq, "seq");
    if (seq == NULL)
        return NULL;
    long long value = PyLong_AsLongLong(seq);
    Py_DECREF(seq);
    if (value == -1 && PyErr_Occurred())
        return NULL;
    if (value <= r->last_seq) /* joined to an existing job */
        return job;
    r->last_seq = value;
    PyObject *worker = get_slot(job, r->job_type, r->worker, "worker");
    if (worker == NULL)
        return NULL;
    int running = worker != Py_None;
    Py_DECREF(worker);
    if (!running) {
        if (set_slot(job, r->job_type, r->submitted_at, "submitted_at", Ring_now(r)) < 0 ||
            set_slot(job, r->job_type, r->started_at, "started_at", PyFloat_FromDouble(0.0)) < 0)
            return NULL;
    } else { /* a held grab took it within submit (start stamped it) */
        if (set_slot(job, r->job_type, r->submitted_at, "submitted_at",
                     get_slot(job, r->job_type, r->started_at, "started_at")) < 0)
            return NULL;
    }
    return job;
}

static PyObject *
Wrapper_vectorcall(Wrapper *w, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Ring *r = w->state;
    if (w->kind == COMPLETE) { /* work_complete(self, worker, handle, data) */
        PyObject *job = NULL, *worker = NULL;
        if (kwnames != NULL) {
            PyErr_SetString(PyExc_TypeError, "work_complete takes positional arguments only");
            return NULL;
        }
        if (nargs >= 3) {
            worker = args[1];
            PyObject *jobs = get_slot(worker, r->worker_type, r->jobs, "jobs");
            if (jobs == NULL)
                return NULL;
            if (PyDict_CheckExact(jobs)) {
                job = PyDict_GetItemWithError(jobs, args[2]);
                Py_XINCREF(job);
            } else {
                job = PyObject_CallMethod(jobs, "get", "O", args[2]);
                if (job == Py_None)
                    Py_CLEAR(job);
            }
            Py_DECREF(jobs);
            if (job == NULL && PyErr_Occurred())
                return NULL;
            Py_INCREF(worker);
        }
        PyObject *result = PyObject_Vectorcall(w->base, args, nargsf, kwnames);
        if (result != NULL && job != NULL) {
            /* done: the ring keeps the job, not its payload; the result is the client's, not kept */
            if (set_slot(job, r->job_type, r->data, "data", Py_NewRef(empty_bytes)) < 0 ||
                Ring_record(r, job, r->complete, Py_None, worker) < 0)
                Py_CLEAR(result);
        }
        Py_XDECREF(job);
        Py_XDECREF(worker);
        return result;
    }
    PyObject *result = PyObject_Vectorcall(w->base, args, nargsf, kwnames);
    if (result == NULL)
        return NULL;
    if (w->kind == SUBMIT) {
        if (stamp_submit(w, result) == NULL)
            Py_CLEAR(result);
        return result;
    }
    /* START: _start(self, job, worker) */
    if (nargs >= 2 && set_slot(args[1], r->job_type, r->started_at, "started_at", Ring_now(r)) < 0)
        Py_CLEAR(result);
    return result;
}

static PyObject *
Wrapper_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"kind", "base", "state", NULL};
    const char *kind;
    PyObject *base;
    Ring *state;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sOO!", kwlist, &kind, &base, &RingType, &state))
        return NULL;
    int k;
    if (strcmp(kind, "submit") == 0)
        k = SUBMIT;
    else if (strcmp(kind, "start") == 0)
        k = START;
    else if (strcmp(kind, "complete") == 0)
        k = COMPLETE;
    else {
        PyErr_SetString(PyExc_ValueError, "kind is submit, start or complete");
        return NULL;
    }
    Wrapper *w = (Wrapper *)type->tp_alloc(type, 0);
    if (w == NULL)
        return NULL;
    w->vectorcall = (vectorcallfunc)Wrapper_vectorcall;
    w->kind = k;
    w->base = Py_NewRef(base);
    w->state = (Ring *)Py_NewRef(state);
    return (PyObject *)w;
}

static int
Wrapper_traverse(Wrapper *w, visitproc visit, void *arg)
{
    Py_VISIT(w->base);
    Py_VISIT(w->state);
    return 0;
}

static int
Wrapper_clear(Wrapper *w)
{
    Py_CLEAR(w->base);
    Py_CLEAR(w->state);
    return 0;
}

static void
Wrapper_dealloc(Wrapper *w)
{
    PyObject_GC_UnTrack(w);
    Wrapper_clear(w);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static PyObject *
Wrapper_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None)
        return Py_NewRef(self);
    return PyMethod_New(self, obj);
}

static PyObject *
Wrapper_doc(Wrapper *w, void *Py_UNUSED(closure))
{
    return PyObject_GetAttrString(w->base, "__doc__");
}

static PyMemberDef Wrapper_members[] = {
    {"__wrapped__", T_OBJECT, offsetof(Wrapper, base), READONLY, "the Scheduler's method"},
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(Wrapper, vectorcall), READONLY},
    {NULL},
};

static PyGetSetDef Wrapper_getset[] = {
    {"__doc__", (getter)Wrapper_doc, NULL, NULL, NULL},
    {NULL},
};

static PyTypeObject WrapperType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gearman_gateway._stamps.Wrapper",
    .tp_basicsize = sizeof(Wrapper),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_new = Wrapper_new,
    .tp_dealloc = (destructor)Wrapper_dealloc,
    .tp_traverse = (traverseproc)Wrapper_traverse,
    .tp_clear = (inquiry)Wrapper_clear,
    .tp_vectorcall_offset = offsetof(Wrapper, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_descr_get = Wrapper_get,
    .tp_members = Wrapper_members,
    .tp_getset = Wrapper_getset,
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
                set_slot(value, r->job_type, r->started_at, "started_at", PyFloat_FromDouble(0.0)) < 0)
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

/* tally(ended, job_type, group, bounds): count the queue wait and run time of each end whose job ran
   (started_at not 0.0) into its stats, ``group(function, second)`` (called once per function and second of
   end, in the order of the ends: it rolls the window). No Python object per job (latency.Latency's
   Python code is the fallback). */
static PyObject *
tally(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyList_CheckExact(args[0]) || !PyType_Check(args[1]) || !PyTuple_CheckExact(args[3])) {
        PyErr_SetString(PyExc_TypeError, "tally(ended: list, job_type: type, group, bounds: tuple)");
        return NULL;
    }
    PyObject *ended = args[0], *group = args[2], *bounds_tuple = args[3];
    PyTypeObject *job_type = (PyTypeObject *)args[1];
    Py_ssize_t nbounds = PyTuple_GET_SIZE(bounds_tuple);
    if (nbounds > MAX_BOUNDS) {
        PyErr_SetString(PyExc_ValueError, "at most 128 bounds");
        return NULL;
    }
    double bounds[MAX_BOUNDS];
    for (Py_ssize_t i = 0; i < nbounds; i++) {
        bounds[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(bounds_tuple, i));
        if (bounds[i] == -1.0 && PyErr_Occurred())
            return NULL;
    }
    Py_ssize_t o_function, o_submitted, o_started;
    if ((o_function = slot_offset(job_type, "function")) < 0 ||
        (o_submitted = slot_offset(job_type, "submitted_at")) < 0 ||
        (o_started = slot_offset(job_type, "started_at")) < 0)
        return NULL;
    Group groups[MAX_GROUPS];
    int ngroups = 0;
    long long second = 0;
    Py_ssize_t n = PyList_GET_SIZE(ended);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *end = PyList_GET_ITEM(ended, i);
        if (!PyTuple_CheckExact(end) || PyTuple_GET_SIZE(end) != 5) {
            PyErr_SetString(PyExc_TypeError, "an end is a tuple of 5");
            goto error;
        }
        PyObject *job = PyTuple_GET_ITEM(end, 0);
        PyObject *started = get_slot(job, job_type, o_started, "started_at");
        if (started == NULL)
            goto error;
        double start = PyFloat_AsDouble(started);
        Py_DECREF(started);
        if (start == -1.0 && PyErr_Occurred())
            goto error;
        if (start == 0.0) /* never ran (cancelled, dropped while queued): no wait, no run time */
            continue;
        PyObject *submitted = get_slot(job, job_type, o_submitted, "submitted_at");
        if (submitted == NULL)
            goto error;
        double submit = PyFloat_AsDouble(submitted);
        Py_DECREF(submitted);
        double finish = PyFloat_AsDouble(PyTuple_GET_ITEM(end, 4));
        if ((submit == -1.0 || finish == -1.0) && PyErr_Occurred())
            goto error;
        PyObject *function = get_slot(job, job_type, o_function, "function");
        if (function == NULL)
            goto error;
        Py_DECREF(function); /* borrowed from here on: the job in ``ended`` holds it */
        long long this_second = (long long)finish; /* as int(): toward zero */
        if (ngroups && this_second != second) { /* a new second: every function's stats roll */
            if (flush_groups(groups, &ngroups, nbounds + 1) < 0)
                goto error;
        }
        second = this_second;
        Group *g = NULL;
        for (int k = ngroups - 1; k >= 0; k--) {
            if (groups[k].function == function) {
                g = &groups[k];
                break;
            }
        }
        if (g == NULL) {
            if (ngroups == MAX_GROUPS && flush_groups(groups, &ngroups, nbounds + 1) < 0)
                goto error;
            g = &groups[ngroups];
            PyObject *py_second = PyLong_FromLongLong(second);
            g->stats = py_second == NULL ? NULL : PyObject_CallFunctionObjArgs(group, function, py_second, NULL);
            Py_XDECREF(py_second);
            if (g->stats == NULL)
                goto error;
            ngroups++;
            g->function = function;
            memset(g->wait, 0, sizeof(g->wait[0]) * (nbounds + 1));
            memset(g->run, 0, sizeof(g->run[0]) * (nbounds + 1));
            g->wait_sum = g->run_sum = 0.0;
        }
        double wait = start - submit, run = finish - start;
        g->wait[bucket(bounds, nbounds, wait)]++;
        g->run[bucket(bounds, nbounds, run)]++;
        g->wait_sum += wait;
        g->run_sum += run;
    }
    if (flush_groups(groups, &ngroups, nbounds + 1) < 0)
        return NULL;
    Py_RETURN_NONE;
error:
    for (int k = 0; k < ngroups; k++)
        Py_XDECREF(groups[k].stats);
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"stamped_jobs", (PyCFunction)(void (*)(void))stamped_jobs, METH_FASTCALL,
     "stamped_jobs(ring, jobs) -> a dict of jobs that stamps each new job's submit time as it is put in."},
    {"record", (PyCFunction)(void (*)(void))record, METH_FASTCALL,
     "record(ring, job, outcome, data, worker): one end into the ring, stamped with its clock."},
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
    if (PyType_Ready(&RingType) < 0 || PyType_Ready(&WrapperType) < 0 || PyType_Ready(&StampedJobsType) < 0)
        return NULL;
    PyObject *time_module = PyImport_ImportModule("time");
    if (time_module == NULL)
        return NULL;
    time_time = PyObject_GetAttrString(time_module, "time");
    Py_DECREF(time_module);
    if (time_time == NULL)
        return NULL;
    empty_bytes = PyBytes_FromStringAndSize(NULL, 0);
    if (empty_bytes == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Ring", (PyObject *)&RingType) < 0 ||
        PyModule_AddObjectRef(m, "Wrapper", (PyObject *)&WrapperType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
