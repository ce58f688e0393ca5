/* The line search of scan-log's C hot path (fastscan_search.c), shared with _fastscan.c: one
 * pass over a block finds every line holding a key and hands each to fs_flush (_fastscan.c),
 * which reads it. */
#ifndef MAILOPSD_FASTSCAN_SEARCH_H
#define MAILOPSD_FASTSCAN_SEARCH_H

#include "fastscan_lines.h"

#define MAX_KEYS 16

typedef struct Ctx Ctx; /* _fastscan.c's: the rule names, the minute and hour caches */

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

/* the current line is complete: its event (in _fastscan.c); 0, or -1 on a Python error */
FS_HIDDEN int fs_flush(Scan *sc);
/* the keys, their rare byte pairs and forms (ValueError / TypeError on bad ones); 0 or -1 */
FS_HIDDEN int fs_setup_keys(Keys *k, PyObject *keys, PyObject *offsets, PyObject *forms);
/* every line of sc's block holding a key, to fs_flush in order; *lines: its "\n" count */
FS_HIDDEN int fs_search(Scan *sc, Py_ssize_t *lines);
/* the best search this CPU runs (at import) */
FS_HIDDEN void fs_pick_search(void);
/* use the search "generic" or "avx2": the previous one's name, or NULL if not on this CPU */
FS_HIDDEN const char *fs_use_search(const char *name);

#endif
