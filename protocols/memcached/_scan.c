/* The memcached text protocol's plain lines, read in C: an optional accelerator for codec.Decoder.

   Why: a queue's clients and workers send little but `set <key> <flags> <exptime> <bytes>` with its data
   and `get <key>`; in a round-trip load Decoder.receive_data's regex fast path was ~15 % of the server's
   time, most of it Python bytecode per request. Here one call reads them all from a read's bytes.

   What it mirrors, exactly (tests/unit/test_memcached_scan.py compares the two with hypothesis):
   - protocols/memcached/text.py GET_LINE: `get <key>\r?\n`, a key of 1..250 bytes none of which is
     0x00-0x20 or 0x7f; given as the key (bytes);
   - text.py SET_LINE: `set <key> <flags> <exptime> <bytes>[ noreply]\r?\n`, each number 1..9 ASCII digits
     (so no bounds to check: 999999999 < 2**31), given as (key, flags, exptime, data, noreply) when <bytes> is at most
     max_value_size and the data block and its `\r\n` are all in: what codec.py's fast path gives with
     plain=True for the same bytes.
   It reads from the start of `data` and stops, without an error, at the first thing that is not one of
   these, whole: another command, a line cut short, a set over the limit, a block not all in or not ended
   by `\r\n`. The decoder reads on from there by the full rules, so stopping early is never wrong. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define MAX_KEY 250
#define MAX_DIGITS 9

static int
is_key_byte(unsigned char c)
{
    return c > 0x20 && c != 0x7f;
}

/* The length of the key at p (1..MAX_KEY), or 0 when there is none or it is longer. */
static Py_ssize_t
key_length(const unsigned char *p, const unsigned char *end)
{
    const unsigned char *limit = end - p > MAX_KEY ? p + MAX_KEY + 1 : end;
    const unsigned char *q = p;
    while (q < limit && is_key_byte(*q))
        q++;
    return q - p > MAX_KEY ? 0 : q - p;
}

/* A run of 1..MAX_DIGITS digits at *p: its value, *p moved past it; else -1 (none, or too many). */
static long
digits(const unsigned char **p, const unsigned char *end)
{
    const unsigned char *q = *p;
    long value = 0;
    while (q < end && q - *p <= MAX_DIGITS && *q >= '0' && *q <= '9')
        value = value * 10 + (*q++ - '0');
    if (q == *p || q - *p > MAX_DIGITS)
        return -1;
    *p = q;
    return value;
}

/* A number of digits(), then the byte `after`: its value, *p moved past both; else -1. */
static long
field(const unsigned char **p, const unsigned char *end, unsigned char after)
{
    const unsigned char *q = *p;
    long value = digits(&q, end);
    if (value < 0 || q >= end || *q != after)
        return -1;
    *p = q + 1;
    return value;
}

static const char NOREPLY[] = " noreply";
#define NOREPLY_LEN 8

/* `\r?\n` at p: the byte after it, else NULL. */
static const unsigned char *
line_end(const unsigned char *p, const unsigned char *end)
{
    if (p < end && *p == '\n')
        return p + 1;
    if (end - p >= 2 && p[0] == '\r' && p[1] == '\n')
        return p + 2;
    return NULL;
}

/* One plain request at p: appended to `out`, and the byte after it returned; NULL when there is none
   (*failed set when appending failed: an exception is pending). */
static const unsigned char *
one_request(const unsigned char *p, const unsigned char *end, Py_ssize_t max_value_size, PyObject *out,
            int *failed)
{
    if (end - p < 4 || p[3] != ' ' || p[1] != 'e' || p[2] != 't')
        return NULL;
    int is_set = p[0] == 's';
    if (!is_set && p[0] != 'g')
        return NULL;
    const unsigned char *key = p + 4;
    Py_ssize_t key_len = key_length(key, end);
    if (key_len == 0)
        return NULL;
    const unsigned char *q = key + key_len;
    if (!is_set) {
        const unsigned char *next = line_end(q, end);
        if (next == NULL)
            return NULL;
        PyObject *value = PyBytes_FromStringAndSize((const char *)key, key_len);
        if (value == NULL || PyList_Append(out, value) < 0) {
            Py_XDECREF(value);
            *failed = 1;
            return NULL;
        }
        Py_DECREF(value);
        return next;
    }
    if (q >= end || *q != ' ')
        return NULL;
    q++;
    long flags = field(&q, end, ' ');
    long exptime = flags < 0 ? -1 : field(&q, end, ' ');
    long size = exptime < 0 ? -1 : digits(&q, end);
    if (size < 0 || size > max_value_size)
        return NULL;
    int noreply = end - q >= NOREPLY_LEN && memcmp(q, NOREPLY, NOREPLY_LEN) == 0;
    if (noreply)
        q += NOREPLY_LEN;
    const unsigned char *data = line_end(q, end);
    if (data == NULL || end - data < size + 2 || data[size] != '\r' || data[size + 1] != '\n')
        return NULL;
    PyObject *request = PyTuple_New(5);
    if (request == NULL) {
        *failed = 1;
        return NULL;
    }
    PyObject *items[5] = {
        PyBytes_FromStringAndSize((const char *)key, key_len),
        PyLong_FromLong(flags),
        PyLong_FromLong(exptime),
        PyBytes_FromStringAndSize((const char *)data, size),
        Py_NewRef(noreply ? Py_True : Py_False),
    };
    for (int i = 0; i < 5; i++)
        PyTuple_SET_ITEM(request, i, items[i]); /* a NULL one: the tuple's dealloc skips it */
    if (items[0] == NULL || items[1] == NULL || items[2] == NULL || items[3] == NULL ||
        PyList_Append(out, request) < 0) {
        Py_DECREF(request);
        *failed = 1;
        return NULL;
    }
    Py_DECREF(request);
    return data + size + 2;
}

static PyObject *
scan(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "scan(data: bytes, max_value_size: int)");
        return NULL;
    }
    int overflow;
    long long limit = PyLong_AsLongLongAndOverflow(args[1], &overflow);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    /* a limit beyond any 9-digit size lets all through; a negative one none */
    Py_ssize_t max_value_size = (Py_ssize_t)limit;
    if (overflow > 0 || limit > 1000000000)
        max_value_size = 1000000000;
    else if (overflow < 0 || limit < 0)
        max_value_size = -1;
    const unsigned char *start = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    const unsigned char *end = start + PyBytes_GET_SIZE(args[0]);
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    const unsigned char *p = start;
    int failed = 0;
    for (const unsigned char *next; p < end && (next = one_request(p, end, max_value_size, out, &failed)) != NULL;)
        p = next;
    if (failed) {
        Py_DECREF(out);
        return NULL;
    }
    PyObject *offset = PyLong_FromSsize_t(p - start);
    PyObject *result = offset == NULL ? NULL : PyTuple_New(2);
    if (result == NULL) {
        Py_XDECREF(offset);
        Py_DECREF(out);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, out);
    PyTuple_SET_ITEM(result, 1, offset);
    return result;
}

static PyMethodDef module_methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "scan(data, max_value_size) -> (requests, offset): the complete plain gets and sets at the start of "
     "data (keys, and (key, flags, exptime, data, noreply) tuples), and where the first other thing begins."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "protocols.memcached._scan",
    .m_doc = "Plain memcached get and set lines read in C (optional; protocols/memcached/codec.py falls back to "
             "Python).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__scan(void)
{
    return PyModule_Create(&module);
}
