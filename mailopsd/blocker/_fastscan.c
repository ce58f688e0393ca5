/* scan-log's hot path in C: blocker/fastpath.py's read_block on the raw bytes of a block.
 *
 * scan(block, keys, offsets, forms, names, minute_base, aggregate) -> (events, slow, lines)
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
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#define MAX_KEYS 16
#define IP_MAX 45 /* parse.normalise_ip's limit */

enum { F_NONE, F_NO_HOST, F_NO_IP, F_AUTH, F_RELAY, F_SYNC, F_NONMAIL, F_ARRIVAL, F_COUNT };
/* not a key's form: the host field of grammar.sync_error's second form (pipelining) */
#define F_SYNC_CMD F_COUNT
#define ABORT (-2) /* after_host: the line may read another way: leave it to Python */

typedef struct {
    const char *l; /* the line */
    Py_ssize_t n;  /* its length (without "\n") */
} Line;

static int ws(char c) { /* re.ASCII's \s */
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
static int dig(char c) { return c >= '0' && c <= '9'; }
static int alnum(char c) {
    return dig(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static int has(Line L, Py_ssize_t p, const char *lit, Py_ssize_t k) {
    return p >= 0 && k <= L.n - p && memcmp(L.l + p, lit, (size_t)k) == 0;
}
#define HAS(L, p, lit) has(L, p, lit, (Py_ssize_t)(sizeof(lit) - 1))

static Py_ssize_t tok_end(Line L, Py_ssize_t p) { /* first \s at or after p, or n */
    while (p < L.n && !ws(L.l[p]))
        p++;
    return p;
}
static Py_ssize_t digits(Line L, Py_ssize_t p) {
    while (p < L.n && dig(L.l[p]))
        p++;
    return p;
}

/* _TS: "YYYY-MM-DD HH:MM:SS " with seconds [0-5]\d|60 */
static int stamp(Line L, int *sec) {
    static const char shape[] = "dddd-dd-dd dd:dd:";
    if (L.n < 20)
        return 0;
    for (int i = 0; i < 17; i++) {
        char c = L.l[i];
        if (shape[i] == 'd' ? !dig(c) : c != shape[i])
            return 0;
    }
    char a = L.l[17], b = L.l[18];
    if (!((a >= '0' && a <= '5' && dig(b)) || (a == '6' && b == '0')) || L.l[19] != ' ')
        return 0;
    *sec = (a - '0') * 10 + (b - '0');
    return 1;
}

/* what each form's regex requires right after the host field, at p; returns the match end */
static Py_ssize_t after_host(Line L, Py_ssize_t p, int form) {
    switch (form) {
    case F_RELAY: /* lookahead (?= X=| F=| rejected ) */
        return (HAS(L, p, " X=") || HAS(L, p, " F=") || HAS(L, p, " rejected ")) ? p : -1;
    case F_AUTH:
        return HAS(L, p, ": 535 ") ? p + 6 : -1;
    case F_SYNC:
        return HAS(L, p, " input=") ? p + 7 : -1;
    case F_SYNC_CMD: /* _IDENT_CI " next input=\"": an ident or Ci= -> the grammar decides */
        if (HAS(L, p, " U=") || HAS(L, p, " Ci="))
            return ABORT;
        return HAS(L, p, " next input=\"") ? p + 13 : -1;
    case F_NONMAIL:
        if (!HAS(L, p, " dropped: too many "))
            return -1;
        p += 19;
        if (HAS(L, p, "nonmail commands"))
            return p + 16;
        if (HAS(L, p, "unrecognized commands"))
            return p + 21;
        if (HAS(L, p, "syntax or protocol errors"))
            return p + 25;
        return -1;
    case F_NO_IP: /* (?: \(via inetd\))?\)$ */
        if (HAS(L, p, " (via inetd))") && p + 13 == L.n)
            return L.n;
        return (HAS(L, p, ")") && p + 1 == L.n) ? L.n : -1;
    case F_ARRIVAL: /* " P=(?:utf8)?esmtps?a " */
        if (!HAS(L, p, " P="))
            return -1;
        p += 3;
        if (HAS(L, p, "utf8"))
            p += 4;
        if (!HAS(L, p, "esmtp"))
            return -1;
        p += 5;
        if (HAS(L, p, "s"))
            p++;
        return HAS(L, p, "a ") ? p + 2 : -1;
    }
    return -1;
}

/* "[ip](:port)?( I=[iface](:port)?)?" at p, then the form's tail; 1 and the ip's span if so.
 * Each part can be read one way only: the regex's backtracking into them never succeeds
 * where this fails (no tail begins with a digit or " I="). */
static Py_ssize_t addr_at(Line L, Py_ssize_t p, int form, Py_ssize_t *ip_s, Py_ssize_t *ip_e) {
    if (!HAS(L, p, "["))
        return -1;
    Py_ssize_t s = p + 1, x = s;
    while (x < L.n && L.l[x] != ']' && !ws(L.l[x]))
        x++;
    if (x == s || x >= L.n || L.l[x] != ']')
        return -1;
    *ip_s = s;
    *ip_e = x;
    x++;
    if (HAS(L, x, ":") && x + 1 < L.n && dig(L.l[x + 1]))
        x = digits(L, x + 1);
    if (HAS(L, x, " I=[")) {
        Py_ssize_t y = x + 4, z = y;
        while (z < L.n && L.l[z] != ']' && !ws(L.l[z]))
            z++;
        if (z > y && z < L.n && L.l[z] == ']') {
            z++;
            if (HAS(L, z, ":") && z + 1 < L.n && dig(L.l[z + 1]))
                z = digits(L, z + 1);
            x = z;
        }
    }
    return after_host(L, x, form);
}

/* grammar.HOST at p followed by the form's tail, tried in the regex's order: with the name,
 * then without; with the HELO, then without. Returns the match end or -1; the HELO's end
 * (-1: none) and the address's span. */
static Py_ssize_t host_at(Line L, Py_ssize_t p, int form, Py_ssize_t *helo_end, Py_ssize_t *ip_s,
                          Py_ssize_t *ip_e) {
    for (int name = 1; name >= 0; name--) {
        Py_ssize_t q = p;
        if (name) { /* [^\s(]\S* then " " */
            if (q >= L.n || ws(L.l[q]) || L.l[q] == '(')
                continue;
            q = tok_end(L, q);
            if (q >= L.n || L.l[q] != ' ')
                continue;
            q++;
        }
        for (int helo = 1; helo >= 0; helo--) {
            Py_ssize_t r = q, he = -1;
            if (helo) { /* \(\S*\) then " " */
                if (!HAS(L, r, "("))
                    continue;
                Py_ssize_t t = tok_end(L, r);
                if (t - r < 2 || L.l[t - 1] != ')' || t >= L.n || L.l[t] != ' ')
                    continue;
                he = t;
                r = t + 1;
            }
            Py_ssize_t end = addr_at(L, r, form, ip_s, ip_e);
            if (end >= 0) {
                *helo_end = he;
                return end;
            }
            if (end == ABORT)
                return ABORT;
        }
    }
    return -1;
}

static Py_ssize_t find(Line L, Py_ssize_t from, Py_ssize_t to, const char *lit, size_t k) {
    /* lines are short and the hits few: a plain loop beats memmem's set-up */
    if (from < 0 || to > L.n || from >= to || (size_t)(to - from) < k)
        return -1;
    for (Py_ssize_t i = from; i <= to - (Py_ssize_t)k; i++)
        if (L.l[i] == lit[0] && memcmp(L.l + i, lit, k) == 0)
            return i;
    return -1;
}
#define FIND(L, from, to, lit) find(L, from, to, lit, sizeof(lit) - 1)
#define SYNC_CMD_HEAD "SMTP protocol synchronization error (next input sent too soon: pipelining was "
#define SYNC_CMD_TAIL "advertised): rejected \""
#define SYNC_HEAD                                                                           \
    "SMTP protocol synchronization error (input sent without waiting for greeting): "     \
    "rejected connection from H="

/* grammar.sync_error's second form, where only one reading exists: its head, then exactly one
 * '" H=' (the rejected command is the client's: it may hold more, then every one would have to
 * agree), a host field followed by ' next input="' and no ") [" after the address (always=True
 * in _unshifted: any later one could be another reading). */
static int sync_pipelining(Line L, Py_ssize_t p, Py_ssize_t *ip_s, Py_ssize_t *ip_e) {
    Py_ssize_t he = -1, q;
    if (!HAS(L, p, SYNC_CMD_HEAD))
        return 0;
    p += (Py_ssize_t)sizeof(SYNC_CMD_HEAD) - 1;
    if (HAS(L, p, "not "))
        p += 4;
    if (!HAS(L, p, SYNC_CMD_TAIL))
        return 0;
    p += (Py_ssize_t)sizeof(SYNC_CMD_TAIL) - 1; /* just after the command's opening quote */
    q = FIND(L, p - 1, L.n, "\" H=");
    if (q < 0 || FIND(L, q + 1, L.n, "\" H=") >= 0)
        return 0;
    if (host_at(L, q + 4, F_SYNC_CMD, &he, ip_s, ip_e) < 0)
        return 0;
    return FIND(L, he >= 0 ? he : *ip_e, L.n, ") [") < 0;
}

/* The form's reading of the line: 1 and the address's span if fastpath.py's regex (and its
 * extra checks) would accept the line, else 0. */
static int read_form(Line L, int form, Py_ssize_t *ip_s, Py_ssize_t *ip_e) {
    Py_ssize_t p = 20, he = -1, end;
    switch (form) {
    case F_NO_HOST: /* "no host name found for IP address (\S+)$" */
        if (!HAS(L, p, "no host name found for IP address "))
            return 0;
        p += 34;
        if (p >= L.n || tok_end(L, p) != L.n)
            return 0;
        *ip_s = p;
        *ip_e = L.n;
        return 1;
    case F_NO_IP: /* "no IP address found for host \S+ \(during SMTP connection( Ci=\S+)? from " */
        if (!HAS(L, p, "no IP address found for host "))
            return 0;
        p += 29;
        if (p >= L.n || ws(L.l[p]))
            return 0;
        p = tok_end(L, p);
        if (!HAS(L, p, " (during SMTP connection"))
            return 0;
        p += 24;
        if (HAS(L, p, " Ci=") && p + 4 < L.n && !ws(L.l[p + 4]))
            p = tok_end(L, p + 4);
        if (!HAS(L, p, " from "))
            return 0;
        end = host_at(L, p + 6, form, &he, ip_s, ip_e);
        break;
    case F_AUTH: { /* "\S+ authenticator failed for " HOST ": 535 " */
        Py_ssize_t t = tok_end(L, p);
        if (t == p || !HAS(L, t, " authenticator failed for "))
            return 0;
        for (Py_ssize_t i = p; i < t; i++)
            if ((unsigned char)L.l[i] >= 0x80)
                return 0; /* _extra_ok counts characters: only ASCII is sure */
        if (t + 26 > 100) /* _extra_ok: the keyword within the line's first 100 characters */
            return 0;
        end = host_at(L, t + 26, form, &he, ip_s, ip_e);
        break;
    }
    case F_RELAY: /* "H=" HOST, a rejected RCPT after it, ": relay not permitted" at the end */
        if (!HAS(L, p, "H="))
            return 0;
        end = host_at(L, p + 2, form, &he, ip_s, ip_e);
        if (end < 0 || !(L.n >= 21 && HAS(L, L.n - 21, ": relay not permitted")) ||
            FIND(L, end, L.n, " rejected RCPT ") < 0)
            return 0;
        break;
    case F_SYNC:
        if (HAS(L, p, SYNC_HEAD)) {
            end = host_at(L, p + (Py_ssize_t)sizeof(SYNC_HEAD) - 1, form, &he, ip_s, ip_e);
            break;
        }
        return sync_pipelining(L, p, ip_s, ip_e);
    case F_NONMAIL:
        if (!HAS(L, p, "SMTP call from "))
            return 0;
        end = host_at(L, p + 15, form, &he, ip_s, ip_e);
        break;
    case F_ARRIVAL: { /* ID "<= " [^\s"]+ " H=" HOST " P=(utf8)?esmtps?a ", " A=" after */
        for (int part = 0; part < 3; part++) {
            Py_ssize_t s = p;
            while (p < L.n && alnum(L.l[p]))
                p++;
            if (p - s < (part == 0 ? 6 : part == 1 ? 4 : 2) || (part == 0 && p - s != 6))
                return 0;
            if (!has(L, p, part < 2 ? "-" : " ", 1))
                return 0;
            p++;
        }
        if (!HAS(L, p, "<= "))
            return 0;
        p += 3;
        Py_ssize_t s = p;
        while (p < L.n && !ws(L.l[p]) && L.l[p] != '"')
            p++;
        if (p == s || !HAS(L, p, " H="))
            return 0;
        end = host_at(L, p + 3, form, &he, ip_s, ip_e);
        if (end < 0 || FIND(L, end - 1, L.n, " A=") < 0)
            return 0;
        break;
    }
    default:
        return 0;
    }
    if (end < 0)
        return 0;
    /* a HELO followed by ") [" anywhere: the grammar weighs the other readings */
    if (he >= 0 && FIND(L, he, L.n, ") [") >= 0)
        return 0;
    return 1;
}

/* parse._normalise where it is sure: the canonical text, or NULL (Python decides) */
static PyObject *normalise(const char *s, Py_ssize_t n) {
    char raw[IP_MAX + 1], out[INET6_ADDRSTRLEN];
    unsigned char bin[16];
    int colon = 0;
    if (n <= 0 || n > IP_MAX)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == ':')
            colon = 1;
        else if (!(dig(c) || c == '.' || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return NULL;
    }
    memcpy(raw, s, (size_t)n);
    raw[n] = '\0';
    if (!colon) { /* the strict dotted quad is already canonical; 0.0.0.0 is no client */
        if (inet_pton(AF_INET, raw, bin) != 1 || strcmp(raw, "0.0.0.0") == 0)
            return NULL;
        return PyUnicode_FromStringAndSize(raw, n);
    }
    if (inet_pton(AF_INET6, raw, bin) != 1 || inet_ntop(AF_INET6, bin, out, sizeof out) == NULL)
        return NULL;
    if (strchr(out, '.') != NULL || strcmp(out, "::") == 0)
        return NULL; /* v4-mapped, embedded IPv4, unspecified: ipaddress's reading */
    return PyUnicode_FromString(out);
}

typedef struct {
    PyObject *names[F_COUNT]; /* borrowed rule names per form */
    PyObject *minute_base;    /* minute text -> epoch or None (parse's cache) */
    PyObject *aggregate;      /* None, or IPv6 address -> its /64 */
    char minute[16];          /* the last minute asked and its answer */
    PyObject *base;           /* owned; NULL: none asked yet */
} Ctx;

/* (rule, address, when) for a decided line; Py_None if undecided; NULL on a Python error */
static PyObject *decide(Ctx *c, Line L, int form) {
    int sec;
    Py_ssize_t ip_s, ip_e;
    if (form <= F_NONE || form >= F_COUNT || c->names[form] == NULL || !stamp(L, &sec) ||
        !read_form(L, form, &ip_s, &ip_e))
        Py_RETURN_NONE;
    if (c->base == NULL || memcmp(c->minute, L.l, 16) != 0) {
        PyObject *m = PyUnicode_DecodeASCII(L.l, 16, "strict");
        if (m == NULL)
            return NULL;
        PyObject *b = PyObject_CallOneArg(c->minute_base, m);
        Py_DECREF(m);
        if (b == NULL)
            return NULL;
        Py_XSETREF(c->base, b);
        memcpy(c->minute, L.l, 16);
    }
    if (c->base == Py_None)
        Py_RETURN_NONE;
    double base = PyFloat_AsDouble(c->base);
    if (base == -1.0 && PyErr_Occurred())
        return NULL;
    PyObject *ip = normalise(L.l + ip_s, ip_e - ip_s);
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

typedef unsigned char v16 __attribute__((vector_size(16)));

static v16 load16(const unsigned char *p) {
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static int any16(v16 v) {
    uint64_t a, b;
    memcpy(&a, &v, 8);
    memcpy(&b, (const unsigned char *)&v + 8, 8);
    return (a | b) != 0;
}
static v16 splat(unsigned char c) {
    v16 v;
    memset(&v, c, sizeof v);
    return v;
}

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

static int find_lines(Scan *sc, Py_ssize_t *lines) {
    const unsigned char *b = sc->b;
    Py_ssize_t n = sc->n, q = 0, count = 0;
    const Keys *k = sc->k;
    v16 a[MAX_KEYS], z[MAX_KEYS], nlv = splat('\n'), acc = splat(0);
    for (int p = 0; p < k->npairs; p++) {
        a[p] = splat(k->pa[p]);
        z[p] = splat(k->pb[p]);
    }
    int rounds = 0;
    for (; q + 17 <= n; q += 16) {
        v16 v0 = load16(b + q), v1 = load16(b + q + 1), m = splat(0);
        acc -= (v16)(v0 == nlv); /* +1 per newline (a true lane is -1) */
        for (int p = 0; p < k->npairs; p++)
            m |= (v16)(v0 == a[p]) & (v16)(v1 == z[p]);
        if (any16(m)) {
            for (int j = 0; j < 16; j++)
                if (m[j] && pair_hits(sc, q + j) < 0)
                    return -1;
        }
        if (++rounds == 255) { /* before a lane's count can wrap */
            for (int j = 0; j < 16; j++)
                count += acc[j];
            acc = splat(0);
            rounds = 0;
        }
    }
    for (int j = 0; j < 16; j++)
        count += acc[j];
    for (; q < n; q++) {
        count += b[q] == '\n';
        if (q + 1 < n && pair_hits(sc, q) < 0)
            return -1;
    }
    *lines = count;
    return flush(sc);
}

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
    if (!PyArg_ParseTuple(args, "y*O!O!O!O!OO", &buf, &PyTuple_Type, &keys, &PyTuple_Type,
                          &offsets, &PyTuple_Type, &forms, &PyTuple_Type, &names,
                          &ctx.minute_base, &ctx.aggregate))
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
    if (find_lines(&sc, &lines) == 0)
        result = Py_BuildValue("(OOn)", sc.events, sc.slow, lines);
done:
    Py_XDECREF(sc.events);
    Py_XDECREF(sc.slow);
    Py_XDECREF(ctx.base);
    PyBuffer_Release(&buf);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(block, keys, offsets, forms, names, minute_base, aggregate) -> (events, slow, lines)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastscan", "scan-log's hot path (see _fastscan.c)", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastscan(void) { return PyModule_Create(&module); }
