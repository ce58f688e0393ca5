/* The ban policy's counting loop in C: blocker/batch.py's _count_events_py, which is its
 * reference (and the fallback without this module).
 *
 * count(policy, events, out) -> None
 *
 * Counts every event into the BanPolicy ``policy`` in order and appends its ban decisions to
 * the list ``out``. It works on the same Python objects as the Python loop (the policy's
 * dicts, the float-or-list hits, the dirty set), step by step in the same order, so the two
 * agree by construction; the rare steps stay the policy's methods, called back: prune,
 * compact, _uncompact, _decide and ignore.contains. _newest, _since_prune, exempted and, per
 * rule, the pending matches / unmatched counts and the newest match time are kept in C and
 * written back before every callback, at the end, and when an exception leaves; after a
 * callback, what it can change is read again (fastcount_state.c).
 *
 * Events are input in a root tool: an event must be a tuple of 3, (rule: str, address: str,
 * time: float or int) or (rule, None, anything) for an unmatched line; anything else raises
 * TypeError (also a str time, which the Python loop's float() would take). A list or tuple of
 * events is read by index (as its iterator would: the length checked at every step); any other
 * iterable is treated like a callback, since its next() may run Python code.
 */
#include "fastcount_state.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* the hits of a matched (rule, ip) once stored or in hand: the window, then the threshold */
static int window(Slot *s, PyObject *hits) {
    Py_ssize_t n = PyList_GET_SIZE(hits);
    double top;
    if (fc_num(PyList_GET_ITEM(hits, n - 1), &top) < 0)
        return -1;
    /* the window is (newest - findtime, newest]: a hit exactly findtime old is out */
    Py_ssize_t drop = fc_bisect_right(hits, top - s->findtime);
    if (drop < 0)
        return -1;
    Py_ssize_t over = s->maxretry <= 0 ? n : n - s->maxretry;
    if (over > drop)
        drop = over;
    return drop > 0 ? PyList_SetSlice(hits, 0, drop, NULL) : 0;
}

static int threshold(Ctx *c, PyObject *spec, PyObject *table, PyObject *rule, PyObject *ip,
                     PyObject *hits) {
    if (FC_REST(c) < 0)
        return -1;
    PyObject *a1[] = {c->ignore, ip};
    PyObject *r = fc_call(c, S_contains, a1, 2);
    if (r == NULL)
        return -1;
    int ignored = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (ignored < 0)
        return -1;
    if (ignored) {
        PyObject *counts = PyObject_GetAttr(c->p, S_ignored);
        int rc = counts == NULL               ? -1
                 : PyDict_CheckExact(counts) ? fc_dict_add(counts, rule, 1)
                                             : -2;
        Py_XDECREF(counts);
        if (rc == -2)
            PyErr_SetString(PyExc_TypeError, "policy.ignored must be a dict");
        if (rc < 0)
            return -1;
        /* with maxretry 1 the first hit was never stored */
        PyObject *had = PyDict_GetItemWithError(table, ip);
        if (had == NULL)
            return PyErr_Occurred() ? -1 : 0;
        return PyDict_DelItem(table, ip);
    }
    PyObject *a2[] = {c->p, ip, spec, hits};
    PyObject *d = fc_call(c, S_decide, a2, 4);
    if (d == NULL)
        return -1;
    int rc;
    if (PyList_CheckExact(c->out)) {
        rc = PyList_Append(c->out, d);
    } else {
        PyObject *a3[] = {c->out, d};
        rc = fc_call_void(c, S_append, a3, 2);
    }
    Py_DECREF(d);
    return rc;
}

