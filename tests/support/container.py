"""A Debian 12 container with systemd as PID 1, for the real-systemd tests.

The rootfs (debootstrap minbase + the Debian packages the tests need) is built once and cached
under ``/var/tmp/mailopsd-rootfs-<hash of the recipe>``; each boot runs on an overlay of it, so
the cache is never modified. The container has a private network (its own loopback and
firewall: iptables/nft there never touch the host). Commands run inside with
``nsenter -t <PID 1> -a``. ``python -m tests.support.container build`` builds the cache only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.support.common import SupportError, random_suffix, wait_until

SUITE = "bookworm"
INCLUDE = ("systemd", "dbus", "systemd-sysv")
# Everything mailopsd's package Depends/Recommends on plus what the checks use, preinstalled:
# a booted --private-network container cannot reach the registry.
PACKAGES = (
    "python3", "python3-apscheduler", "python3-iptables", "python3-structlog",
    "python3-watchdog", "python3-psutil", "python3-pyroute2",
    "exim4-daemon-heavy", "spamassassin", "spamd", "spamc", "gnupg",
    "iptables", "nftables", "iproute2", "dovecot-imapd",
    # every real Debian install has procps (Priority: important), and spamd.service's
    # ExecReload=/bin/kill needs it; minbase leaves it out
    "procps",
    # the package's Recommends for the health checks (apt would try to fetch them otherwise)
    "python3-dnspython", "python3-cryptography",
    # the tests read the iptables backend's sets with `ipset save` (a Suggests of the package)
    "ipset",
)
RECIPE_VERSION = "1"
CACHE_PARENT = Path("/var/tmp")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (the registry reachable here)."""
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            for word in words:
                if word.startswith("http") and word.rstrip("/").endswith("/debian"):
                    return word
    return "http://deb.debian.org/debian"


def recipe_key() -> str:
    """Hash of everything that decides the rootfs content."""
    text = "\n".join([RECIPE_VERSION, SUITE, debian_mirror(), *INCLUDE, *sorted(PACKAGES)])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def rootfs_path() -> Path:
    return CACHE_PARENT / f"mailopsd-rootfs-{recipe_key()}"


def _run(argv: Sequence[str], timeout: float, log: Path | None = None) -> None:
    out = open(log, "a") if log else None  # noqa: SIM115 - closed below
    try:
        result = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=out or subprocess.PIPE,
                                stderr=subprocess.STDOUT, timeout=timeout, check=False)
    finally:
        if out:
            out.close()
    if result.returncode != 0:
        tail = log.read_text()[-3000:] if log else (result.stdout or b"").decode()[-3000:]
        raise SupportError(f"{argv[0]} failed ({result.returncode}): {tail}")


