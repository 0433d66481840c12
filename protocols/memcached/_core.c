/* The memcached session's per-read core in C: ``receive_data``, ``_serve`` and ``_finish`` of
 * protocols/memcached/session.py, with the state they touch on every read kept in this struct.
 *
 * Why: a sequential memcached client (set, STORED, get of the result) makes three reads and three sends
 * per job where a Gearman client makes two and a half; what the session does per read in Python (its
 * bookkeeping around the handlers) was a tenth of the server's instructions per round trip. Here it is
 * done with direct field access; the handlers (``_get_plain``, ``_set_plain``, the event handlers) and
 * everything rarer stay Python. ``protocols/memcached/core.py`` holds the same three methods in Python,
 * the fallback when this module is not built (or GEARMAN_GATEWAY_PURE_PYTHON is set), and is the
 * reference: both must behave alike, and tests/unit/test_memcached_session.py runs on both.
 *
 * The fields are Python attributes too (member descriptors, as ``__slots__`` are): the session's Python
 * methods read and set them as before. Booleans are kept as Python objects (True/False), so that the
 * Python side may assign whatever it assigns today.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

typedef struct {
    PyObject_HEAD
    PyObject *transport;     /* the connection: pause_reading, resume_reading, close */
    PyObject *write;         /* transport.write, bound once */
    PyObject *decoder;       /* codec.Decoder */
    PyObject *max_value;     /* decoder.max_value_size (constant), for the scanner */
    PyObject *events;        /* deque: requests behind a waiting one */
    PyObject *out;           /* list of replies of the requests being served, or None */
    PyObject *ahead;         /* acknowledgements ahead of a wait (bytes), or None */
    PyObject *partial_input; /* transport.partial_input, or None */
    PyObject *handlers;      /* dict: event type -> handler */
    PyObject *closed;        /* booleans, as objects */
    PyObject *busy;
    PyObject *running;
    PyObject *paused;
    PyObject *input_ended;
    PyObject *held;
} Core;

/* Set by ``setup``: what session.py defines. */
static PyObject *PENDING = NULL;
static PyObject *STORE_TYPE = NULL;
static PyObject *METASET_TYPE = NULL;
static PyObject *DEQUE_TYPE = NULL;
static Py_ssize_t MAX_QUEUED = 1024;

static PyObject *s_get_plain, *s_set_plain, *s_answer, *s_run, *s_after_serving, *s_whole_scan,
    *s_receive_data, *s_holding, *s_pause_reading, *s_extend, *s_empty;

#define TRUTH(o) ((o) == Py_True ? 1 : ((o) == Py_False || (o) == Py_None || (o) == NULL) ? 0 : PyObject_IsTrue(o))

static inline void set_field(PyObject **field, PyObject *value) {
    PyObject *old = *field;
    Py_INCREF(value);
    *field = value;
    Py_XDECREF(old);
}

