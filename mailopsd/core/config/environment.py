"""``check-config``'s look at the machine: do the paths, users, programs and templates the
configuration names exist? Only what an enabled feature uses is checked.

Each finding names the dotted key and says how to fix it. They are warnings (the config itself
is valid and the daemon would start); ``check-config --strict`` makes them errors.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass
from typing import Any

from mailopsd.core.config.hints import did_you_mean


@dataclass(frozen=True)
class Finding:
    """One problem of the environment: the key that names the thing, and what to do."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


class _Checker:
    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.found: list[Finding] = []

    def add(self, key: str, message: str) -> None:
        self.found.append(Finding(key, message))

    def log_file(self, key: str, path: str, usual: str = "") -> None:
        """A log followed by name: may not exist yet, but its directory must (a name close to
        a file in that directory, or to the ``usual`` name, is pointed out)."""
        st = _lstat(path)
        if st is not None:
            if not stat.S_ISREG(st.st_mode):
                self.add(key, f"{path} is not a regular file")
            return
        parent = os.path.dirname(path) or "/"
        if not os.path.isdir(parent):
            self.add(key, f"{path}: its directory {parent} does not exist; fix the path "
                          "(Debian's Exim logs to /var/log/exim4/)")
            return
        try:
            names = os.listdir(parent)
        except OSError:
            return
        base = os.path.basename(path)
        close = did_you_mean(base, names)
        if close is None and usual and base != usual and did_you_mean(base, [usual]):
            self.add(key, f"{path} does not exist yet; Exim's log is called {usual}: did you "
                          f"mean {os.path.join(parent, usual)}?")
        elif close is not None:
            self.add(key, f"{path} does not exist, but {os.path.join(parent, close)} does: "
                          "did you mean that?")

    def directory(self, key: str, path: str, why: str) -> None:
        st = _lstat(path)
        if st is None:
            self.add(key, f"directory {path} does not exist ({why}); create it or fix the path")
        elif not stat.S_ISDIR(st.st_mode):
            self.add(key, f"{path} is not a directory ({why})")

    def creatable_dir(self, key: str, path: str) -> None:
        st = _lstat(path)
        if st is None:
            parent = os.path.dirname(path.rstrip("/")) or "/"
            if not os.path.isdir(parent):
                self.add(key, f"neither {path} nor its parent {parent} exists; fix the path")
        elif not stat.S_ISDIR(st.st_mode):
            self.add(key, f"{path} exists and is not a directory")

    def file(self, key: str, path: str, why: str) -> None:
        st = _lstat(path)
        if st is None:
            self.add(key, f"{path} does not exist ({why}); fix the path or create the file")
        elif not stat.S_ISREG(st.st_mode):
            self.add(key, f"{path} is not a regular file ({why})")
        elif not os.access(path, os.R_OK):
            self.add(key, f"{path} is not readable ({why})")

    def binary(self, name: str, why: str) -> None:
        path = getattr(self.cfg.binaries, name)
        key = f"binaries.{name}"
        if not os.path.exists(path):
            self.add(key, f"{path} does not exist ({why}); install its package or set "
                          f"{key} to where it is")
        elif not (os.path.isfile(path) and os.access(path, os.X_OK)):
            self.add(key, f"{path} is not an executable file ({why})")

    def user(self, key: str, name: str, why: str, need_home: bool = False) -> None:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            names = [p.pw_name for p in pwd.getpwall()]
            close = did_you_mean(name, names)
            hint = f" (did you mean {close!r}?)" if close else ""
            self.add(key, f"no such user {name!r}{hint} ({why}); fix the name or create the "
                          "user")
            return
        if need_home and not os.path.isdir(pw.pw_dir):
            self.add(key, f"user {name!r} has no home directory ({pw.pw_dir} is missing; {why})")


