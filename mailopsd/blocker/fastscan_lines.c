/* Reading one Exim mainlog line of a given form: see fastscan_lines.h. Hostile input: every
 * read is checked against the line's end (has(), tok_end(), the loops' "p < L.n"). */
#include "fastscan_lines.h"

#include <string.h>

/* not a key's form: the host field of grammar.sync_error's second form (pipelining) */
#define F_SYNC_CMD F_COUNT
#define ABORT (-2) /* after_host: the line may read another way: leave it to Python */

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
int fs_stamp(Line L, int *sec) {
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
    /* lines are short and the literals' first bytes rare: memchr, then compare */
    if (from < 0 || to > L.n || from >= to || (size_t)(to - from) < k)
        return -1;
    const char *p = L.l + from, *last = L.l + to - k; /* the last place a match can start */
    while ((p = memchr(p, lit[0], (size_t)(last - p) + 1)) != NULL) {
        if (memcmp(p, lit, k) == 0)
            return p - L.l;
        if (p++ == last)
            break;
    }
    return -1;
}
#define FIND(L, from, to, lit) find(L, from, to, lit, sizeof(lit) - 1)
/* str.count over the whole line (the literal never overlaps itself) */
static Py_ssize_t count_lit(Line L, const char *lit, size_t k) {
    Py_ssize_t n = 0;
    Py_ssize_t i = find(L, 0, L.n, lit, k);
    while (i >= 0) {
        n++;
        i = find(L, i + (Py_ssize_t)k, L.n, lit, k);
    }
    return n;
}
#define count(L, lit) count_lit(L, lit, sizeof(lit) - 1)
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
int fs_read_form(Line L, int form, Py_ssize_t *ip_s, Py_ssize_t *ip_e) {
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
    case F_AUTH: { /* "\S+ authenticator failed for (?:H=)?" HOST ": 535 " (4.99 writes H=) */
        Py_ssize_t t = tok_end(L, p);
        if (t == p || !HAS(L, t, " authenticator failed for "))
            return 0;
        for (Py_ssize_t i = p; i < t; i++)
            if ((unsigned char)L.l[i] >= 0x80)
                return 0; /* _extra_ok counts characters: only ASCII is sure */
        if (t + 26 > 100) /* _extra_ok: the keyword within the line's first 100 characters */
            return 0;
        /* (?:H=)? is greedy: the regex reads past "H=" first, and without it only if that fails */
        end = HAS(L, t + 26, "H=") ? host_at(L, t + 28, form, &he, ip_s, ip_e) : -1;
        if (end == -1)
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
    /* ") [" ends a HELO: only the one before the address may be on the line (HELO read) or
     * none (no HELO); any other could be a junk HELO's, or a HELO read as a name ("H=(x)"):
     * the grammar weighs the readings (fastpath.py's count check) */
    if (count(L, ") [") != (he >= 0 ? 1 : 0))
        return 0;
    return 1;
}
