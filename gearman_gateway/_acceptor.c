/* A listening socket's accept thread: an optional accelerator for gearman_gateway/reactor.py's _Port.

   Why: with a burst of connects (PHP or Perl pages opening a connection each, `-b 1024`) the kernel's
   accept queue fills in milliseconds. The reactor's one thread, runnable but waiting for a CPU behind the
   load generator, empties it too late: overflowing connects lose their SYN and are retried a second
   later (issue 15: 0.11x gearmand's connect/close cycles with `-b 1024`). gearmand's accept thread is
   never far from the socket. Here a thread of our own, without the GIL, waits on the listening socket and
   accept()s until EAGAIN into a ring of descriptors and tells the reactor through an eventfd, once per
   batch (not per connection, and not while the reactor has not yet taken the last signal). The reactor
   takes the ring's sockets and builds the connections as before (admission, limits, first read: Python).

   Both wait on the listening socket with EPOLLEXCLUSIVE, the reactor's epoll registered first: a connect
   wakes the reactor when it sleeps in epoll_wait (it accepts itself, no thread hop: what a lone HTTP
   request on a new connection wants) and wakes this thread only when the reactor is busy or waits for a
   CPU (what a burst needs). The reactor registers before the Acceptor is made (reactor.py).

   The thread sleeps in epoll_wait when nothing comes (no idle CPU). EMFILE, ENFILE, ENOBUFS, ENOMEM: it
   backs off (10 ms, doubling to 1 s) and retries; the queued connects wait in the kernel meanwhile. A
   full ring (the reactor far behind): it waits for the reactor to take some, told through a second
   eventfd. On Linux 6.12 and newer the thread asks for a short time slice (sched_setattr's sched_runtime
   for SCHED_OTHER, its nice value kept), so that a wake-up runs it soon; older kernels ignore the field
   for that policy, and a failure is ignored. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <poll.h>
#include <time.h>
#include <sys/epoll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BATCH_SIGNAL 64 /* tell the reactor at least every this many accepts of a long burst */

typedef struct {
    int fd;
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } peer;
} Entry;

typedef struct {
    PyObject_HEAD
    int listen_fd;
    int ready_fd;   /* eventfd: the reactor watches it; written when the ring gets entries */
    int control_fd; /* eventfd: wakes the thread (stop, or room in the ring) */
    int epoll_fd;   /* the thread's: the listening socket (exclusive) and control_fd */
    Entry *ring;
    size_t capacity; /* a power of two */
    _Atomic size_t head; /* the thread's: next slot to fill */
    _Atomic size_t tail; /* the reactor's: next slot to take */
    atomic_int signaled;   /* ready_fd written and not yet drained */
    atomic_int want_room;  /* the thread waits for the reactor to take entries */
    atomic_int stopping;
    atomic_ullong accepted;
    atomic_ullong failures; /* accepts that failed on a resource limit (EMFILE...) */
    atomic_int last_error;
    long slice_ns;
    int exclusive;
    int leave; /* fewer queued connects than this are left to the reactor (0: the thread takes all) */
    long pause_ns; /* after leaving them: how long the thread looks away (wake-ups it saves) */
    int started;
    int joined;
    pthread_t thread;
} Acceptor;

/* glibc before 2.41 has no struct sched_attr: the kernel's layout, as far as it is needed */
struct acceptor_sched_attr {
    uint32_t size;
    uint32_t sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime;
    uint64_t sched_deadline;
    uint64_t sched_period;
};

static void
ask_short_slice(long slice_ns)
{
#if defined(SYS_sched_getattr) && defined(SYS_sched_setattr)
    struct acceptor_sched_attr attr;
    if (slice_ns <= 0)
        return;
    memset(&attr, 0, sizeof attr);
    if (syscall(SYS_sched_getattr, 0, &attr, sizeof attr, 0) != 0)
        return;
    if (attr.sched_policy != 0 /* SCHED_OTHER */)
        return; /* a real-time or idle policy chosen by the administrator: leave it */
    attr.size = sizeof attr;
    attr.sched_flags = 0;
    attr.sched_runtime = (uint64_t)slice_ns; /* the nice value read above is kept */
    (void)syscall(SYS_sched_setattr, 0, &attr, 0);
#else
    (void)slice_ns;
#endif
}

