"""Every health check, run by `mailopsd health` once and by the health service repeatedly.

``HealthChecks`` keeps what must persist between rounds (log cursors, spamd tallies, the spool
cache, when a DMARC p=none was first seen). ``local()`` is cheap (spool, paniclog, spamd log,
state database) and runs every poll; ``remote()`` does the DNS, TLS and sa-learn work and runs
every [health] interval. Every check that fails to run becomes UNKNOWN with the reason: one
broken check never hides the others.
"""

from __future__ import annotations

import glob
import os
import time
from typing import Any

from mailopsd.core.state import DB_NAME
from mailopsd.health.logs import LogCursor, PaniclogTally, SpamdTally
from mailopsd.health.model import CRIT, OK, UNKNOWN, WARN, Check, Samples, human_age
from mailopsd.health.spool import SpoolReader
from mailopsd.health.statedb import StateFigures

SPAMD_TAIL = 4 << 20  # spamd lines read from the end of a log the first time
BAYES_EVERY = 900.0  # seconds between two `sa-learn --dump magic` in the daemon
PACKAGE_RULES = "/usr/share/spamassassin"


def _mtimes(pattern: str) -> list[float]:
    out = []
    for path in glob.glob(pattern):
        try:
            out.append(os.stat(path).st_mtime)
        except OSError:
            continue
    return out


