/* scan-log's hot path in C: blocker/fastpath.py's read_block on the raw bytes of a block.
 *
 * scan(block, keys, offsets, forms, names, minute_base, hour_base, aggregate)
 *     -> (events, slow, lines)
 *
 * block: bytes of whole lines, ending in "\n". keys: the parser's keywords (bytes, in the
 * parser's order, 2+ bytes, no "\n"); offsets: per key, where its rare byte pair starts (the
 * one-pass search looks for the pairs, then compares the keys); forms: per key, the fastpath
 * form that reads a line found by it (0: none). Every line holding a key is one event, in file
 * order, read with the form of the first key (in the keys' order) it holds, as read_block
 * does: (rule, address, when) where the form decided it, else (None, start, end) and its
 * index in ``slow``, for LineParser.fields. lines: the number of "\n" in the block.
 *
 * The lines are hostile: every read is bounds-checked against the line's end; a form answers
 * only when it is sure to answer as fastpath.py's regex (the same reading, tried in the
 * regex's order) and parse._normalise would; anything else (non-ASCII where a character count
 * matters, "%", embedded IPv4, "::", unknown minutes) is left to Python.
 */
#include "fastscan_search.h"

#include <stdint.h>
#include <string.h>

struct Ctx {
    PyObject *names[F_COUNT]; /* borrowed rule names per form */
    PyObject *minute_base;    /* minute text -> epoch or None (parse's cache) */
    PyObject *hour_base;      /* hour text -> epoch of its minute 0 if plain, else None */
    PyObject *aggregate;      /* None, or IPv6 address -> its /64 */
    char minute[16];          /* the last minute asked and its answer */
    PyObject *base;           /* owned; NULL: none asked yet */
    char hour[13];            /* the last hour asked ("YYYY-MM-DD HH") and its answer */
    int hour_asked, hour_plain;
    double hour_epoch;
};

/* The epoch of the line's minute (its stamp checked by fs_stamp): 1 and *base, 0 if Python
 * has none (an invalid minute), -1 on a Python error. A plain hour (parse.plain_hour: one UTC
 * offset in and around it) gives its minute m as start + 60 m, exactly parse's reading, with
 * one call per hour; other hours ask minute_base per minute. */
static PyObject *ask(PyObject *fn, const char *stamp, Py_ssize_t n) { /* fn(stamp[:n]) */
    PyObject *text = PyUnicode_DecodeASCII(stamp, n, "strict"); /* fs_stamp: ASCII digits */
    if (text == NULL)
        return NULL;
    PyObject *r = PyObject_CallOneArg(fn, text);
    Py_DECREF(text);
    return r;
}

static int minute_epoch(Ctx *c, const char *stamp, double *base) {
    if (!c->hour_asked || memcmp(c->hour, stamp, 13) != 0) {
        PyObject *r = ask(c->hour_base, stamp, 13);
        if (r == NULL)
            return -1;
        c->hour_plain = r != Py_None;
        c->hour_epoch = c->hour_plain ? PyFloat_AsDouble(r) : 0.0;
        Py_DECREF(r);
        if (c->hour_plain && c->hour_epoch == -1.0 && PyErr_Occurred())
            return -1;
        memcpy(c->hour, stamp, 13);
        c->hour_asked = 1;
    }
    int mi = (stamp[14] - '0') * 10 + (stamp[15] - '0'); /* fs_stamp: two digits */
    if (c->hour_plain && mi < 60) {
        *base = c->hour_epoch + 60.0 * mi;
        return 1;
    }
    if (c->base == NULL || memcmp(c->minute, stamp, 16) != 0) {
        PyObject *b = ask(c->minute_base, stamp, 16);
        if (b == NULL)
            return -1;
        Py_XSETREF(c->base, b);
        memcpy(c->minute, stamp, 16);
    }
    if (c->base == Py_None)
        return 0;
    *base = PyFloat_AsDouble(c->base);
    return *base == -1.0 && PyErr_Occurred() ? -1 : 1;
}