static void
poke(int fd)
{
    uint64_t one = 1;
    ssize_t done;
    do {
        done = write(fd, &one, sizeof one);
    } while (done < 0 && errno == EINTR);
}

static void
tell_reactor(Acceptor *self)
{
    if (!atomic_exchange(&self->signaled, 1))
        poke(self->ready_fd);
}

static void
clear(int fd)
{
    uint64_t value;
    while (read(fd, &value, sizeof value) < 0 && errno == EINTR)
        ;
}

/* Wait for the control eventfd alone (``timeout`` ms, -1: no limit). */
static void
wait_control(Acceptor *self, int timeout)
{
    struct pollfd control = {self->control_fd, POLLIN, 0};
    if (poll(&control, 1, timeout) > 0)
        clear(self->control_fd);
}

/* Whether the reactor may be left the connects queued now: fewer than ``leave`` (it has them in its own
   epoll's ready list, and takes them in its next turn). The thread, woken on each new connect (edge-
   triggered) while the reactor is busy, then costs a wake-up and this question, not accepts, eventfd
   writes and the reactor's eventfd reads: connections that come one at a time (a web client's requests)
   stay the reactor's, bursts that would fill the kernel's queue are the thread's. */
static int
few_queued(Acceptor *self)
{
    struct tcp_info info;
    socklen_t length = sizeof info;
    if (self->leave <= 0)
        return 0;
    if (getsockopt(self->listen_fd, IPPROTO_TCP, TCP_INFO, &info, &length) < 0 ||
        length < offsetof(struct tcp_info, tcpi_unacked) + sizeof info.tcpi_unacked)
        return 0;
    return info.tcpi_unacked < (unsigned)self->leave; /* a listening socket's accept queue length */
}

static uint32_t
listening_events(Acceptor *self)
{
    if (!self->exclusive)
        return EPOLLIN;
    return EPOLLIN | EPOLLEXCLUSIVE | (self->leave > 0 ? EPOLLET : 0);
}

static void *
accept_loop(void *arg)
{
    Acceptor *self = arg;
    int backoff = 0; /* ms before the next try after a resource failure */
    pthread_setname_np(pthread_self(), "gg-accept"); /* in top -H, ps -L and /proc/PID/task/TID/comm */
    ask_short_slice(self->slice_ns);
    while (!atomic_load(&self->stopping)) {
        if (backoff) {
            wait_control(self, backoff);
        }
        else {
            struct epoll_event events[2];
            int ready = epoll_wait(self->epoll_fd, events, 2, -1), listening = 0;
            if (ready < 0) {
                if (errno == EINTR)
                    continue;
                break;
            }
            for (int i = 0; i < ready; i++) {
                if (events[i].data.fd == self->control_fd) {
                    clear(self->control_fd); /* stop, room, or wake(): try the socket (EAGAIN at worst) */
                    listening = 2;
                }
                else if (!listening)
                    listening = 1;
            }
            if (!listening)
                continue;
            if (listening == 1 && few_queued(self)) {
                /* left to the reactor; and no wake-up per connect while it stays busy: the connects of the
                   next ``pause`` are looked at together (the edge they raise waits in this epoll) */
                struct timespec pause = {0, self->pause_ns};
                if (self->pause_ns > 0) {
                    struct pollfd control = {self->control_fd, POLLIN, 0};
                    if (ppoll(&control, 1, &pause, NULL) > 0)
                        clear(self->control_fd);
                    if (few_queued(self))
                        continue;
                }
                else
                    continue;
            }
        }
        unsigned batch = 0;
        int failed = 0;
        while (!atomic_load(&self->stopping)) {
            size_t head = atomic_load_explicit(&self->head, memory_order_relaxed);
            if (head - atomic_load_explicit(&self->tail, memory_order_acquire) == self->capacity) {
                /* full: wait until the reactor takes some (re-checked after asking, so no wake-up is lost) */
                if (batch)
                    tell_reactor(self);
                batch = 0;
                atomic_store(&self->want_room, 1);
                if (head - atomic_load(&self->tail) == self->capacity)
                    wait_control(self, -1);
                atomic_store(&self->want_room, 0);
                continue;
            }
            Entry *entry = &self->ring[head & (self->capacity - 1)];
            socklen_t length = sizeof entry->peer;
            int fd = accept4(self->listen_fd, &entry->peer.sa, &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                int error = errno;
                if (error == EINTR || error == ECONNABORTED || error == EPROTO || error == EPERM)
                    continue; /* that connection is gone (or refused by a firewall rule): the next */
                if (error == EAGAIN || error == EWOULDBLOCK) {
                    backoff = 0;
                    break;
                }
                atomic_store(&self->last_error, error);
                if (error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM) {
                    atomic_fetch_add(&self->failures, 1);
                    if (!backoff)
                        tell_reactor(self); /* the first of a streak: the reactor logs it (take() finds 0) */
                    backoff = backoff ? (backoff >= 500 ? 1000 : backoff * 2) : 10;
                    failed = 1;
                    break;
                }
                failed = 2; /* the listening socket itself is broken (EBADF, EINVAL): stop */
                break;
            }
            entry->fd = fd;
            atomic_store(&self->head, head + 1); /* seq_cst: ordered before tell_reactor's exchange */
            atomic_fetch_add_explicit(&self->accepted, 1, memory_order_relaxed);
            if (++batch == BATCH_SIGNAL) {
                tell_reactor(self);
                batch = 0;
            }
        }
        if (batch)
            tell_reactor(self);
        if (failed == 2)
            break;
    }
    return NULL;
}

