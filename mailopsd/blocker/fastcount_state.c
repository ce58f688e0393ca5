/* The counting loop's view of a BanPolicy: its tables read once per call, its scalars cached
 * in C and written back before every callback (with the per-rule counters of
 * fastcount_slots.c), the callbacks, the _tick() step. See _fastcount.c.
 *
 * Only exact dicts, lists, floats, ints and strs are touched here, so no Python code runs
 * between two callbacks except a finalizer run by the garbage collector on an allocation:
 * every object used across an allocation is held by a reference of our own.
 */
#include "fastcount_state.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

PyObject *S_matches, *S_last_match, *S_unmatched, *S_rules, *S_banned, *S_auth, *S_hits,
    *S_exempting, *S_config, *S_auth_exempt, *S_compact_obj, *S_dirty, *S_ignore, *S_newest,
    *S_since_prune, *S_prune_at, *S_compact_at, *S_n, *S_exempted, *S_ignored, *S_maxretry,
    *S_findtime, *S_prune, *S_compact, *S_uncompact, *S_decide, *S_contains, *S_append;

int fc_init_names(void) {
    struct {
        PyObject **var;
        const char *text;
    } names[] = {
        {&S_matches, "matches"},         {&S_last_match, "_last_match"},
        {&S_unmatched, "unmatched"},     {&S_rules, "rules"},
        {&S_banned, "_banned"},          {&S_auth, "_auth"},
        {&S_hits, "_hits"},              {&S_exempting, "_exempting"},
        {&S_config, "config"},           {&S_auth_exempt, "auth_exempt"},
        {&S_compact_obj, "_compact"},    {&S_dirty, "_dirty"},
        {&S_ignore, "ignore"},           {&S_newest, "_newest"},
        {&S_since_prune, "_since_prune"}, {&S_prune_at, "_prune_at"},
        {&S_compact_at, "_compact_at"},  {&S_n, "n"},
        {&S_exempted, "exempted"},       {&S_ignored, "ignored"},
        {&S_maxretry, "maxretry"},       {&S_findtime, "findtime"},
        {&S_prune, "prune"},             {&S_compact, "compact"},
        {&S_uncompact, "_uncompact"},    {&S_decide, "_decide"},
        {&S_contains, "contains"},       {&S_append, "append"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (*names[i].var == NULL &&
            (*names[i].var = PyUnicode_InternFromString(names[i].text)) == NULL)
            return -1;
    }
    return 0;
}

/* a float (config.Duration is one) or an int as a double; TypeError for anything else */
int fc_num(PyObject *o, double *d) {
    if (PyFloat_Check(o)) { /* the value itself: no Python code */
        *d = PyFloat_AS_DOUBLE(o);
        return 0;
    }
    if (PyLong_CheckExact(o) || PyBool_Check(o)) {
        *d = PyLong_AsDouble(o);
        return *d == -1.0 && PyErr_Occurred() ? -1 : 0;
    }
    PyErr_Format(PyExc_TypeError, "expected a float or an int, not %.100s", Py_TYPE(o)->tp_name);
    return -1;
}

int fc_num_attr(PyObject *o, PyObject *attr, double *d) {
    PyObject *v = PyObject_GetAttr(o, attr);
    if (v == NULL)
        return -1;
    int rc = fc_num(v, d);
    Py_DECREF(v);
    return rc;
}

/* d[key] = d.get(key, 0) + delta */
int fc_dict_add(PyObject *d, PyObject *key, Py_ssize_t delta) {
    PyObject *old = PyDict_GetItemWithError(d, key), *sum;
    if (old == NULL && PyErr_Occurred())
        return -1;
    Py_XINCREF(old);
    PyObject *inc = PyLong_FromSsize_t(delta);
    if (inc == NULL || old == NULL) {
        sum = inc;
    } else {
        sum = PyNumber_Add(old, inc);
        Py_DECREF(inc);
    }
    Py_XDECREF(old);
    if (sum == NULL)
        return -1;
    int rc = PyDict_SetItem(d, key, sum);
    Py_DECREF(sum);
    return rc;
}

static int set_attr(PyObject *o, PyObject *attr, PyObject *v) {
    if (v == NULL)
        return -1;
    int rc = PyObject_SetAttr(o, attr, v);
    Py_DECREF(v);
    return rc;
}

/* policy.exempted += d */
static int add_exempted(Ctx *c) {
    PyObject *old = PyObject_GetAttr(c->p, S_exempted), *inc = NULL, *sum = NULL;
    if (old != NULL && (inc = PyLong_FromSsize_t(c->d_exempted)) != NULL)
        sum = PyNumber_Add(old, inc);
    Py_XDECREF(old);
    Py_XDECREF(inc);
    return set_attr(c->p, S_exempted, sum);
}

/* Write the cached state back to the policy; every per-rule cache is read again after this.
 * Each pending value is cleared only once written: a failure leaves the rest pending. */
int fc_flush(Ctx *c) {
    if (c->newest_obj != NULL) {
        if (PyObject_SetAttr(c->p, S_newest, c->newest_obj) < 0)
            return -1;
        Py_CLEAR(c->newest_obj);
    }
    if (c->since_dirty) {
        if (set_attr(c->p, S_since_prune, PyLong_FromSsize_t(c->since_prune)) < 0)
            return -1;
        c->since_dirty = 0;
    }
    if (c->d_exempted) {
        if (add_exempted(c) < 0)
            return -1;
        c->d_exempted = 0;
    }
    for (int i = 0; i < c->nslots; i++) {
        Slot *s = &c->slot[i];
        if (s->d_matches) {
            if (fc_dict_add(c->matches, s->name, s->d_matches) < 0)
                return -1;
            s->d_matches = 0;
        }
        if (s->d_unmatched) {
            if (fc_dict_add(c->unmatched, s->name, s->d_unmatched) < 0)
                return -1;
            s->d_unmatched = 0;
        }
        if (s->last_obj != NULL) {
            if (PyDict_SetItem(c->last, s->name, s->last_obj) < 0)
                return -1;
            Py_CLEAR(s->last_obj);
        }
        s->m_known = s->u_known = s->fresh = 0;
        s->last_state = L_UNREAD;
    }
    return 0;
}

/* read the policy's scalars (at the start and after every callback) */
int fc_reload(Ctx *c) {
    c->stale = 0;
    PyObject *v;
    if (fc_num_attr(c->p, S_newest, &c->newest) < 0 ||
        fc_num_attr(c->p, S_prune_at, &c->prune_at) < 0)
        return -1;
    if ((v = PyObject_GetAttr(c->p, S_since_prune)) == NULL)
        return -1;
    c->since_prune = PyLong_Check(v) ? PyLong_AsSsize_t(v) : -1;
    if (!PyLong_Check(v))
        PyErr_SetString(PyExc_TypeError, "policy._since_prune must be an int");
    Py_DECREF(v);
    if (c->since_prune == -1 && PyErr_Occurred())
        return -1;
    if ((v = PyObject_GetAttr(c->compacted, S_n)) == NULL)
        return -1;
    c->compact_n = PyObject_IsTrue(v);
    Py_DECREF(v);
    return c->compact_n < 0 ? -1 : 0;
}

/* a callback, args[0] the object: the policy written back before, read again before the
 * next use of a cached scalar (FC_FRESH) */
PyObject *fc_call(Ctx *c, PyObject *meth, PyObject *const *args, size_t nargs) {
    if (FC_REST(c) < 0 || fc_flush(c) < 0)
        return NULL;
    c->stale = 1;
    return PyObject_VectorcallMethod(meth, args, nargs, NULL);
}

int fc_call_void(Ctx *c, PyObject *meth, PyObject *const *args, size_t nargs) {
    PyObject *r = fc_call(c, meth, args, nargs);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* policy.<attr> as an exact dict (or None where allowed): a new reference in *out */
static int get_dict(PyObject *o, PyObject *attr, PyObject **out, int none_ok) {
    PyObject *v = PyObject_GetAttr(o, attr);
    *out = NULL;
    if (v == NULL)
        return -1;
    if (none_ok && v == Py_None) {
        Py_DECREF(v);
        return 0;
    }
    if (!PyDict_CheckExact(v)) {
        PyErr_Format(PyExc_TypeError, "policy.%U must be a dict", attr);
        Py_DECREF(v);
        return -1;
    }
    *out = v;
    return 0;
}

/* the policy's tables, read once per call as the Python loop does: here those every match
 * needs; fc_rest the others, on first use and in any case before Python code can run */
int fc_setup(Ctx *c) {
    PyObject *p = c->p, *v;
    if (get_dict(p, S_matches, &c->matches, 0) < 0 || get_dict(p, S_last_match, &c->last, 0) < 0 ||
        get_dict(p, S_rules, &c->rules, 0) < 0 || get_dict(p, S_banned, &c->banned, 0) < 0 ||
        get_dict(p, S_hits, &c->tables, 0) < 0)
        return -1;
    if ((c->compacted = PyObject_GetAttr(p, S_compact_obj)) == NULL)
        return -1;
    if ((v = PyObject_GetAttr(p, S_dirty)) == NULL)
        return -1;
    if (v != Py_None && !PySet_CheckExact(v)) {
        PyErr_SetString(PyExc_TypeError, "policy._dirty must be a set or None");
        Py_DECREF(v);
        return -1;
    }
    if (v == Py_None)
        Py_DECREF(v);
    else
        c->dirty = v;
    c->stale = 1; /* the scalars: read when first used */
    return 0;
}

/* the tables of unmatched lines, logins and the ignore list */
int fc_rest(Ctx *c) {
    PyObject *p = c->p, *v;
    c->rest = 1;
    if (get_dict(p, S_unmatched, &c->unmatched, 0) < 0 || get_dict(p, S_auth, &c->auth, 0) < 0)
        return -1;
    if ((v = PyObject_GetAttr(p, S_exempting)) == NULL)
        return -1;
    int exempting = PyObject_IsTrue(v);
    Py_DECREF(v);
    if (exempting < 0 || (v = PyObject_GetAttr(p, S_config)) == NULL)
        return -1;
    PyObject *ex = PyObject_GetAttr(v, S_auth_exempt);
    Py_DECREF(v);
    int rc = ex == NULL ? -1 : fc_num(ex, &c->exempt_for);
    Py_XDECREF(ex);
    if (rc < 0 || (c->ignore = PyObject_GetAttr(p, S_ignore)) == NULL)
        return -1;
    /* present whenever exempting (no-rdns enabled) */
    v = PyDict_GetItemString(c->tables, "no-rdns");
    if (v != NULL && !PyDict_CheckExact(v)) {
        PyErr_SetString(PyExc_TypeError, "policy._hits must hold dicts");
        return -1;
    }
    Py_XINCREF(v);
    c->no_rdns = v;
    c->auth_on = exempting && v != NULL;
    return 0;
}

/* _tick(): one more stored match towards the next prune; every 1024, the compaction check */
int fc_tick(Ctx *c) {
    if (FC_FRESH(c) < 0)
        return -1;
    c->since_prune++;
    c->since_dirty = 1;
    if ((double)c->since_prune >= c->prune_at) {
        PyObject *args[] = {c->p};
        if (fc_call_void(c, S_prune, args, 1) < 0 || fc_reload(c) < 0) /* _since_prune is 0 */
            return -1;
    }
    if (c->since_prune & 1023)
        return 0;
    PyObject *hits = PyObject_GetAttr(c->p, S_hits), *key, *t;
    if (hits == NULL)
        return -1;
    Py_ssize_t pos = 0, total = 0;
    int rc = 0;
    if (!PyDict_CheckExact(hits)) {
        PyErr_SetString(PyExc_TypeError, "policy._hits must be a dict");
        rc = -1;
    }
    while (rc == 0 && PyDict_Next(hits, &pos, &key, &t)) {
        if (PyDict_CheckExact(t)) {
            total += PyDict_GET_SIZE(t);
        } else {
            PyErr_SetString(PyExc_TypeError, "policy._hits must hold dicts");
            rc = -1;
        }
    }
    Py_DECREF(hits);
    double compact_at;
    if (rc == 0 && (rc = fc_num_attr(c->p, S_compact_at, &compact_at)) == 0 &&
        (double)total >= compact_at) {
        PyObject *args[] = {c->p};
        rc = fc_call_void(c, S_compact, args, 1);
    }
    return rc;
}

/* bisect.bisect_right(hits, x): the first index whose item is > x; -1 on error */
Py_ssize_t fc_bisect_right(PyObject *hits, double x) {
    Py_ssize_t lo = 0, hi = PyList_GET_SIZE(hits);
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        double v;
        if (fc_num(PyList_GET_ITEM(hits, mid), &v) < 0)
            return -1;
        if (x < v)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}