class HealthChecks:
    """The checks over one config, with the state they keep between rounds."""

    def __init__(self, config: Any) -> None:
        self.config = config
        h = config.health
        self.spool = SpoolReader(h.exim_spool)
        self.panic_cursor = LogCursor(h.paniclog)
        self.panic = PaniclogTally()
        self.spamd_cursor = LogCursor(h.spamd_log, tail_bytes=SPAMD_TAIL) if h.spamd_log else None
        self.spamd = SpamdTally()
        self.state = StateFigures(os.path.join(config.daemon.state_dir, DB_NAME),
                                  config.blocker.mainlog, config.blocker.firewall.backend,
                                  follow_log=config.blocker.enabled)
        self.dmarc_none_since: dict[str, float] = {}
        self._bayes_last: tuple[float, list[Check], Samples] | None = None

    # ---- cheap, every poll -------------------------------------------------------------------
    def local(self, now: float | None = None) -> tuple[list[Check], Samples]:
        """Queue, paniclog, spamd log; with their samples."""
        now = time.time() if now is None else now
        samples = Samples()
        checks: list[Check] = []
        for name, step in (("exim_queue", lambda s: self._queue(s, now)),
                           ("exim_paniclog", lambda s: [self._paniclog(s, now)]),
                           ("spamd", self._spamd)):
            try:
                checks.extend(c for c in step(samples) if c is not None)
            except Exception as exc:  # e.g. an unreadable spool: say so, keep checking
                checks.append(Check(name, UNKNOWN, f"check failed: {exc}"[:300],
                                    "run as root; see the daemon's log",
                                    event="health_check_failed"))
        return checks, samples

    def scrape_samples(self) -> Samples:
        """Figures read at scrape time: the spool and the state database."""
        samples = self.state.samples()
        try:
            q = self.spool.stats()
        except OSError:
            return samples  # unreadable spool: the queue families stay without samples
        samples.set("exim_queue_messages", q.messages)
        samples.set("exim_queue_frozen_messages", q.frozen)
        samples.set("exim_queue_oldest_message_age_seconds", q.oldest_age())
        return samples

    def _queue(self, samples: Samples, now: float) -> list[Check]:
        h = self.config.health
        q = self.spool.stats()
        samples.set("exim_queue_messages", q.messages)
        samples.set("exim_queue_frozen_messages", q.frozen)
        samples.set("exim_queue_oldest_message_age_seconds", q.oldest_age(now))
        if not q.present:
            return []  # no Exim spool here: nothing to say
        checks: list[Check] = []
        figure = f"{q.messages} message(s)"
        if h.queue_warn and q.messages > 10 * h.queue_warn:
            checks.append(Check("exim_queue", CRIT, figure,
                                "look at `exim -bp | exiqsumm`: a spam run or a dead route?",
                                event="exim_queue_large", fields={"messages": q.messages}))
        elif h.queue_warn and q.messages > h.queue_warn:
            checks.append(Check("exim_queue", WARN, figure,
                                "look at `exim -bp | exiqsumm` for the stuck destinations",
                                event="exim_queue_large", fields={"messages": q.messages}))
        else:
            checks.append(Check("exim_queue", OK, figure))
        age = q.oldest_age(now)
        if q.messages and age > h.queue_age_warn:
            checks.append(Check("exim_queue_age", WARN, f"oldest message {human_age(age)} old",
                                "`exim -bp` shows it; `exim -Mvl ID` says why it waits",
                                event="exim_queue_old", fields={"age": int(age)}))
        else:
            checks.append(Check("exim_queue_age", OK, f"oldest {human_age(age)}"
                                if q.messages else "empty queue"))
        if q.frozen:
            checks.append(Check("exim_frozen", WARN, f"{q.frozen} frozen message(s)",
                                "`exiqgrep -z -i` lists them; `exim -Mvl ID` says why; thaw "
                                "(-Mt) or remove (-Mrm) them", event="exim_queue_frozen",
                                fields={"frozen": q.frozen}))
        else:
            checks.append(Check("exim_frozen", OK, "none frozen"))
        return checks

    def _paniclog(self, samples: Samples, now: float) -> Check | None:
        path = self.config.health.paniclog
        self.panic.feed(self.panic_cursor.read())
        samples.set("exim_paniclog_lines_total", self.panic.lines_total)
        try:
            st = os.stat(path)
        except OSError:
            return None  # no paniclog: Exim never panicked here
        if st.st_size == 0:
            return Check("exim_paniclog", OK, "empty")
        fresh = now - st.st_mtime < 86400
        last = self.panic.last_line or "(unread)"
        return Check("exim_paniclog", CRIT if fresh else WARN,
                     f"{self.panic.lines_total} line(s); last: {last[:200]}",
                     f"read {path}, fix the cause (often the config: `exim -bV`), then empty "
                     f"it: : > {path}", event="exim_paniclog_written",
                     fields={"line": last[:1000], "path": path})

    def _spamd(self, samples: Samples) -> list[Check]:
        if self.spamd_cursor is not None:
            self.spamd.feed(self.spamd_cursor.read())
        t = self.spamd
        for result, n in t.messages.items():
            samples.set("spamd_messages_total", n, result=result)
        samples.values["spamd_rule_hits_total"] = {}
        for rule, n in t.rule_hits.items():
            samples.set("spamd_rule_hits_total", n, rule=rule)
        samples.set("spamd_messages_without_bayes_total", t.without_bayes)
        if not t.recent:
            return []  # no spamd result lines (yet): nothing to judge
        h = self.config.health
        checks: list[Check] = []
        rate, hits = t.blocked_rate()
        rules = ", ".join(f"{r} {n}" for r, n in sorted(hits.items()))
        if rate > h.blocked_rate_warn:
            checks.append(Check("spamd_blocked_rules", WARN,
                                f"{rate:.0%} of the last {len(t.recent)} scans hit {rules}",
                                "the DNS lists refuse your resolver: run a local caching "
                                "resolver (unbound) instead of a public one",
                                event="spamd_rules_blocked", fields={"rate": round(rate, 3),
                                                                     "rules": hits}))
        else:
            checks.append(Check("spamd_blocked_rules", OK,
                                f"{rate:.0%} of the last {len(t.recent)} scans"))
        nb = t.no_bayes_rate()
        if nb > h.no_bayes_rate_warn:
            checks.append(Check("spamd_bayes", WARN,
                                f"{nb:.0%} of the last {len(t.recent)} scans without Bayes",
                                "train Bayes (mailopsd run-job learn-spam) and check spamd "
                                "reads the database learn-spam writes ([spamassassin])",
                                event="spamd_without_bayes", fields={"rate": round(nb, 3)}))
        else:
            checks.append(Check("spamd_bayes", OK, f"{1 - nb:.0%} of recent scans used Bayes"))
        return checks

    # ---- costly, every interval --------------------------------------------------------------
    def remote(self, now: float | None = None) -> tuple[list[Check], Samples]:
        """SpamAssassin (Bayes, rules), DNSBL, TLS and DNS records; with their samples."""
        from mailopsd.health import remote

        now = time.time() if now is None else now
        samples = Samples()
        checks: list[Check] = []
        for name, step in (("spamassassin_bayes", self._bayes),
                           ("spamassassin_rules_age", self._rules_age),
                           ("tls_files", lambda s: remote.tls_file_checks(self.config)),
                           ("dnsbl", lambda s: remote.dnsbl_checks(self.config, s)),
                           ("tls", lambda s: remote.tls_checks(self.config, s, now)),
                           ("dns_records", lambda s: remote.record_checks(
                               self.config, s, self.dmarc_none_since, now))):
            try:
                checks.extend(step(samples))
            except Exception as exc:  # one broken check never hides the others
                checks.append(Check(name, UNKNOWN, f"check failed: {exc}"[:300],
                                    "see the daemon's log", event="health_check_failed"))
        return checks, samples

    def _bayes(self, samples: Samples) -> list[Check]:
        """Bayes counts from `sa-learn --dump magic` (a Perl start): at most every 15 min."""
        if not self.config.jobs.learn_spam.enabled:
            return []
        last = self._bayes_last
        if last is not None and time.monotonic() - last[0] < BAYES_EVERY:
            samples.update(last[2])
            return last[1]
        own = Samples()
        checks = self._bayes_now(own)
        self._bayes_last = (time.monotonic(), checks, own)
        samples.update(own)
        return checks

    def _bayes_now(self, samples: Samples) -> list[Check]:
        from mailopsd.spam.bayes_db import BayesDB, assess

        db = BayesDB.from_config(self.config)
        magic = db.magic(60.0, None)
        if magic is None:  # an absent source is not a failure (bayes-stats warns daily)
            return [Check("spamassassin_bayes", OK,
                          f"no Bayes database yet at {db.prefix}: learn-spam creates it")]
        samples.set("spamassassin_bayes_tokens", magic.ntokens, kind="all")
        samples.set("spamassassin_bayes_messages", magic.nspam, **{"class": "spam"})
        samples.set("spamassassin_bayes_messages", magic.nham, **{"class": "ham"})
        job = self.config.jobs.bayes_stats
        warnings = assess(magic, job.min_messages, job.max_ratio)
        if warnings:
            return [Check("spamassassin_bayes", WARN, "; ".join(m for _e, m in warnings),
                          "file more spam and ham into the users' Spam / Not Spam folders",
                          event=warnings[0][0])]
        return [Check("spamassassin_bayes", OK, magic.sentence())]

    def _rules_age(self, samples: Samples) -> list[Check]:
        if not self.config.jobs.sa_update.enabled:
            return []
        update_dir = self.config.spamassassin.update_dir
        # what spamd loads: sa-update's rules, else the package's own (/usr/share/spamassassin)
        mtimes = _mtimes(os.path.join(glob.escape(update_dir), "*", "*.cf"))
        where = update_dir
        if not mtimes:
            mtimes, where = _mtimes(os.path.join(PACKAGE_RULES, "*.cf")), PACKAGE_RULES
        if not mtimes:
            return []  # no SpamAssassin rules on this host: nothing to judge
        age = time.time() - max(mtimes)
        samples.set("spamassassin_rules_age_seconds", age)
        if age > self.config.health.rules_age_warn:
            return [Check("spamassassin_rules_age", WARN, f"rules in {where} {human_age(age)} old",
                          "run `mailopsd run-job sa-update` (sa-update never installed rules)"
                          if where == PACKAGE_RULES else
                          "see `mailopsd status` for the sa-update job's last error",
                          event="spamassassin_rules_old", fields={"age": int(age)})]
        return [Check("spamassassin_rules_age", OK, f"rules {human_age(age)} old")]