static PyObject *
peer_address(Entry *entry)
{
    char host[INET6_ADDRSTRLEN];
    if (entry->peer.sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &entry->peer.in6.sin6_addr, host, sizeof host);
        return Py_BuildValue("(sHkI)", host, ntohs(entry->peer.in6.sin6_port),
                             (unsigned long)ntohl(entry->peer.in6.sin6_flowinfo), entry->peer.in6.sin6_scope_id);
    }
    if (entry->peer.sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &entry->peer.in4.sin_addr, host, sizeof host);
        return Py_BuildValue("(sH)", host, ntohs(entry->peer.in4.sin_port));
    }
    return Py_BuildValue("(si)", "", 0);
}

static void
close_queued(Acceptor *self)
{
    size_t tail = atomic_load(&self->tail), head = atomic_load(&self->head);
    for (; tail != head; tail++)
        close(self->ring[tail & (self->capacity - 1)].fd);
    atomic_store(&self->tail, tail);
}

/* Stop the thread and close what it accepted and nobody took; keeps the eventfds (the reactor may still
   have the ready one registered). */
static void
stop_thread(Acceptor *self)
{
    if (self->started && !self->joined) {
        atomic_store(&self->stopping, 1);
        poke(self->control_fd);
        Py_BEGIN_ALLOW_THREADS
        pthread_join(self->thread, NULL);
        Py_END_ALLOW_THREADS
        self->joined = 1;
    }
    if (self->ring != NULL)
        close_queued(self);
}

static int
Acceptor_init(Acceptor *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"listen_fd", "capacity", "slice_ns", "exclusive", "leave", "pause_ns", NULL};
    int listen_fd, exclusive = 1, leave = 0;
    Py_ssize_t capacity = 16384;
    long slice_ns = 100000, pause_ns = 0;
    if (self->ring != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Acceptor already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "i|nlpil", kwlist, &listen_fd, &capacity, &slice_ns, &exclusive,
                                     &leave, &pause_ns))
        return -1;
    if (capacity <= 0 || (capacity & (capacity - 1)) != 0) {
        PyErr_SetString(PyExc_ValueError, "capacity must be a power of two");
        return -1;
    }
    self->listen_fd = listen_fd;
    self->slice_ns = slice_ns;
    self->exclusive = exclusive;
    self->leave = exclusive ? leave : 0; /* without the reactor watching too, nothing may be left */
    self->pause_ns = pause_ns < 0 ? 0 : (pause_ns > 999999999 ? 999999999 : pause_ns);
    self->capacity = (size_t)capacity;
    self->ready_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->control_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    self->ring = PyMem_RawCalloc((size_t)capacity, sizeof(Entry));
    if (self->ring == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    struct epoll_event listening = {listening_events(self), {.fd = listen_fd}};
    struct epoll_event control = {EPOLLIN, {.fd = self->control_fd}};
    if (self->ready_fd < 0 || self->control_fd < 0 || self->epoll_fd < 0 ||
        epoll_ctl(self->epoll_fd, EPOLL_CTL_ADD, listen_fd, &listening) < 0 ||
        epoll_ctl(self->epoll_fd, EPOLL_CTL_ADD, self->control_fd, &control) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    int error = pthread_create(&self->thread, NULL, accept_loop, self);
    if (error) {
        errno = error;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->started = 1;
    return 0;
}

static PyObject *
Acceptor_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwds))
{
    Acceptor *self = (Acceptor *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->ready_fd = self->control_fd = self->epoll_fd = self->listen_fd = -1;
    }
    return (PyObject *)self;
}

