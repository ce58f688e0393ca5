/* Addresses for scan-log's C hot path (see fastscan_lines.h): parse._normalise's canonical
 * text of an address where C is sure to write it as Python would; NULL (Python decides)
 * elsewhere. Reads only the n bytes given. */
#include "fastscan_lines.h"

#include <arpa/inet.h>
#include <string.h>

#define IP_MAX 45 /* parse.normalise_ip's limit */

static int dig(char c) { return c >= '0' && c <= '9'; }

/* glibc's inet_ntop(AF_INET6) (RFC 5952: lowercase hex without leading zeros, the first
 * longest run of two or more zero groups as "::") without its sprintf per group; -1 where it
 * would write an IPv4 tail (embedded, v4-mapped) or "::", which parse._normalise leaves to
 * ipaddress. Returns the length written to out (at most 39 characters). */
static Py_ssize_t ntop6(const unsigned char *b, char *out) {
    static const char hex[] = "0123456789abcdef";
    unsigned w[8];
    int best = -1, best_len = 0, cur = -1;
    for (int i = 0; i < 8; i++) {
        w[i] = (unsigned)b[2 * i] << 8 | b[2 * i + 1];
        if (w[i] == 0) {
            if (cur < 0)
                cur = i;
            if (i - cur + 1 > best_len) { /* strictly longer: the first longest run wins */
                best = cur;
                best_len = i - cur + 1;
            }
        } else {
            cur = -1;
        }
    }
    if (best_len < 2)
        best = -1;
    if (best == 0 && (best_len == 8 || best_len == 6 || (best_len == 5 && w[5] == 0xffff)))
        return -1;
    char *p = out;
    for (int i = 0; i < 8; i++) {
        if (best >= 0 && i >= best && i < best + best_len) {
            if (i == best)
                *p++ = ':';
            continue;
        }
        if (i != 0)
            *p++ = ':';
        int started = 0;
        for (int shift = 12; shift >= 0; shift -= 4) {
            unsigned d = w[i] >> shift & 0xf;
            if (d || started || shift == 0) {
                *p++ = hex[d];
                started = 1;
            }
        }
    }
    if (best >= 0 && best + best_len == 8)
        *p++ = ':';
    return p - out;
}

/* glibc's inet_pton(AF_INET) without the copy it needs for a terminating NUL: exactly four
 * dot-separated decimal parts of 0-255, no empty part, no leading zero ("01"), nothing else */
static int dotted_quad(const char *s, Py_ssize_t n) {
    int parts = 0, digits = 0, value = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        if (dig(c)) {
            if (digits == 1 && value == 0)
                return 0; /* a leading zero */
            value = value * 10 + (c - '0');
            if (value > 255)
                return 0;
            if (digits++ == 0 && ++parts > 4)
                return 0;
        } else if (c == '.' && digits > 0 && parts < 4) {
            digits = value = 0;
        } else {
            return 0;
        }
    }
    return parts == 4 && digits > 0;
}

/* parse._normalise where it is sure: the canonical text, or NULL (Python decides) */
PyObject *fs_normalise(const char *s, Py_ssize_t n) {
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
    if (!colon) { /* the strict dotted quad is already canonical; 0.0.0.0 is no client */
        if (!dotted_quad(s, n) || (n == 7 && memcmp(s, "0.0.0.0", 7) == 0))
            return NULL;
        return PyUnicode_FromStringAndSize(s, n);
    }
    memcpy(raw, s, (size_t)n);
    raw[n] = '\0';
    if (inet_pton(AF_INET6, raw, bin) != 1)
        return NULL;
    Py_ssize_t k = ntop6(bin, out);
    if (k < 0)
        return NULL; /* v4-mapped, embedded IPv4, unspecified: ipaddress's reading */
    return PyUnicode_FromStringAndSize(out, k);
}