/* (rule, address, when) for a decided line; Py_None if undecided; NULL on a Python error */
static PyObject *decide(Ctx *c, Line L, int form) {
    int sec;
    Py_ssize_t ip_s, ip_e;
    if (form <= F_NONE || form >= F_COUNT || c->names[form] == NULL || !fs_stamp(L, &sec) ||
        !fs_read_form(L, form, &ip_s, &ip_e))
        Py_RETURN_NONE;
    double base;
    int got = minute_epoch(c, L.l, &base);
    if (got < 0)
        return NULL;
    if (got == 0)
        Py_RETURN_NONE;
    PyObject *ip = fs_normalise(L.l + ip_s, ip_e - ip_s);
    if (ip == NULL)
        Py_RETURN_NONE;
    if (c->aggregate != Py_None && memchr(L.l + ip_s, ':', (size_t)(ip_e - ip_s)) != NULL) {
        Py_SETREF(ip, PyObject_CallOneArg(c->aggregate, ip));
        if (ip == NULL)
            return NULL;
    }
    PyObject *when = PyFloat_FromDouble(base + (double)sec);
    if (when == NULL) {
        Py_DECREF(ip);
        return NULL;
    }
    PyObject *ev = PyTuple_New(3);
    if (ev == NULL) {
        Py_DECREF(ip);
        Py_DECREF(when);
        return NULL;
    }
    Py_INCREF(c->names[form]);
    PyTuple_SET_ITEM(ev, 0, c->names[form]);
    PyTuple_SET_ITEM(ev, 1, ip);
    PyTuple_SET_ITEM(ev, 2, when);
    return ev;
}

/* the current line is complete: its event */
int fs_flush(Scan *sc) {
    if (sc->e < 0)
        return 0;
    int first = __builtin_ctz(sc->mask);
    Line L = {(const char *)sc->b + sc->s, sc->e - sc->s};
    PyObject *ev = decide(sc->ctx, L, sc->k->form[first]);
    if (ev == NULL)
        return -1;
    if (ev == Py_None) {
        Py_DECREF(ev);
        PyObject *at = PyLong_FromSsize_t(PyList_GET_SIZE(sc->events));
        ev = Py_BuildValue("(Onn)", Py_None, sc->s, sc->e);
        if (at == NULL || ev == NULL || PyList_Append(sc->slow, at) < 0) {
            Py_XDECREF(at);
            Py_XDECREF(ev);
            return -1;
        }
        Py_DECREF(at);
    }
    int rc = PyList_Append(sc->events, ev);
    Py_DECREF(ev);
    return rc;
}

static PyObject *scan(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer buf;
    PyObject *keys, *offsets, *forms, *names, *result = NULL;
    Ctx ctx = {0};
    Keys k;
    Py_ssize_t lines = 0;
    if (!PyArg_ParseTuple(args, "y*O!O!O!O!OOO", &buf, &PyTuple_Type, &keys, &PyTuple_Type,
                          &offsets, &PyTuple_Type, &forms, &PyTuple_Type, &names,
                          &ctx.minute_base, &ctx.hour_base, &ctx.aggregate))
        return NULL;
    Scan sc = {buf.buf, buf.len, 0, -1, 0, PyList_New(0), PyList_New(0), &ctx, &k};
    if (sc.events == NULL || sc.slow == NULL || fs_setup_keys(&k, keys, offsets, forms) < 0)
        goto done;
    if (PyTuple_GET_SIZE(names) != F_COUNT) {
        PyErr_SetString(PyExc_ValueError, "one rule name (or None) per form");
        goto done;
    }
    for (int f = 0; f < F_COUNT; f++) {
        PyObject *name = PyTuple_GET_ITEM(names, f);
        ctx.names[f] = PyUnicode_Check(name) ? name : NULL;
    }
    if (sc.n > 0 && sc.b[sc.n - 1] != '\n') {
        PyErr_SetString(PyExc_ValueError, "a block ends in a newline");
        goto done;
    }
    if (fs_search(&sc, &lines) == 0)
        result = Py_BuildValue("(OOn)", sc.events, sc.slow, lines);
done:
    Py_XDECREF(sc.events);
    Py_XDECREF(sc.slow);
    Py_XDECREF(ctx.base);
    PyBuffer_Release(&buf);
    return result;
}

/* use_search(name) -> the previous name: "generic" or "avx2" (where the CPU has it). For the
 * tests, which compare both searches on one machine; the module picks the best at import. */
static PyObject *use_search(PyObject *Py_UNUSED(self), PyObject *arg) {
    const char *want = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (want == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "a search name");
        return NULL;
    }
    const char *was = fs_use_search(want);
    if (was == NULL) {
        PyErr_Format(PyExc_ValueError, "no search %R on this machine", arg);
        return NULL;
    }
    return PyUnicode_FromString(was);
}

static PyMethodDef methods[] = {
    {"use_search", use_search, METH_O, "use_search(name) -> previous: 'generic' or 'avx2'"},
    {"scan", scan, METH_VARARGS,
     "scan(block, keys, offsets, forms, names, minute_base, hour_base, aggregate)\n"
     "-> (events, slow, lines)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastscan", "scan-log's hot path (see _fastscan.c)", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastscan(void) {
    fs_pick_search();
    return PyModule_Create(&module);
}
