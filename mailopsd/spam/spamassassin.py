"""sa-update, lint, sa-compile and spamd reload: argv builders and the small steps around them.

Commands are argument tuples built by pure functions; the job (jobs/sa_update.py) runs them with
``mailopsd.core.process.run`` as the rules owner. Facts this relies on (reference/spamassassin.md):
sa-update's exit codes 0 installed, 1 no updates, 2 site .pre lint failed, 3 some channels failed,
4 all failed; ``--updatedir`` is the versioned directory spamd loads
(``<update_dir>/<4.000001>``); after a HUP spamd re-execs, and its process may be named ``perl``.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass

from mailopsd.core.errors import MailopsError, ProcessError

_VERSION_LINE = re.compile(r"SpamAssassin version (\d+)\.(\d+)\.(\d+)")
_PERL_LINE = re.compile(r"running on Perl version (\d+)\.(\d+)")
_UPDATE_LINE = re.compile(r"^# UPDATE version (\d+)\s*$")

# rc -> (outcome, what it means)
SA_UPDATE_CODES: dict[int, tuple[str, str]] = {
    0: ("installed", "updates were installed"),
    1: ("no_updates", "no fresh updates were available"),
    2: ("failed", "lint of the site .pre files failed; nothing was updated"),
    3: ("partial", "some channels were updated, others failed"),
    4: ("failed", "every channel failed (download, signature, checksum or lint)"),
    64: ("failed", "usage error (check [jobs.sa-update] options)"),
}


class SaUpdateError(MailopsError):
    """A SpamAssassin rules step could not be done (version unknown, spamd not reloadable)."""


def classify_sa_update(rc: int) -> tuple[str, str]:
    """(outcome, meaning) for an sa-update exit code; any unknown code is a failure (a die)."""
    return SA_UPDATE_CODES.get(rc, ("failed", f"sa-update died (exit {rc})"))


def version_dir_name(version: str) -> str:
    """SpamAssassin's on-disk version ("4.0.1" -> "4.000001"); raises SaUpdateError."""
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", version.strip())
    if not m:
        raise SaUpdateError(f"unexpected SpamAssassin version {version!r}")
    major, minor, patch = (int(g) for g in m.groups())
    return f"{major}.{minor:03d}{patch:03d}"


def parse_version_output(text: str) -> str:
    """The version dir name from ``spamassassin --version`` output; raises SaUpdateError."""
    m = _VERSION_LINE.search(text)
    if not m:
        raise SaUpdateError(f"cannot read the SpamAssassin version from {text.strip()[:200]!r}")
    return version_dir_name(".".join(m.groups()))


def parse_perl_major(text: str) -> str:
    """Perl's major version as SpamAssassin names the compiled-rules directory ("5.036").

    Raises SaUpdateError.
    """
    m = _PERL_LINE.search(text)
    if not m:
        raise SaUpdateError(f"cannot read the Perl version from {text.strip()[:200]!r}")
    return f"{int(m.group(1))}.{int(m.group(2)):03d}"


def sa_update_argv(sa_update: str, *, updatedir: str, gpg: bool, gpg_homedir: str,
                   gpg_keys: Sequence[str] = (), channels: Sequence[str] = (),
                   install: str | None = None) -> tuple[str, ...]:
    """sa-update's argv: verbose, into ``updatedir``, GPG on (with homedir and keys) or --nogpg."""
    argv = [sa_update, "-v", "--updatedir", updatedir]
    if gpg:
        argv += ["--gpghomedir", gpg_homedir]
        for key in gpg_keys:
            argv += ["--gpgkey", key]
    else:
        argv.append("--nogpg")  # the seed's way: only the .sha256/.sha512 checksums are checked
    for channel in channels:
        argv += ["--channel", channel]
    if install:
        argv += ["--install", install]
    return tuple(argv)


def import_key_argv(sa_update: str, gpg_homedir: str, key_file: str) -> tuple[str, ...]:
    """Import a public key file into sa-update's keyring (idempotent)."""
    return (sa_update, "--gpghomedir", gpg_homedir, "--import", key_file)


def lint_argv(spamassassin: str, rules_dir: str | None, site_config_dir: str) -> tuple[str, ...]:
    """``spamassassin --lint`` over the rules spamd will load and the site config it reads."""
    argv = [spamassassin, "--lint", "--siteconfigpath", site_config_dir]
    if rules_dir:
        argv += ["--configpath", rules_dir]
    return tuple(argv)


def sa_compile_argv(sa_compile: str, rules_dir: str | None, site_config_dir: str,
                    out_dir: str) -> tuple[str, ...]:
    """sa-compile of the rules spamd loads into ``out_dir``, where Rule2XSBody looks:
    ``<update_dir>/compiled/<perl major>/<version>``."""
    argv = [sa_compile, "--quiet", "--siteconfigpath", site_config_dir, "--updatedir", out_dir]
    if rules_dir:
        argv += ["--configpath", rules_dir]
    return tuple(argv)