def check_environment(cfg: Any) -> list[Finding]:
    """Every problem of the machine the config describes, for the features it enables."""
    c = _Checker(cfg)
    jobs, sa = cfg.jobs, cfg.spamassassin
    c.creatable_dir("daemon.state_dir", cfg.daemon.state_dir)
    c.creatable_dir("daemon.run_dir", cfg.daemon.run_dir)
    if cfg.logging.target == "journald" and not os.path.exists(cfg.logging.journal_socket):
        c.add("logging.journal_socket", f"{cfg.logging.journal_socket} does not exist: is "
                                        "systemd-journald running? (target = \"auto\" falls "
                                        "back to stderr)")
    if cfg.blocker.enabled:
        c.log_file("blocker.mainlog", cfg.blocker.mainlog, usual="mainlog")
        if cfg.blocker.firewall.backend == "nftables":
            c.binary("nft", "blocker.firewall.backend = \"nftables\"")
    if cfg.sent.enabled:
        c.log_file("sent.recipients_log", cfg.sent.recipients_log)
        for i, name in enumerate(cfg.sent.users):
            c.user(f"sent.users[{i}]", name, "sent.users", need_home=True)
    for i, name in enumerate(cfg.mailboxes.users):
        c.user(f"mailboxes.users[{i}]", name, "mailboxes.users", need_home=True)
    _mailbox_homes(c)
    bayes_jobs = [j for j in ("learn-spam", "bayes-backup", "bayes-stats") if jobs.get(j).enabled]
    if bayes_jobs:
        why = f"the Bayes database of {', '.join(bayes_jobs)}"
        c.user("spamassassin.bayes_owner", sa.bayes_owner, why, need_home=not sa.bayes_path)
        c.binary("sa_learn", ", ".join(bayes_jobs))
        if sa.bayes_path:
            c.directory("spamassassin.bayes_path", os.path.dirname(sa.bayes_path) or "/",
                        "the directory of the Bayes files")
    if jobs.learn_spam.enabled:
        c.directory("jobs.learn-spam.staging_dir", jobs.learn_spam.staging_dir,
                    "learn-spam stages copies there")
    if jobs.bayes_backup.enabled and jobs.bayes_backup.backup_dir:
        c.creatable_dir("jobs.bayes-backup.backup_dir", jobs.bayes_backup.backup_dir)
    up = jobs.sa_update
    if up.enabled:
        c.user("spamassassin.rules_owner", sa.rules_owner, "sa-update runs as this user")
        for name in ("sa_update", "spamassassin", "python3"):
            c.binary(name, "sa-update")
        if up.sa_compile:
            c.binary("sa_compile", "jobs.sa-update.sa_compile = true")
        if up.reload_spamd:
            c.binary("systemctl", "jobs.sa-update.reload_spamd = true")
        c.directory("spamassassin.update_dir", sa.update_dir, "sa-update's rules")
        c.directory("spamassassin.site_config_dir", sa.site_config_dir, "spamassassin --lint")
        for i, key_file in enumerate(up.gpg_key_files):
            c.file(f"jobs.sa-update.gpg_key_files[{i}]", key_file, "imported before each run")
        if up.install:
            before = len(c.found)
            c.file("jobs.sa-update.install", up.install, "the rules tarball")
            for ext in (".asc", ".sha256", ".sha512"):
                if len(c.found) == before and (up.gpg or ext != ".asc"):
                    c.file("jobs.sa-update.install", up.install + ext, "sa-update --install")
    mf = jobs.make_forwards
    if mf.template:
        c.file("jobs.make-forwards.template", mf.template, "the .forward template")
        _template_header(c, mf.template)
    if mf.check_with_exim:  # also for `run-job make-forwards` by hand while disabled
        c.binary("exim", "make-forwards checks its template with exim -bf")
    return c.found


def _template_header(c: _Checker, path: str) -> None:
    try:
        with open(path, "rb") as fh:
            first = fh.readline(200)
    except OSError:
        return
    if not first.lower().startswith(b"# exim filter"):
        c.add("jobs.make-forwards.template",
              f"{path} does not start with \"# Exim filter\": Exim would read it as a plain "
              "list of addresses")


def _mailbox_homes(c: _Checker) -> None:
    """Users in the [mailboxes] selection whose home is missing are skipped: say which."""
    m = c.cfg.mailboxes
    if m.users:
        return
    missing = sorted(p.pw_name for p in pwd.getpwall()
                     if m.min_uid <= p.pw_uid <= m.max_uid and p.pw_uid != 0
                     and p.pw_name not in m.exclude and not os.path.isdir(p.pw_dir))
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        c.add("mailboxes.min_uid", f"users in the uid range without a home directory are "
                                   f"skipped: {shown} (add them to mailboxes.exclude)")