def ensure_rootfs() -> Path:
    """The cached rootfs, built on first use (about 2-4 minutes), shared between runs."""
    final = rootfs_path()
    if (final / ".mailopsd-ready").exists():
        return final
    lock_fd = os.open(str(CACHE_PARENT / "mailopsd-rootfs.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        if (final / ".mailopsd-ready").exists():
            return final
        build = CACHE_PARENT / f"mailopsd-rootfs-build-{random_suffix(6)}"
        log = CACHE_PARENT / f"{build.name}.log"
        try:
            _build(build, log)
            if final.exists():
                shutil.rmtree(final)
            build.rename(final)
            log.unlink(missing_ok=True)
            _prune_old_caches(final)
        finally:
            if build.exists():
                shutil.rmtree(build, ignore_errors=True)
        return final
    finally:
        os.close(lock_fd)


def _prune_old_caches(keep: Path) -> None:
    """Delete rootfs caches of older recipes that no booted container uses (~450 MB each)."""
    mounts = Path("/proc/self/mountinfo").read_text()
    for old in CACHE_PARENT.glob("mailopsd-rootfs-*"):
        if (old != keep and old.is_dir() and len(old.name) == len("mailopsd-rootfs-") + 12
                and (old / ".mailopsd-ready").exists() and str(old) not in mounts):
            shutil.rmtree(old, ignore_errors=True)


def _build(root: Path, log: Path) -> None:
    _run(["debootstrap", "--variant=minbase", "--include=" + ",".join(INCLUDE), SUITE,
          str(root), debian_mirror()], timeout=900, log=log)
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    nspawn = ["systemd-nspawn", "-q", "-D", str(root), "--register=no", "--keep-unit",
              "--resolv-conf=copy-host", "--setenv=DEBIAN_FRONTEND=noninteractive",
              f"--setenv=PATH={PATH}"]
    _run([*nspawn, "apt-get", "update", "-q"], timeout=600, log=log)
    _run([*nspawn, "apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES],
         timeout=1200, log=log)
    _run([*nspawn, "apt-get", "clean"], timeout=120, log=log)
    policy.unlink()
    # a booted container has no network: nothing should wait for it
    (root / "etc/hostname").write_text("mailopsd-test\n")
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text("")
    (root / ".mailopsd-ready").write_text(recipe_key() + "\n")


class Container:
    """A booted overlay of the cached rootfs: ``with Container() as ct: ct.run([...])``."""

    def __init__(self, name_prefix: str = "mo-ct") -> None:
        self.lower = ensure_rootfs()
        self.base = CACHE_PARENT / f"mailopsd-ct-{random_suffix(8)}"
        self.root = self.base / "root"
        self.machine = f"{name_prefix}-{random_suffix(6)}"
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.pid1 = 0
        self.boots = 0

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> Container:
        for sub in ("upper", "work", "root"):
            (self.base / sub).mkdir(parents=True)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={self.lower},upperdir={self.base / 'upper'},"
                        f"workdir={self.base / 'work'}", str(self.root)], check=True, timeout=60)
        try:
            self.boot()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        with contextlib.suppress(Exception):
            self.poweroff()
        if self.nspawn is not None and self.nspawn.poll() is None:
            self.nspawn.kill()  # the nspawn we started; its container dies with it
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.nspawn.wait(30)
        subprocess.run(["umount", str(self.root)], check=False, timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)

    def boot(self, timeout: float = 120) -> float:
        """Boot systemd as PID 1; returns the seconds until ``is-system-running --wait``."""
        self.boots += 1
        start = time.monotonic()
        log = open(self.base / f"boot-{self.boots}.log", "wb")  # noqa: SIM115 - kept by Popen
        self.nspawn = subprocess.Popen(
            ["systemd-nspawn", "-q", "-D", str(self.root), "--register=no", "--keep-unit", "-b",
             "--private-network", f"--machine={self.machine}", "--console=passive"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        wait_until(self._find_pid1, timeout=30, what="the container's PID 1")
        wait_until(lambda: self.run(["systemctl", "is-system-running", "--wait"], check=False,
                                    timeout=timeout).stdout.strip() in ("running", "degraded"),
                   timeout=timeout, interval=0.5, what="systemctl is-system-running")
        return time.monotonic() - start

    def _find_pid1(self) -> bool:
        assert self.nspawn is not None
        todo = [self.nspawn.pid]
        while todo:
            pid = todo.pop()
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            nspid = next((ln.split()[1:] for ln in status.splitlines()
                          if ln.startswith("NSpid:")), [])
            if pid != self.nspawn.pid and len(nspid) > 1 and nspid[-1] == "1":
                self.pid1 = pid
                return True
            todo.extend(int(c) for c in children)
        return False

    def poweroff(self, timeout: float = 60) -> None:
        """Shut the container down cleanly; kill the nspawn we started if it hangs."""
        if self.nspawn is None or self.nspawn.poll() is not None:
            return
        self.run(["systemctl", "poweroff"], check=False, timeout=30)
        try:
            self.nspawn.wait(timeout)
        except subprocess.TimeoutExpired:
            self.nspawn.kill()
            self.nspawn.wait(30)
        self.pid1 = 0

    def reboot(self) -> float:
        """Power off and boot again on the same overlay (what survives a reboot stays)."""
        self.poweroff()
        return self.boot()

    # -- commands -----------------------------------------------------------------------------
    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run argv inside the container (all its namespaces), with a clean environment."""
        if not self.pid1:
            raise SupportError("container not booted")
        full = ["nsenter", "-t", str(self.pid1), "-a", "env", "-i", f"PATH={PATH}",
                "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", *argv]
        result = subprocess.run(full, input=input, capture_output=True, text=True,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise SupportError(f"{' '.join(argv)} -> {result.returncode}\n"
                               f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        return result

    def sh(self, script: str, **kw: object) -> subprocess.CompletedProcess[str]:
        """Run a shell script inside the container."""
        return self.run(["/bin/sh", "-c", script], **kw)  # type: ignore[arg-type]

    def path(self, inside: str) -> Path:
        """Host path of a file inside the container (through the overlay)."""
        return self.root / inside.lstrip("/")

    def put(self, src: Path, inside: str) -> str:
        """Copy a host file into the container; returns its path inside."""
        dest = self.path(inside)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
        return inside


if __name__ == "__main__":
    if sys.argv[1:] == ["build"]:
        print(ensure_rootfs())
    else:
        print(f"usage: {sys.argv[0]} build", file=sys.stderr)
        sys.exit(2)
