/* scan-log's line search (see fastscan_search.h): one pass over a block's raw bytes looks for
 * each key's rarest byte pair, compares the key where one occurs, and hands every line holding
 * a key to fs_flush. Every read stays within the block: the vector steps stop 32 bytes (and
 * one, for the pair's second byte) before its end, the tail goes byte by byte. */
#include "fastscan_search.h"

#include <stdint.h>
#include <string.h>

/* The portable search: 16 bytes a step with GCC's vector extension, the width SSE2 (any
 * x86-64) and NEON have: 32-byte vectors there were emulated lane by lane, 10x slower
 * (`bench/scan_parts.py`: 147 vs 14 ms). x86-64 machines with AVX2 use find_lines_avx2 below
 * instead, chosen at import. */
#define VW 16
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
                if (fs_flush(sc) < 0)
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
    return fs_flush(sc);
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

static int (*search)(Scan *, Py_ssize_t *) = find_lines; /* fs_pick_search: the best */

int fs_search(Scan *sc, Py_ssize_t *lines) { return search(sc, lines); }

#ifdef HAVE_AVX2_SEARCH
static int have_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
}
#endif

void fs_pick_search(void) {
#ifdef HAVE_AVX2_SEARCH
    if (have_avx2())
        search = find_lines_avx2;
#endif
}

const char *fs_use_search(const char *name) {
    const char *was = search == find_lines ? "generic" : "avx2";
    if (strcmp(name, "generic") == 0) {
        search = find_lines;
        return was;
    }
#ifdef HAVE_AVX2_SEARCH
    if (strcmp(name, "avx2") == 0 && have_avx2()) {
        search = find_lines_avx2;
        return was;
    }
#endif
    return NULL;
}

int fs_setup_keys(Keys *k, PyObject *keys, PyObject *offsets, PyObject *forms) {
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
