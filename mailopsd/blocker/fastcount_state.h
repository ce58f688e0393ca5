/* The counting loop's view of a BanPolicy (fastcount_state.c, its per-rule slots in
 * fastcount_slots.c), shared with _fastcount.c. */
#ifndef MAILOPSD_FASTCOUNT_STATE_H
#define MAILOPSD_FASTCOUNT_STATE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define MAX_SLOTS 32
#define FC_AUTHENTICATED "authenticated" /* rule_names.AUTHENTICATED: the module exports it */
#define NAME_CACHE 32 /* rule name objects -> slot, by address */

/* interned attribute and method names (fc_init_names) */
extern PyObject *S_matches, *S_last_match, *S_unmatched, *S_rules, *S_banned, *S_auth, *S_hits,
    *S_exempting, *S_config, *S_auth_exempt, *S_compact_obj, *S_dirty, *S_ignore, *S_newest,
    *S_since_prune, *S_prune_at, *S_compact_at, *S_n, *S_exempted, *S_ignored, *S_maxretry,
    *S_findtime, *S_prune, *S_compact, *S_uncompact, *S_decide, *S_contains, *S_append;

enum { K_OTHER, K_AUTH, K_NO_RDNS };   /* what a rule name is */
enum { L_UNREAD, L_ABSENT, L_KNOWN }; /* what is known of _last_match[name] */

/* one rule name met in this call, and what is pending for it */
typedef struct {
    PyObject *name; /* owned: the rule name of the event that made the slot */
    int kind;
    Py_ssize_t d_matches, d_unmatched; /* counts not yet added to the policy's dicts */
    int m_known, u_known;              /* the name is a key of matches / unmatched */
    int last_state;                    /* _last_match[name] (L_KNOWN: in .last) */
    double last;
    PyObject *last_obj; /* owned: the event's time that raised .last, to write back */
    /* policy.rules.get(name) and policy._hits[name], read once between two callbacks */
    int fresh, enabled;
    PyObject *spec;  /* owned: the last spec read; its maxretry and findtime below */
    PyObject *table; /* owned (NULL: not a key of _hits) */
    Py_ssize_t maxretry;
    double findtime;
} Slot;

typedef struct {
    /* owned; dirty and no_rdns NULL for None */
    PyObject *p, *matches, *last, *unmatched, *rules, *banned, *auth, *tables, *compacted,
        *dirty, *ignore, *no_rdns, *out;
    int rest;    /* unmatched, auth, ignore, exempt_for, auth_on and no_rdns are read */
    int auth_on; /* _exempting and the no-rdns table exists */
    double exempt_for;
    /* the policy's scalars, cached between callbacks */
    double newest, prune_at;
    PyObject *newest_obj; /* owned: the event's time that raised newest, to write back */
    Py_ssize_t since_prune, d_exempted;
    int since_dirty, compact_n;
    int stale; /* a callback ran: the scalars above are read again before their next use */
    /* owned: the str objects met as rule names (the C scanner's and the grammar's are not
       the same objects), each with its slot */
    PyObject *cache_name[NAME_CACHE];
    int cache_slot[NAME_CACHE];
    int nslots; /* the slots are set up when used: Ctx is zeroed only up to here */
    Slot slot[MAX_SLOTS];
} Ctx;

int fc_init_names(void);
int fc_setup(Ctx *c);
int fc_rest(Ctx *c);
#define FC_REST(c) ((c)->rest ? 0 : fc_rest(c))
int fc_num(PyObject *o, double *d);
int fc_num_attr(PyObject *o, PyObject *attr, double *d);
int fc_dict_add(PyObject *d, PyObject *key, Py_ssize_t delta);
int fc_flush(Ctx *c);
int fc_reload(Ctx *c);
#define FC_FRESH(c) ((c)->stale ? fc_reload(c) : 0)
PyObject *fc_call(Ctx *c, PyObject *meth, PyObject *const *args, size_t nargs);
int fc_call_void(Ctx *c, PyObject *meth, PyObject *const *args, size_t nargs);
void fc_clear_slots(Ctx *c);
Slot *fc_slot_of(Ctx *c, PyObject *name);
int fc_count_in(PyObject *d, Slot *s, int *known, Py_ssize_t *pending);
int fc_note_last(Ctx *c, Slot *s, double w, PyObject *wobj);
int fc_refresh(Ctx *c, Slot *s);
int fc_tick(Ctx *c);
Py_ssize_t fc_bisect_right(PyObject *hits, double x);

#endif
