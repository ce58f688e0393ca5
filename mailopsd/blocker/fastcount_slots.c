/* The counting loop's per-rule slots: a rule name's pending counters, its newest match time,
 * its spec and table, found by the name object's address (fastcount_state.h, _fastcount.c).
 */
#include "fastcount_state.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

void fc_clear_slots(Ctx *c) {
    for (int i = 0; i < c->nslots; i++) {
        Py_CLEAR(c->slot[i].name);
        Py_CLEAR(c->slot[i].last_obj);
        Py_CLEAR(c->slot[i].spec);
        Py_CLEAR(c->slot[i].table);
    }
    c->nslots = 0;
    for (int i = 0; i < NAME_CACHE; i++)
        Py_CLEAR(c->cache_name[i]);
}

static int slot_from_cache(Ctx *c, PyObject *name) {
    size_t h = ((size_t)(uintptr_t)name >> 4 ^ (size_t)(uintptr_t)name >> 10) % NAME_CACHE;
    return c->cache_name[h] == name ? c->cache_slot[h] : -1;
}

static void cache_put(Ctx *c, PyObject *name, int slot) {
    size_t h = ((size_t)(uintptr_t)name >> 4 ^ (size_t)(uintptr_t)name >> 10) % NAME_CACHE;
    Py_INCREF(name);
    Py_XSETREF(c->cache_name[h], name);
    c->cache_slot[h] = slot;
}

/* the slot of a rule name (an exact str): by the object, else by equality; NULL on error */
Slot *fc_slot_of(Ctx *c, PyObject *name) {
    int i = slot_from_cache(c, name);
    if (i >= 0)
        return &c->slot[i];
    for (i = 0; i < c->nslots; i++) {
        PyObject *n = c->slot[i].name;
        if (n == name || (PyUnicode_GET_LENGTH(n) == PyUnicode_GET_LENGTH(name) &&
                          PyUnicode_Compare(n, name) == 0)) {
            cache_put(c, name, i);
            return &c->slot[i];
        }
    }
    if (c->nslots == MAX_SLOTS) { /* more names than slots: start again */
        if (fc_flush(c) < 0)
            return NULL;
        fc_clear_slots(c);
    }
    Slot *s = &c->slot[c->nslots];
    memset(s, 0, sizeof *s);
    Py_INCREF(name);
    s->name = name;
    s->kind = PyUnicode_CompareWithASCIIString(name, FC_AUTHENTICATED) == 0 ? K_AUTH
              : PyUnicode_CompareWithASCIIString(name, "no-rdns") == 0    ? K_NO_RDNS
                                                                         : K_OTHER;
    cache_put(c, name, c->nslots);
    return &c->slot[c->nslots++];
}

/* d[name] += 1 (matches or unmatched): pending in the slot once the key is known to exist */
int fc_count_in(PyObject *d, Slot *s, int *known, Py_ssize_t *pending) {
    if (!*known) {
        int has = PyDict_Contains(d, s->name);
        if (has < 0)
            return -1;
        if (!has) { /* a new key goes in now: the dict's order is the Python loop's */
            if (fc_dict_add(d, s->name, 1) < 0)
                return -1;
            *known = 1;
            return 0;
        }
        *known = 1;
    }
    ++*pending;
    return 0;
}

/* if w > _last_match.get(name, -inf): _last_match[name] = wobj (w) */
int fc_note_last(Ctx *c, Slot *s, double w, PyObject *wobj) {
    if (s->last_state == L_UNREAD) {
        PyObject *v = PyDict_GetItemWithError(c->last, s->name);
        if (v == NULL && PyErr_Occurred())
            return -1;
        if (v != NULL && fc_num(v, &s->last) < 0)
            return -1;
        s->last_state = v == NULL ? L_ABSENT : L_KNOWN;
    }
    if (s->last_state == L_KNOWN) {
        if (w > s->last) {
            s->last = w;
            Py_INCREF(wobj);
            Py_XSETREF(s->last_obj, wobj);
        }
    } else if (w > -INFINITY) { /* a new key goes in now, in order */
        if (PyDict_SetItem(c->last, s->name, wobj) < 0)
            return -1;
        s->last = w;
        s->last_state = L_KNOWN;
    }
    return 0;
}

/* the slot's spec (policy.rules.get(name); its maxretry and findtime cached while it is the
 * same object) and table (policy._hits[name]), read again after every callback */
int fc_refresh(Ctx *c, Slot *s) {
    PyObject *v = PyDict_GetItemWithError(c->rules, s->name);
    if (v == NULL && PyErr_Occurred())
        return -1;
    s->enabled = v != NULL;
    if (v != NULL && v != s->spec) {
        Py_INCREF(v);
        PyObject *m = PyObject_GetAttr(v, S_maxretry);
        Py_ssize_t maxretry = m == NULL ? -1 : PyLong_AsSsize_t(m);
        Py_XDECREF(m);
        if ((maxretry == -1 && PyErr_Occurred()) ||
            fc_num_attr(v, S_findtime, &s->findtime) < 0) {
            Py_DECREF(v);
            return -1;
        }
        s->maxretry = maxretry;
        Py_XSETREF(s->spec, v);
    }
    if ((v = PyDict_GetItemWithError(c->tables, s->name)) == NULL && PyErr_Occurred())
        return -1;
    if (v != NULL && !PyDict_CheckExact(v)) {
        PyErr_SetString(PyExc_TypeError, "policy._hits must hold dicts");
        return -1;
    }
    Py_XINCREF(v);
    Py_XSETREF(s->table, v);
    s->fresh = 1;
    return 0;
}
