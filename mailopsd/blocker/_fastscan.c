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
#include "fastscan_lines.h"

#include <stdint.h>
#include <string.h>

#define MAX_KEYS 16

typedef struct {
    PyObject *names[F_COUNT]; /* borrowed rule names per form */
    PyObject *minute_base;    /* minute text -> epoch or None (parse's cache) */
    PyObject *hour_base;      /* hour text -> epoch of its minute 0 if plain, else None */
    PyObject *aggregate;      /* None, or IPv6 address -> its /64 */
    char minute[16];          /* the last minute asked and its answer */
    PyObject *base;           /* owned; NULL: none asked yet */
    char hour[13];            /* the last hour asked ("YYYY-MM-DD HH") and its answer */
    int hour_asked, hour_plain;
    double hour_epoch;
} Ctx;

/* The epoch of the line's minute (its stamp checked by fs_stamp): 1 and *base, 0 if Python
 * has none (an invalid minute), -1 on a Python error. A plain hour (parse.plain_hour: one UTC
 * offset in and around it) gives its minute m as start + 60 m, exactly parse's reading, with
 * one call per hour; other hours ask minute_base per minute. */
static int minute_epoch(Ctx *c, const char *stamp, double *base) {
    if (!c->hour_asked || memcmp(c->hour, stamp, 13) != 0) {
        PyObject *h = PyUnicode_DecodeASCII(stamp, 13, "strict");
        if (h == NULL)
            return -1;
        PyObject *r = PyObject_CallOneArg(c->hour_base, h);
        Py_DECREF(h);
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
        PyObject *m = PyUnicode_DecodeASCII(stamp, 16, "strict");
        if (m == NULL)
            return -1;
        PyObject *b = PyObject_CallOneArg(c->minute_base, m);
        Py_DECREF(m);
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

/* -- finding the lines that hold a key: one pass over the block -------------------------- */

/* The portable search: 32 bytes a step with GCC's vector extension (SSE2 on any x86-64, NEON
 * ...). x86-64 machines with AVX2 use find_lines_avx2 below instead, chosen at import. */
#define VW 32
typedef unsigned char vec __attribute__((vector_size(VW)));

/* (by pointer: passing a 32-byte vector by value has no fixed ABI without AVX) */
static inline void loadv(vec *v, const unsigned char *p) { memcpy(v, p, sizeof *v); }
static inline int anyv(const vec *v) {
    uint64_t w[VW / 8], o = 0;
    memcpy(w, v, sizeof w);
    for (int i = 0; i < VW / 8; i++)
        o |= w[i];
    return o != 0;
}
static inline void splat(vec *v, unsigned char c) { memset(v, c, sizeof *v); }

typedef struct {
    int nkeys;
    const unsigned char *key[MAX_KEYS];
    Py_ssize_t len[MAX_KEYS], off[MAX_KEYS];
    int form[MAX_KEYS];
    int npairs;
    unsigned char pa[MAX_KEYS], pb[MAX_KEYS]; /* distinct byte pairs */
    unsigned keys_of[MAX_KEYS];               /* pair -> mask of the keys it stands for */
} Keys;

typedef struct {
    const unsigned char *b;
    Py_ssize_t n;
    Py_ssize_t s, e; /* the current line [s, e), e at its "\n"; e = -1: none */
    unsigned mask;   /* keys seen in it */
    PyObject *events, *slow;
    Ctx *ctx;
    const Keys *k;
} Scan;

/* the current line is complete: its event */
static int flush(Scan *sc) {
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

/* the pair at q: record every key that really starts where it says */
static int pair_hits(Scan *sc, Py_ssize_t q) {
    const Keys *k = sc->k;
    for (int p = 0; p < k->npairs; p++) {
        if (sc->b[q] != k->pa[p] || sc->b[q + 1] != k->pb[p])
            continue;
        for (int i = 0; i < k->nkeys; i++) {
            if (!(k->keys_of[p] >> i & 1u))
                continue;
            Py_ssize_t st = q - k->off[i];
            if (st < 0 || k->len[i] > sc->n - st || memcmp(sc->b + st, k->key[i], (size_t)k->len[i]))
                continue;
            if (q >= sc->e) { /* a new line: flush the last one, find this one's ends */
                Py_ssize_t lo = sc->e + 1;
                if (flush(sc) < 0)
                    return -1;
                const unsigned char *nl = memrchr(sc->b + lo, '\n', (size_t)(q - lo));
                sc->s = nl == NULL ? lo : nl - sc->b + 1;
                nl = memchr(sc->b + q, '\n', (size_t)(sc->n - q));
                sc->e = nl == NULL ? sc->n : nl - sc->b; /* the caller ends blocks in "\n" */
                sc->mask = 0;
            }
            sc->mask |= 1u << i;
        }
    }
    return 0;
}

/* the bytes after the last whole step: one at a time */
static int search_tail(Scan *sc, Py_ssize_t q, Py_ssize_t count, Py_ssize_t *lines) {
    for (; q < sc->n; q++) {
        count += sc->b[q] == '\n';
        if (q + 1 < sc->n && pair_hits(sc, q) < 0)
            return -1;
    }
    *lines = count;
    return flush(sc);
}

static int find_lines(Scan *sc, Py_ssize_t *lines) {
    const unsigned char *b = sc->b;
    Py_ssize_t n = sc->n, q = 0, count = 0;
    const Keys *k = sc->k;
    vec a[MAX_KEYS], z[MAX_KEYS], nlv, acc, zero;
    splat(&nlv, '\n');
    splat(&zero, 0);
    acc = zero;
    for (int p = 0; p < k->npairs; p++) {
        splat(&a[p], k->pa[p]);
        splat(&z[p], k->pb[p]);
    }
    int rounds = 0;
    for (; q + VW + 1 <= n; q += VW) {
        vec v0, v1, m = zero;
        loadv(&v0, b + q);
        loadv(&v1, b + q + 1);
        acc -= (vec)(v0 == nlv); /* +1 per newline (a true lane is -1) */
        for (int p = 0; p < k->npairs; p++)
            m |= (vec)(v0 == a[p]) & (vec)(v1 == z[p]);
        if (anyv(&m)) { /* each lane is 0 or 0xff: visit the set ones in order, 8 a word */
            uint64_t w[VW / 8];
            memcpy(w, &m, sizeof w);
            for (int i = 0; i < VW / 8; i++)
                for (uint64_t x = w[i]; x != 0;) {
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
                    int lane = __builtin_clzll(x) / 8; /* the word's first byte is its top */
                    x &= ~(0xffULL << (56 - lane * 8));
#else
                    int lane = __builtin_ctzll(x) / 8;
                    x &= ~(0xffULL << (lane * 8));
#endif
                    if (pair_hits(sc, q + i * 8 + lane) < 0)
                        return -1;
                }
        }
        if (++rounds == 255) { /* before a lane's count can wrap */
            for (int j = 0; j < VW; j++)
                count += acc[j];
            acc = zero;
            rounds = 0;
        }
    }
    for (int j = 0; j < VW; j++)
        count += acc[j];
    return search_tail(sc, q, count, lines);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_SEARCH 1
/* find_lines with AVX2 intrinsics: a 32-bit mask per step (movemask) instead of the vector
 * extension's lane-by-lane reduction: the set bits are the pairs, visited in order */
__attribute__((target("avx2,popcnt"))) static int find_lines_avx2(Scan *sc, Py_ssize_t *lines) {
    const unsigned char *b = sc->b;
    Py_ssize_t n = sc->n, q = 0, count = 0;
    const Keys *k = sc->k;
    __m256i a[MAX_KEYS], z[MAX_KEYS], nl = _mm256_set1_epi8('\n');
    for (int p = 0; p < k->npairs; p++) {
        a[p] = _mm256_set1_epi8((char)k->pa[p]);
        z[p] = _mm256_set1_epi8((char)k->pb[p]);
    }
    for (; q + 33 <= n; q += 32) {
        __m256i v0 = _mm256_loadu_si256((const __m256i *)(b + q));
        __m256i v1 = _mm256_loadu_si256((const __m256i *)(b + q + 1));
        count += __builtin_popcount((unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(v0, nl)));
        __m256i m = _mm256_setzero_si256();
        for (int p = 0; p < k->npairs; p++)
            m = _mm256_or_si256(m, _mm256_and_si256(_mm256_cmpeq_epi8(v0, a[p]),
                                                    _mm256_cmpeq_epi8(v1, z[p])));
        for (unsigned bits = (unsigned)_mm256_movemask_epi8(m); bits != 0; bits &= bits - 1)
            if (pair_hits(sc, q + __builtin_ctz(bits)) < 0)
                return -1;
    }
    return search_tail(sc, q, count, lines);
}
#endif

static int (*search)(Scan *, Py_ssize_t *) = find_lines; /* set at import */

static int setup_keys(Keys *k, PyObject *keys, PyObject *offsets, PyObject *forms) {
    Py_ssize_t nk = PyTuple_GET_SIZE(keys);
    if (nk < 1 || nk > MAX_KEYS || PyTuple_GET_SIZE(offsets) != nk || PyTuple_GET_SIZE(forms) != nk) {
        PyErr_SetString(PyExc_ValueError, "1 to 16 keys, one offset and one form each");
        return -1;
    }
    k->nkeys = (int)nk;
    k->npairs = 0;
    for (int i = 0; i < k->nkeys; i++) {
        PyObject *key = PyTuple_GET_ITEM(keys, i);
        if (!PyBytes_Check(key)) {
            PyErr_SetString(PyExc_TypeError, "keys must be bytes");
            return -1;
        }
        k->key[i] = (const unsigned char *)PyBytes_AS_STRING(key);
        k->len[i] = PyBytes_GET_SIZE(key);
        k->off[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(offsets, i));
        long form = PyLong_AsLong(PyTuple_GET_ITEM(forms, i));
        if (PyErr_Occurred())
            return -1;
        if (k->len[i] < 2 || memchr(k->key[i], '\n', (size_t)k->len[i]) != NULL ||
            k->off[i] < 0 || k->off[i] > k->len[i] - 2 || form < 0 || form >= F_COUNT) {
            PyErr_SetString(PyExc_ValueError, "a key of 2+ bytes without newline, its pair in it");
            return -1;
        }
        k->form[i] = (int)form;
        unsigned char x = k->key[i][k->off[i]], y = k->key[i][k->off[i] + 1];
        int p = 0;
        while (p < k->npairs && !(k->pa[p] == x && k->pb[p] == y))
            p++;
        if (p == k->npairs) {
            k->pa[p] = x;
            k->pb[p] = y;
            k->keys_of[p] = 0;
            k->npairs++;
        }
        k->keys_of[p] |= 1u << i;
    }
    return 0;
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
    if (sc.events == NULL || sc.slow == NULL || setup_keys(&k, keys, offsets, forms) < 0)
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
    if (search(&sc, &lines) == 0)
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
    const char *was = search == find_lines ? "generic" : "avx2";
    if (strcmp(want, "generic") == 0) {
        search = find_lines;
#ifdef HAVE_AVX2_SEARCH
    } else if (strcmp(want, "avx2") == 0 && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("popcnt")) {
        search = find_lines_avx2;
#endif
    } else {
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
#ifdef HAVE_AVX2_SEARCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt"))
        search = find_lines_avx2;
#endif
    return PyModule_Create(&module);
}