def channel_versions(rules_dir: str) -> dict[str, str]:
    """Installed channel -> version, from each ``<channel>.cf``'s "# UPDATE version N" line."""
    found: dict[str, str] = {}
    try:
        names = sorted(os.listdir(rules_dir))
    except OSError:
        return found
    for name in names:
        if not name.endswith(".cf"):
            continue
        try:
            fd = os.open(os.path.join(rules_dir, name), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            first = os.read(fd, 200).decode("ascii", "replace").splitlines()[:1]
        finally:
            os.close(fd)
        m = _UPDATE_LINE.match(first[0]) if first else None
        if m:
            found[name[:-3]] = m.group(1)
    return found


def tail(text: str, lines: int = 8) -> str:
    """The last non-empty lines of a program's output, for an event."""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])[-1500:]


# ---- spamd reload ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReloadResult:
    """How a spamd reload went: method systemctl | hup | none; ok False = it failed."""

    method: str
    ok: bool
    detail: str
    unit: str | None = None
    pid: int | None = None
    new_pid: int | None = None


def parse_show(text: str) -> dict[str, str]:
    """``systemctl show`` KEY=VALUE lines as a dict."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def find_unit(systemctl: str, units: Sequence[str], timeout: float) -> tuple[str, str] | None:
    """The first of ``units`` systemd knows, with its ActiveState; None without systemd."""
    from mailopsd.core.process import run

    for unit in units:
        try:
            res = run((systemctl, "show", "--property=LoadState,ActiveState", "--", unit),
                      timeout=timeout)
        except ProcessError:
            return None  # no systemd as PID 1 (or no systemctl): fall back to the pid file
        props = parse_show(res.stdout)
        if props.get("LoadState") == "loaded":
            return unit, props.get("ActiveState", "")
    return None


def read_pidfile(path: str) -> int | None:
    """The pid in spamd's pid file; None if missing. Raises SaUpdateError if it is unsafe.

    We are about to signal that pid as root: the file must be a regular root-owned file
    not writable by others, opened without following a symlink.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SaUpdateError(f"cannot open spamd pid file {path}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
            raise SaUpdateError(f"spamd pid file {path} is not a root-owned regular file "
                                "writable only by root; not signalling")
        text = os.read(fd, 64).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    if not text:
        return None
    if not text.split()[0].isdigit():
        raise SaUpdateError(f"spamd pid file {path} does not hold a pid: {text[:40]!r}")
    pid = int(text.split()[0])
    return pid if pid > 1 else None


def is_spamd(pid: int) -> bool:
    """Whether ``pid`` is a live spamd (after a HUP its name may be perl; its argv says spamd)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        names = [proc.name(), *proc.cmdline()]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return any(os.path.basename(n).startswith("spamd") for n in names)


def hup_spamd(pidfile: str, wait: float) -> ReloadResult:
    """SIGHUP the spamd named in ``pidfile`` and wait until it has restarted.

    spamd re-execs on HUP and rewrites its pid file when it is serving again (with a new pid
    if it runs daemonised with -d), so "reloaded" means: the pid file was rewritten after
    our signal and names a live spamd. Raises SaUpdateError if the pid file is unsafe.
    """
    pid = read_pidfile(pidfile)
    if pid is None:
        return ReloadResult("none", True, f"spamd is not running (pid file {pidfile})", pid=pid)
    if not is_spamd(pid):
        # spamd removes its pid file when it stops: one left behind means it died (killed,
        # OOM): the admin must hear of it, the new rules load only when it is started again
        return ReloadResult("hup", False, f"spamd is not running although {pidfile} names pid "
                            f"{pid}: it died (killed?); start it to load the new rules", pid=pid)
    sent = time.time()
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            rewritten = os.lstat(pidfile).st_mtime >= sent - 0.01
        except FileNotFoundError:
            continue  # spamd removes and rewrites it while restarting
        new_pid = read_pidfile(pidfile)
        if rewritten and new_pid is not None and is_spamd(new_pid):
            return ReloadResult("hup", True, "spamd restarted", pid=pid, new_pid=new_pid)
    alive = is_spamd(pid)
    return ReloadResult("hup", False, f"spamd did not come back within {wait:.0f}s after "
                        f"SIGHUP ({'still running' if alive else 'gone'})", pid=pid)


def reload_spamd(*, systemctl: str, units: Sequence[str], pidfile: str, wait: float,
                 timeout: float) -> ReloadResult:
    """Reload spamd: ``systemctl reload`` of the first unit systemd knows, else HUP by pid file.

    An inactive unit or no running spamd is not a failure (it loads the new rules when it
    starts). Raises SaUpdateError only for an unsafe pid file.
    """
    from mailopsd.core.process import run

    found = find_unit(systemctl, units, timeout) if units else None
    if found is not None:
        unit, active = found
        if active not in ("active", "reloading"):
            return ReloadResult("none", True, f"{unit} is {active or 'not active'}", unit=unit)
        try:
            run((systemctl, "reload", "--", unit), timeout=timeout)
        except ProcessError as exc:
            return ReloadResult("systemctl", False, str(exc), unit=unit)
        return ReloadResult("systemctl", True, f"{unit} reloaded", unit=unit)
    return hup_spamd(pidfile, wait)