static inline PyObject *call_method1(PyObject *self, PyObject *name, PyObject *arg) {
    PyObject *args[2] = {self, arg};
    return PyObject_VectorcallMethod(name, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

static inline PyObject *call_method0(PyObject *self, PyObject *name) {
    PyObject *args[1] = {self};
    return PyObject_VectorcallMethod(name, args, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

static inline PyObject *call1(PyObject *callable, PyObject *arg) {
    PyObject *args[2] = {NULL, arg};
    return PyObject_Vectorcall(callable, args + 1, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* 1 when ``o`` holds anything (a deque, a list), 0 when empty or None, -1 on error. */
static inline int nonempty(PyObject *o) {
    if (o == NULL || o == Py_None)
        return 0;
    if (PyList_CheckExact(o))
        return PyList_GET_SIZE(o) > 0;
    Py_ssize_t n = PyObject_Length(o);
    return n < 0 ? -1 : n > 0;
}

/* One write of the replies in ``out``: the only one, or all joined. New reference. */
static PyObject *joined(PyObject *out) {
    if (PyList_GET_SIZE(out) == 1) {
        PyObject *only = PyList_GET_ITEM(out, 0);
        Py_INCREF(only);
        return only;
    }
    return _PyBytes_Join(s_empty, out);
}


/* ``_serve(requests)``: answer them in order, replies gathered into one write; from one that waits on, the
 * rest queue behind it until its answer comes (``_finish``). */
static PyObject *Core_serve(Core *self, PyObject *requests) {
    PyObject *seq = PySequence_Fast(requests, "requests must be a sequence");
    if (seq == NULL)
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    set_field(&self->running, Py_True);
    set_field(&self->out, out);
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq), served = 0;
    int answered = 0, failed = 0;
    PyObject *me = (PyObject *)self;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *request = PySequence_Fast_GET_ITEM(seq, i);
        PyTypeObject *kind = Py_TYPE(request);
        PyObject *reply;
        served++;
        if (kind == &PyBytes_Type) {
            reply = call_method1(me, s_get_plain, request);
        } else if (kind == &PyTuple_Type) {
            reply = call_method1(me, s_set_plain, request);
        } else {
            PyObject *handler = NULL;
            if (self->handlers != NULL && PyDict_CheckExact(self->handlers)) {
                handler = PyDict_GetItemWithError(self->handlers, (PyObject *)kind); /* borrowed */
                if (handler == NULL && PyErr_Occurred()) {
                    failed = 1;
                    break;
                }
            }
            if (handler != NULL) {
                Py_INCREF(handler); /* the handler may replace the dict */
                reply = call1(handler, request);
                Py_DECREF(handler);
            } else {
                reply = call_method1(me, s_answer, request);
            }
        }
        if (reply == NULL) {
            failed = 1;
            break;
        }
        if (reply == PENDING) {
            Py_DECREF(reply);
            set_field(&self->busy, Py_True);
            int closed = TRUTH(self->closed);
            if (closed < 0) {
                failed = 1;
                break;
            }
            if (served < count && !closed) {
                PyObject *rest_list = PyList_GetSlice(seq, served, count);
                PyObject *rest = rest_list == NULL ? NULL : PyObject_CallOneArg(DEQUE_TYPE, rest_list);
                Py_XDECREF(rest_list);
                if (rest == NULL) {
                    failed = 1;
                    break;
                }
                PyObject *done = self->events == NULL ? Py_NewRef(Py_None) : call_method1(rest, s_extend, self->events);
                if (done == NULL) {
                    Py_DECREF(rest);
                    failed = 1;
                    break;
                }
                Py_DECREF(done);
                set_field(&self->events, rest);
                Py_DECREF(rest);
            }
            break;
        }
        int truth = PyBytes_CheckExact(reply) ? PyBytes_GET_SIZE(reply) > 0 : PyObject_IsTrue(reply);
        if (truth < 0) {
            Py_DECREF(reply);
            failed = 1;
            break;
        }
        if (truth) {
            if (PyList_Append(out, reply) < 0) {
                Py_DECREF(reply);
                failed = 1;
                break;
            }
            if (kind != &PyTuple_Type && (PyObject *)kind != STORE_TYPE && (PyObject *)kind != METASET_TYPE)
                answered = 1;
        }
        Py_DECREF(reply);
        int closed = TRUTH(self->closed);
        if (closed < 0) {
            failed = 1;
            break;
        }
        if (closed)
            break;
    }
    Py_DECREF(seq);
    /* (the ``finally``) */
    set_field(&self->running, Py_False);
    set_field(&self->out, Py_None);
    if (failed) {
        Py_DECREF(out);
        return NULL;
    }
    if (PyList_GET_SIZE(out)) {
        int busy = TRUTH(self->busy);
        if (busy < 0) {
            Py_DECREF(out);
            return NULL;
        }
        PyObject *data = joined(out);
        if (data == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        if (busy && !answered) {
            /* storage acknowledgements ahead of a wait leave with its answer (session.py, ``_serve``) */
            set_field(&self->ahead, data);
        } else {
            PyObject *done = call1(self->write, data);
            if (done == NULL) {
                Py_DECREF(data);
                Py_DECREF(out);
                return NULL;
            }
            Py_DECREF(done);
        }
        Py_DECREF(data);
    }
    Py_DECREF(out);
    int paused = TRUTH(self->paused), ended = TRUTH(self->input_ended);
    if (paused < 0 || ended < 0)
        return NULL;
    if (paused || ended)
        return call_method0(me, s_after_serving);
    Py_RETURN_NONE;
}

/* ``receive_data(data)``: a read's requests served; returns whether part of a request is held. */
static PyObject *Core_receive_data(Core *self, PyObject *data) {
    PyObject *me = (PyObject *)self;
    int closed = TRUTH(self->closed);
    if (closed < 0)
        return NULL;
    if (closed)
        Py_RETURN_FALSE;
    PyObject *decoder = self->decoder;
    if (decoder == NULL || decoder == Py_None) {
        PyErr_SetString(PyExc_RuntimeError, "the session has no decoder");
        return NULL;
    }
    Py_INCREF(decoder);
    PyObject *requests = NULL;
    int held = 0;
    PyObject *scan = NULL;
    if (PyBytes_CheckExact(data)) {
        scan = PyObject_GetAttr(decoder, s_whole_scan);
        if (scan == NULL) {
            Py_DECREF(decoder);
            return NULL;
        }
        if (scan == Py_None)
            Py_CLEAR(scan);
    }
    if (scan != NULL) {
        /* the usual read: plain gets and sets only, all whole, read in C without the decoder's Python */
        PyObject *args[3] = {NULL, data, self->max_value};
        PyObject *got = PyObject_Vectorcall(scan, args + 1, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        Py_DECREF(scan);
        if (got == NULL) {
            Py_DECREF(decoder);
            return NULL;
        }
        if (!PyTuple_CheckExact(got) || PyTuple_GET_SIZE(got) != 2) {
            Py_DECREF(got);
            Py_DECREF(decoder);
            PyErr_SetString(PyExc_TypeError, "the scanner must return (requests, used)");
            return NULL;
        }
        Py_ssize_t used = PyLong_AsSsize_t(PyTuple_GET_ITEM(got, 1));
        if (used == -1 && PyErr_Occurred()) {
            Py_DECREF(got);
            Py_DECREF(decoder);
            return NULL;
        }
        if (used == PyBytes_GET_SIZE(data)) {
            requests = PyTuple_GET_ITEM(got, 0);
            Py_INCREF(requests);
            Py_DECREF(got);
        } else {
            Py_DECREF(got);
            scan = NULL; /* anything else: the decoder's way (it reads the plain ones again) */
        }
        if (requests != NULL)
            goto serve;
    }
    requests = call_method1(decoder, s_receive_data, data);
    if (requests == NULL) {
        Py_DECREF(decoder);
        return NULL;
    }
    {
        PyObject *holding = PyObject_GetAttr(decoder, s_holding);
        if (holding == NULL) {
            Py_DECREF(requests);
            Py_DECREF(decoder);
            return NULL;
        }
        held = PyObject_IsTrue(holding);
        Py_DECREF(holding);
        if (held < 0) {
            Py_DECREF(requests);
            Py_DECREF(decoder);
            return NULL;
        }
    }
serve:
    Py_DECREF(decoder);
    {
        int any = nonempty(requests);
        if (any < 0) {
            Py_DECREF(requests);
            return NULL;
        }
        if (any) {
            int queued = nonempty(self->events);
            int busy = TRUTH(self->busy), running = TRUTH(self->running);
            if (queued < 0 || busy < 0 || running < 0) {
                Py_DECREF(requests);
                return NULL;
            }
            PyObject *done;
            if (queued || busy || running) {
                done = call_method1(self->events, s_extend, requests);
                if (done != NULL) {
                    Py_DECREF(done);
                    done = call_method0(me, s_run);
                }
            } else { /* the usual case: nothing waits, serve them where they lie */
                done = Core_serve(self, requests);
            }
            if (done == NULL) {
                Py_DECREF(requests);
                return NULL;
            }
            Py_DECREF(done);
        }
        Py_DECREF(requests);
    }
    if (self->events != NULL && self->events != Py_None) {
        Py_ssize_t n = PyObject_Length(self->events);
        if (n < 0)
            return NULL;
        int paused = TRUTH(self->paused);
        if (paused < 0)
            return NULL;
        if (n > MAX_QUEUED && !paused) {
            set_field(&self->paused, Py_True);
            PyObject *done = PyObject_CallMethodNoArgs(self->transport, s_pause_reading);
            if (done == NULL)
                return NULL;
            Py_DECREF(done);
        }
    }
    int was_held = TRUTH(self->held);
    if (was_held < 0)
        return NULL;
    if ((held || was_held) && self->partial_input != NULL && self->partial_input != Py_None) {
        closed = TRUTH(self->closed);
        if (closed < 0)
            return NULL;
        if (!closed) {
            PyObject *flag = held ? Py_True : Py_False;
            set_field(&self->held, flag);
            PyObject *done = call1(self->partial_input, flag);
            if (done == NULL)
                return NULL;
            Py_DECREF(done);
        }
    }
    return Py_NewRef(held ? Py_True : Py_False);
}

/* ``_finish(reply)``: the waiting request's answer came: send it, and go on with the requests behind it. */
static PyObject *Core_finish(Core *self, PyObject *reply) {
    int closed = TRUTH(self->closed);
    if (closed < 0)
        return NULL;
    if (closed)
        Py_RETURN_NONE;
    set_field(&self->busy, Py_False);
    Py_INCREF(reply);
    if (self->ahead != NULL && self->ahead != Py_None) {
        PyObject *ahead = self->ahead;
        self->ahead = Py_NewRef(Py_None);
        PyObject *both = PyNumber_Add(ahead, reply);
        Py_DECREF(ahead);
        Py_DECREF(reply);
        if (both == NULL)
            return NULL;
        reply = both;
    }
    int truth = PyBytes_CheckExact(reply) ? PyBytes_GET_SIZE(reply) > 0 : PyObject_IsTrue(reply);
    if (truth < 0) {
        Py_DECREF(reply);
        return NULL;
    }
    if (truth) {
        PyObject *out = self->out;
        if (out != NULL && out != Py_None) {
            if (PyList_CheckExact(out)) {
                if (PyList_Append(out, reply) < 0) {
                    Py_DECREF(reply);
                    return NULL;
                }
            } else {
                PyObject *done = PyObject_CallMethod(out, "append", "O", reply);
                if (done == NULL) {
                    Py_DECREF(reply);
                    return NULL;
                }
                Py_DECREF(done);
            }
        } else {
            PyObject *done = call1(self->write, reply);
            if (done == NULL) {
                Py_DECREF(reply);
                return NULL;
            }
            Py_DECREF(done);
        }
    }
    Py_DECREF(reply);
    int queued = nonempty(self->events), paused = TRUTH(self->paused), ended = TRUTH(self->input_ended);
    if (queued < 0 || paused < 0 || ended < 0)
        return NULL;
    if (queued || paused || ended) /* else ``_run`` would have nothing to do */
        return call_method0((PyObject *)self, s_run);
    Py_RETURN_NONE;
}

static PyObject *Core_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    Core *self = (Core *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    PyObject **nones[] = {&self->transport, &self->write, &self->decoder, &self->max_value, &self->events,
                          &self->out, &self->ahead, &self->partial_input, &self->handlers};
    for (size_t i = 0; i < sizeof(nones) / sizeof(nones[0]); i++)
        *nones[i] = Py_NewRef(Py_None);
    PyObject **falses[] = {&self->closed, &self->busy, &self->running, &self->paused, &self->input_ended,
                           &self->held};
    for (size_t i = 0; i < sizeof(falses) / sizeof(falses[0]); i++)
        *falses[i] = Py_NewRef(Py_False);
    return (PyObject *)self;
}

static int Core_traverse(Core *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->transport);
    Py_VISIT(self->write);
    Py_VISIT(self->decoder);
    Py_VISIT(self->max_value);
    Py_VISIT(self->events);
    Py_VISIT(self->out);
    Py_VISIT(self->ahead);
    Py_VISIT(self->partial_input);
    Py_VISIT(self->handlers);
    return 0;
}

static int Core_clear(Core *self) {
    Py_CLEAR(self->transport);
    Py_CLEAR(self->write);
    Py_CLEAR(self->decoder);
    Py_CLEAR(self->max_value);
    Py_CLEAR(self->events);
    Py_CLEAR(self->out);
    Py_CLEAR(self->ahead);
    Py_CLEAR(self->partial_input);
    Py_CLEAR(self->handlers);
    Py_CLEAR(self->closed);
    Py_CLEAR(self->busy);
    Py_CLEAR(self->running);
    Py_CLEAR(self->paused);
    Py_CLEAR(self->input_ended);
    Py_CLEAR(self->held);
    return 0;
}

static void Core_dealloc(Core *self) {
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Core_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyMemberDef Core_members[] = {
    {"transport", T_OBJECT, offsetof(Core, transport), 0, NULL},
    {"_write", T_OBJECT, offsetof(Core, write), 0, NULL},
    {"decoder", T_OBJECT, offsetof(Core, decoder), 0, NULL},
    {"_max_value", T_OBJECT, offsetof(Core, max_value), 0, NULL},
    {"_events", T_OBJECT, offsetof(Core, events), 0, NULL},
    {"_out", T_OBJECT, offsetof(Core, out), 0, NULL},
    {"_ahead", T_OBJECT, offsetof(Core, ahead), 0, NULL},
    {"_partial_input", T_OBJECT, offsetof(Core, partial_input), 0, NULL},
    {"_handlers", T_OBJECT, offsetof(Core, handlers), 0, NULL},
    {"closed", T_OBJECT, offsetof(Core, closed), 0, NULL},
    {"_busy", T_OBJECT, offsetof(Core, busy), 0, NULL},
    {"_running", T_OBJECT, offsetof(Core, running), 0, NULL},
    {"_paused", T_OBJECT, offsetof(Core, paused), 0, NULL},
    {"_input_ended", T_OBJECT, offsetof(Core, input_ended), 0, NULL},
    {"_held", T_OBJECT, offsetof(Core, held), 0, NULL},
    {NULL},
};

static PyMethodDef Core_methods[] = {
    {"receive_data", (PyCFunction)Core_receive_data, METH_O,
     "Serve a read's requests; returns whether part of a request is held."},
    {"_serve", (PyCFunction)Core_serve, METH_O, "Answer requests in order, their replies in one write."},
    {"_finish", (PyCFunction)Core_finish, METH_O, "The waiting request's answer came: send it, go on."},
    {NULL},
};

static PyType_Slot Core_slots[] = {
    {Py_tp_doc, "The memcached session's per-read state and methods (protocols/memcached/core.py's twin)."},
    {Py_tp_new, Core_new},
    {Py_tp_dealloc, Core_dealloc},
    {Py_tp_traverse, Core_traverse},
    {Py_tp_clear, Core_clear},
    {Py_tp_members, Core_members},
    {Py_tp_methods, Core_methods},
    {0, NULL},
};

static PyType_Spec Core_spec = {
    .name = "protocols.memcached._core.Core",
    .basicsize = sizeof(Core),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = Core_slots,
};

/* ``setup(pending, store_type, metaset_type, deque_type, max_queued)``: session.py's constants. */
static PyObject *setup(PyObject *module, PyObject *args) {
    PyObject *pending, *store, *metaset, *deque;
    Py_ssize_t max_queued;
    if (!PyArg_ParseTuple(args, "OOOOn", &pending, &store, &metaset, &deque, &max_queued))
        return NULL;
    Py_XSETREF(PENDING, Py_NewRef(pending));
    Py_XSETREF(STORE_TYPE, Py_NewRef(store));
    Py_XSETREF(METASET_TYPE, Py_NewRef(metaset));
    Py_XSETREF(DEQUE_TYPE, Py_NewRef(deque));
    MAX_QUEUED = max_queued;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"setup", setup, METH_VARARGS, "setup(pending, store_type, metaset_type, deque_type, max_queued)"},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "protocols.memcached._core",
    "The memcached session's per-read core in C (protocols/memcached/core.py is the same in Python).", -1,
    module_methods,
};

#define INTERN(var, text)                                                                                   \
    do {                                                                                                    \
        var = PyUnicode_InternFromString(text);                                                             \
        if (var == NULL)                                                                                    \
            return NULL;                                                                                    \
    } while (0)

PyMODINIT_FUNC PyInit__core(void) {
    INTERN(s_get_plain, "_get_plain");
    INTERN(s_set_plain, "_set_plain");
    INTERN(s_answer, "_answer");
    INTERN(s_run, "_run");
    INTERN(s_after_serving, "_after_serving");
    INTERN(s_whole_scan, "whole_scan");
    INTERN(s_receive_data, "receive_data");
    INTERN(s_holding, "holding");
    INTERN(s_pause_reading, "pause_reading");
    INTERN(s_extend, "extend");
    s_empty = PyBytes_FromStringAndSize(NULL, 0);
    if (s_empty == NULL)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    PyObject *type = PyType_FromSpec(&Core_spec);
    if (type == NULL || PyModule_AddObject(module, "Core", type) < 0) {
        Py_XDECREF(type);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