static PyObject *
Acceptor_take(Acceptor *self, PyObject *arg)
{
    Py_ssize_t most = PyLong_AsSsize_t(arg);
    if (most < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "take() wants a count >= 0");
        return NULL;
    }
    if (self->ready_fd < 0) {
        PyErr_SetString(PyExc_ValueError, "the acceptor is closed");
        return NULL;
    }
    clear(self->ready_fd);
    atomic_store(&self->signaled, 0); /* what the thread queues from now on is signalled anew */
    size_t tail = atomic_load_explicit(&self->tail, memory_order_relaxed);
    size_t head = atomic_load(&self->head); /* seq_cst: after the store to signaled above */
    size_t count = head - tail;
    if ((size_t)most < count)
        count = (size_t)most;
    PyObject *taken = PyList_New((Py_ssize_t)count);
    if (taken == NULL)
        return NULL;
    for (size_t i = 0; i < count; i++) {
        Entry *entry = &self->ring[(tail + i) & (self->capacity - 1)];
        PyObject *item = NULL, *peer = peer_address(entry);
        if (peer != NULL)
            item = Py_BuildValue("(iN)", entry->fd, peer);
        if (item == NULL) { /* out of memory: the rest stay queued, these are closed */
            for (size_t j = i; j < count; j++)
                close(self->ring[(tail + j) & (self->capacity - 1)].fd);
            atomic_store_explicit(&self->tail, tail + count, memory_order_release);
            Py_DECREF(taken);
            return NULL;
        }
        PyList_SET_ITEM(taken, (Py_ssize_t)i, item);
    }
    atomic_store(&self->tail, tail + count); /* seq_cst: before reading want_room */
    if (count && atomic_exchange(&self->want_room, 0))
        poke(self->control_fd);
    if (head - tail > count) /* left for the next turn: the reactor comes back */
        tell_reactor(self);
    return taken;
}

/* Accept now: the reactor stopped watching the listening socket (it ran out of descriptors), and with
   EPOLLEXCLUSIVE this thread may not have heard of the connects the reactor was woken for. */
static PyObject *
Acceptor_wake(Acceptor *self, PyObject *Py_UNUSED(ignored))
{
    if (self->control_fd >= 0)
        poke(self->control_fd);
    Py_RETURN_NONE;
}

/* Register the listening socket anew in the thread's epoll: after the reactor's registration again, so
   that the reactor stays the one woken first (wait queues wake exclusive waiters in registration order). */