/* a match of an enabled rule, past the ban and exemption checks: count it in its table */
static int hit(Ctx *c, Slot *s, PyObject *spec, PyObject *table, PyObject *rule, PyObject *ip,
               double w, PyObject *wobj) {
    PyObject *old = PyDict_GetItemWithError(table, ip), *hits = NULL;
    if (old == NULL && PyErr_Occurred())
        return -1;
    Py_XINCREF(old);
    if (old == NULL && c->compact_n) {
        PyObject *args[] = {c->p, ip};
        PyObject *r = fc_call(c, S_uncompact, args, 2);
        int back = r == NULL ? -1 : PyObject_IsTrue(r);
        Py_XDECREF(r);
        if (back < 0)
            return -1;
        if (back && (old = PyDict_GetItemWithError(table, ip)) == NULL && PyErr_Occurred())
            return -1;
        Py_XINCREF(old);
    }
    int rc = -1;
    if (c->dirty != NULL && PySet_Add(c->dirty, ip) < 0)
        goto done;
    if (old == NULL) {
        if (s->maxretry > 1) { /* most addresses are seen once: a bare float, not a list */
            rc = PyDict_SetItem(table, ip, wobj) < 0 ? -1 : fc_tick(c);
            goto done;
        }
        if ((hits = PyList_New(1)) == NULL)
            goto done;
        Py_INCREF(wobj);
        PyList_SET_ITEM(hits, 0, wobj);
    } else {
        if (PyFloat_CheckExact(old)) {
            if ((hits = PyList_New(2)) == NULL)
                goto done;
            int later = w >= PyFloat_AS_DOUBLE(old);
            Py_INCREF(old);
            Py_INCREF(wobj);
            PyList_SET_ITEM(hits, later ? 0 : 1, old);
            PyList_SET_ITEM(hits, later ? 1 : 0, wobj);
            if (PyDict_SetItem(table, ip, hits) < 0)
                goto done;
        } else if (PyList_CheckExact(old)) {
            Py_INCREF(old);
            hits = old;
            Py_ssize_t n = PyList_GET_SIZE(hits);
            double top;
            if (n == 0) {
                PyErr_SetString(PyExc_IndexError, "list index out of range");
                goto done;
            }
            if (fc_num(PyList_GET_ITEM(hits, n - 1), &top) < 0)
                goto done;
            if (w >= top) {
                if (PyList_Append(hits, wobj) < 0)
                    goto done;
            } else { /* lines from several Exim processes can be slightly out of order */
                Py_ssize_t at = fc_bisect_right(hits, w);
                if (at < 0 || PyList_Insert(hits, at, wobj) < 0)
                    goto done;
            }
        } else {
            PyErr_Format(PyExc_TypeError, "hits must be a float or a list, not %.100s",
                         Py_TYPE(old)->tp_name);
            goto done;
        }
        if (window(s, hits) < 0)
            goto done;
    }
    if (PyList_GET_SIZE(hits) >= s->maxretry)
        rc = threshold(c, spec, table, rule, ip, hits);
    else
        rc = fc_tick(c);
done:
    Py_XDECREF(old);
    Py_XDECREF(hits);
    return rc;
}

/* an enabled rule's match: already banned, exempted by a login, or counted */
static int match(Ctx *c, Slot *s, PyObject *spec, PyObject *rule, PyObject *ip, double w,
                 PyObject *wobj) {
    PyObject *until = PyDict_GetItemWithError(c->banned, ip);
    double t;
    if (until == NULL && PyErr_Occurred())
        return -1;
    if (until != NULL) {
        if (until == Py_None)
            return 0; /* already banned: one decision per ban */
        if (fc_num(until, &t) < 0)
            return -1;
        if (w < t)
            return 0;
        if (PyDict_DelItem(c->banned, ip) < 0)
            return -1;
    }
    if (s->kind == K_NO_RDNS) {
        PyObject *login = PyDict_GetItemWithError(c->auth, ip);
        if (login == NULL && PyErr_Occurred())
            return -1;
        if (login != NULL && login != Py_None) {
            if (fc_num(login, &t) < 0)
                return -1;
            if (w - t <= c->exempt_for) {
                c->d_exempted++;
                return 0;
            }
        }
    }
    PyObject *table = s->table;
    if (table == NULL) {
        PyErr_SetObject(PyExc_KeyError, rule);
        return -1;
    }
    Py_INCREF(table);
    int rc = hit(c, s, spec, table, rule, ip, w, wobj);
    Py_DECREF(table);
    return rc;
}

/* a successful login: exempts the address's no-rdns hits for auth_exempt */
static int login(Ctx *c, PyObject *ip, double w, PyObject *wobj) {
    PyObject *old = PyDict_GetItemWithError(c->auth, ip);
    double t = -INFINITY;
    if (old == NULL && PyErr_Occurred())
        return -1;
    if (old != NULL && fc_num(old, &t) < 0)
        return -1;
    if (w > t && PyDict_SetItem(c->auth, ip, wobj) < 0)
        return -1;
    /* the no-rdns hits of this user's own earlier connections do not count either */
    if (c->compact_n) {
        PyObject *args[] = {c->p, ip};
        if (fc_call_void(c, S_uncompact, args, 2) < 0)
            return -1;
    }
    PyObject *had = PyDict_GetItemWithError(c->no_rdns, ip);
    if (had == NULL && PyErr_Occurred())
        return -1;
    if (had != NULL && PyDict_DelItem(c->no_rdns, ip) < 0)
        return -1;
    return c->dirty == NULL ? 0 : PySet_Add(c->dirty, ip);
}

static int matched(Ctx *c, PyObject *rule, PyObject *ip, double w, PyObject *wobj) {
    if (FC_FRESH(c) < 0)
        return -1;
    if (w > c->newest) {
        c->newest = w;
        Py_INCREF(wobj);
        Py_XSETREF(c->newest_obj, wobj);
    }
    Slot *s = fc_slot_of(c, rule);
    if (s == NULL || (s->kind != K_OTHER && FC_REST(c) < 0) ||
        fc_count_in(c->matches, s, &s->m_known, &s->d_matches) < 0 ||
        fc_note_last(c, s, w, wobj) < 0)
        return -1;
    if (s->kind == K_AUTH)
        return c->auth_on ? login(c, ip, w, wobj) : 0;
    if (!s->fresh && fc_refresh(c, s) < 0)
        return -1;
    if (!s->enabled)
        return 0; /* a rule not enabled: counted, nothing more */
    PyObject *spec = s->spec;
    Py_INCREF(spec);
    int rc = match(c, s, spec, rule, ip, w, wobj);
    Py_DECREF(spec);
    return rc;
}

