/* The line side of scan-log's C hot path (_fastscan.c): reading one line of a given form as
 * blocker/fastpath.py's regexes (and, for the pipelining synchronization error, grammar.py)
 * would, and parse._normalise's canonical address text where it is sure.
 *
 * Every function reads only within [l, l + n) of its Line and answers "no" (0 / NULL: Python
 * decides) wherever the Python reading could differ.
 */
#ifndef MAILOPSD_FASTSCAN_LINES_H
#define MAILOPSD_FASTSCAN_LINES_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* the forms, numbered as fastpath.FORMS is ordered (0: none, the grammar reads the line) */
enum { F_NONE, F_NO_HOST, F_NO_IP, F_AUTH, F_RELAY, F_SYNC, F_NONMAIL, F_ARRIVAL, F_COUNT };

typedef struct {
    const char *l; /* the line */
    Py_ssize_t n;  /* its length (without "\n") */
} Line;

#define FS_HIDDEN __attribute__((visibility("hidden"))) /* not exported from the module */

/* _TS, Debian's default stamp "YYYY-MM-DD HH:MM:SS ": 1 and its seconds, else 0 */
FS_HIDDEN int fs_stamp(Line L, int *sec);
/* 1 and the address's span if the form's regex (and its extra checks) accept the line */
FS_HIDDEN int fs_read_form(Line L, int form, Py_ssize_t *ip_s, Py_ssize_t *ip_e);
/* parse._normalise's text of the address, or NULL (no exception set) if not sure */
FS_HIDDEN PyObject *fs_normalise(const char *s, Py_ssize_t n);

#endif