static PyObject *
Acceptor_rewatch(Acceptor *self, PyObject *Py_UNUSED(ignored))
{
    struct epoll_event listening = {listening_events(self), {.fd = self->listen_fd}};
    if (self->epoll_fd < 0) {
        PyErr_SetString(PyExc_ValueError, "the acceptor is closed");
        return NULL;
    }
    if (epoll_ctl(self->epoll_fd, EPOLL_CTL_DEL, self->listen_fd, NULL) < 0 ||
        epoll_ctl(self->epoll_fd, EPOLL_CTL_ADD, self->listen_fd, &listening) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyObject *
Acceptor_fileno(Acceptor *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(self->ready_fd);
}

static PyObject *
Acceptor_stop(Acceptor *self, PyObject *Py_UNUSED(ignored))
{
    stop_thread(self);
    Py_RETURN_NONE;
}

/* the eventfds and the thread's epoll (after the thread has stopped) */
static void
close_fds(Acceptor *self)
{
    if (self->ready_fd >= 0)
        close(self->ready_fd);
    if (self->control_fd >= 0)
        close(self->control_fd);
    if (self->epoll_fd >= 0)
        close(self->epoll_fd);
    self->ready_fd = self->control_fd = self->epoll_fd = -1;
}

static PyObject *
Acceptor_close(Acceptor *self, PyObject *Py_UNUSED(ignored))
{
    stop_thread(self);
    close_fds(self);
    Py_RETURN_NONE;
}

static PyObject *
Acceptor_get_running(Acceptor *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->started && !self->joined);
}

static PyObject *
Acceptor_get_accepted(Acceptor *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(atomic_load(&self->accepted));
}

static PyObject *
Acceptor_get_failures(Acceptor *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(atomic_load(&self->failures));
}

static PyObject *
Acceptor_get_last_error(Acceptor *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(atomic_load(&self->last_error));
}

static PyObject *
Acceptor_get_queued(Acceptor *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSize_t(atomic_load(&self->head) - atomic_load(&self->tail));
}

static void
Acceptor_dealloc(Acceptor *self)
{
    if (self->started && !self->joined) { /* never left running on freed memory */
        atomic_store(&self->stopping, 1);
        poke(self->control_fd);
        pthread_join(self->thread, NULL);
        self->joined = 1;
    }
    if (self->ring != NULL) {
        close_queued(self);
        PyMem_RawFree(self->ring);
    }
    close_fds(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Acceptor_methods[] = {
    {"take", (PyCFunction)Acceptor_take, METH_O,
     "take(most) -> [(fd, peer address)]: up to ``most`` accepted sockets (non-blocking, close-on-exec)"},
    {"wake", (PyCFunction)Acceptor_wake, METH_NOARGS, "Have the thread try the listening socket now."},
    {"rewatch", (PyCFunction)Acceptor_rewatch, METH_NOARGS,
     "Register the listening socket anew in the thread's epoll (after the reactor's)."},
    {"fileno", (PyCFunction)Acceptor_fileno, METH_NOARGS, "The eventfd readable while sockets wait to be taken."},
    {"stop", (PyCFunction)Acceptor_stop, METH_NOARGS,
     "Stop the thread (joined) and close the sockets nobody took; the eventfd stays open."},
    {"close", (PyCFunction)Acceptor_close, METH_NOARGS, "stop(), then close the eventfds."},
    {NULL},
};

static PyGetSetDef Acceptor_getset[] = {
    {"running", (getter)Acceptor_get_running, NULL, "The thread runs.", NULL},
    {"accepted", (getter)Acceptor_get_accepted, NULL, "Sockets accepted so far.", NULL},
    {"failures", (getter)Acceptor_get_failures, NULL, "Accepts refused by a resource limit (EMFILE...).", NULL},
    {"last_error", (getter)Acceptor_get_last_error, NULL, "errno of the last failed accept (0: none).", NULL},
    {"queued", (getter)Acceptor_get_queued, NULL, "Sockets accepted and not yet taken.", NULL},
    {NULL},
};

static PyTypeObject AcceptorType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gearman_gateway._acceptor.Acceptor",
    .tp_doc = "Acceptor(listen_fd, capacity=16384, slice_ns=100000, exclusive=True, leave=0): accepts on its own thread "
              "from now on (``exclusive``: its epoll watches the listening socket with EPOLLEXCLUSIVE, the reactor's "
              "registered first; ``leave``: fewer connects queued than that are left to the reactor).",
    .tp_basicsize = sizeof(Acceptor),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Acceptor_new,
    .tp_init = (initproc)Acceptor_init,
    .tp_dealloc = (destructor)Acceptor_dealloc,
    .tp_methods = Acceptor_methods,
    .tp_getset = Acceptor_getset,
};

static struct PyModuleDef acceptor_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "gearman_gateway._acceptor",
    .m_doc = "A listening socket's accept thread (gearman_gateway/reactor.py, docs/architecture.md).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__acceptor(void)
{
    if (PyType_Ready(&AcceptorType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&acceptor_module);
    if (module == NULL)
        return NULL;
    Py_INCREF(&AcceptorType);
    if (PyModule_AddObject(module, "Acceptor", (PyObject *)&AcceptorType) < 0) {
        Py_DECREF(&AcceptorType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