static int event(Ctx *c, PyObject *ev) {
    if (!PyTuple_Check(ev) || PyTuple_GET_SIZE(ev) != 3) {
        PyErr_Format(PyExc_TypeError, "an event is a tuple (rule, address, time), not %.100s",
                     Py_TYPE(ev)->tp_name);
        return -1;
    }
    PyObject *rule = PyTuple_GET_ITEM(ev, 0), *ip = PyTuple_GET_ITEM(ev, 1),
             *when = PyTuple_GET_ITEM(ev, 2), *wobj;
    if (ip == Py_None) { /* a keyword line its rule rejected */
        if (FC_REST(c) < 0)
            return -1;
        if (PyUnicode_CheckExact(rule)) {
            Slot *s = fc_slot_of(c, rule);
            return s == NULL ? -1 : fc_count_in(c->unmatched, s, &s->u_known, &s->d_unmatched);
        }
        /* any other key, as the Python loop would: its hash and == may run Python code */
        if (fc_flush(c) < 0 || fc_dict_add(c->unmatched, rule, 1) < 0)
            return -1;
        c->stale = 1;
        return 0;
    }
    if (!PyUnicode_CheckExact(rule) || !PyUnicode_CheckExact(ip)) {
        PyErr_SetString(PyExc_TypeError, "an event's rule and address must be str");
        return -1;
    }
    double w;
    if (PyFloat_CheckExact(when)) { /* single hits are stored as the event's own float */
        w = PyFloat_AS_DOUBLE(when);
        Py_INCREF(when);
        wobj = when;
    } else if (PyLong_CheckExact(when) || PyBool_Check(when)) {
        if ((w = PyLong_AsDouble(when)) == -1.0 && PyErr_Occurred())
            return -1;
        if ((wobj = PyFloat_FromDouble(w)) == NULL)
            return -1;
    } else {
        PyErr_Format(PyExc_TypeError, "an event's time must be a float or an int, not %.100s",
                     Py_TYPE(when)->tp_name);
        return -1;
    }
    int rc = matched(c, rule, ip, w, wobj);
    Py_DECREF(wobj);
    return rc;
}

static int run(Ctx *c, PyObject *events) {
    if (PyList_CheckExact(events) || PyTuple_CheckExact(events)) {
        int list = PyList_CheckExact(events);
        for (Py_ssize_t i = 0;; i++) { /* a callback may change the list: as its iterator */
            Py_ssize_t n = list ? PyList_GET_SIZE(events) : PyTuple_GET_SIZE(events);
            if (i >= n)
                return 0;
            PyObject *ev = list ? PyList_GET_ITEM(events, i) : PyTuple_GET_ITEM(events, i);
            Py_INCREF(ev);
            int rc = event(c, ev);
            Py_DECREF(ev);
            if (rc < 0)
                return -1;
        }
    }
    if (FC_REST(c) < 0)
        return -1;
    PyObject *it = PyObject_GetIter(events); /* may run Python code: read the policy again */
    if (it == NULL)
        return -1;
    c->stale = 1;
    int rc = 0;
    while (rc == 0) { /* its next() may run Python code: as a callback */
        PyObject *ev = fc_flush(c) < 0 ? NULL : PyIter_Next(it);
        if (ev == NULL) {
            rc = PyErr_Occurred() ? -1 : 0;
            break;
        }
        c->stale = 1;
        rc = event(c, ev);
        Py_DECREF(ev);
    }
    Py_DECREF(it);
    return rc;
}

static PyObject *count(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "count(policy, events, out) takes 3 arguments");
        return NULL;
    }
    Ctx c;
    memset(&c, 0, offsetof(Ctx, slot)); /* each slot is set up when it is first used */
    Py_INCREF(args[0]);
    c.p = args[0];
    Py_INCREF(args[2]);
    c.out = args[2];
    int rc = fc_setup(&c);
    if (rc == 0) {
        rc = run(&c, args[1]);
        if (rc == 0) {
            rc = fc_flush(&c);
        } else { /* the policy is left consistent: what was counted is written back */
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            if (fc_flush(&c) < 0)
                PyErr_WriteUnraisable(c.p);
            PyErr_Restore(type, value, tb);
        }
    }
    fc_clear_slots(&c);
    PyObject **owned[] = {&c.p, &c.matches, &c.last, &c.unmatched, &c.rules, &c.banned, &c.auth,
                          &c.tables, &c.compacted, &c.dirty, &c.ignore, &c.no_rdns, &c.out,
                          &c.newest_obj};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        Py_CLEAR(*owned[i]);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"count", (PyCFunction)(void (*)(void))count, METH_FASTCALL,
     "count(policy, events, out) -> None: count every event into the BanPolicy in order,\n"
     "appending its ban decisions to the list out (blocker.batch._count_events_py in C)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastcount", "the ban policy's counting loop (see _fastcount.c)", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastcount(void) {
    if (fc_init_names() < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddStringConstant(m, "AUTHENTICATED", FC_AUTHENTICATED) < 0)
        Py_CLEAR(m);
    return m;
}
