"""A private PostgreSQL 15 cluster for tests: initdb + pg_ctl as the ``postgres`` user.

Data and the Unix socket live in a fresh directory under /var/tmp (no TCP: listen_addresses is
empty), removed on exit. Local connections are ``trust``, so tests can connect as any role.

```python
with PrivatePostgres() as pg:
    pg.psql("CREATE ROLE x LOGIN")
    dsn = pg.dsn("mailopsd")             # libpq URI: socket dir, port, user postgres
    with pg.standby() as sb:             # pg_basebackup -R, streaming, started
        pg.kill(); sb.promote()
```
Methods: ``start()``, ``stop(mode="fast")``, ``kill()`` (SIGKILL to exactly the postmaster pid
in postmaster.pid), ``psql(sql, db=)``, ``dsn(db, user=)``, ``standby(sync=True)`` -> a second
PrivatePostgres streaming from this one (``sync``: synchronous_standby_names names it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.common import SupportError, pid_alive, wait_until

BIN = Path("/usr/lib/postgresql/15/bin")
_next_port = [15432 + (os.getpid() % 200) * 10]


def _port() -> int:
    """A port number for the socket name (no TCP listener is opened)."""
    _next_port[0] += 1
    return _next_port[0]


def _as_postgres(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True,
                          text=True, timeout=kw.pop("timeout", 120), check=False, **kw)


class PrivatePostgres:
    """See the module docstring."""

    def __init__(self, root: Path | None = None, *, data: Path | None = None,
                 init: bool = True) -> None:
        self.own_root = root is None
        self.root = root or Path(tempfile.mkdtemp(dir="/var/tmp", prefix="mailopsd-pg-"))
        self.root.mkdir(exist_ok=True)
        self.root.chmod(0o755)
        shutil.chown(self.root, "postgres", "postgres")
        self.data = data or self.root / "data"
        self.sock = self.root
        self.port = _port()
        self.log = self.root / "postgres.log"
        self._init = init
        self.children: list[PrivatePostgres] = []

    # -- lifecycle ----------------------------------------------------------------------------
    def initdb(self) -> None:
        """initdb with trust auth for local connections (and replication)."""
        r = _as_postgres([str(BIN / "initdb"), "-D", str(self.data), "-A", "trust",
                          "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale", "C.UTF-8"])
        if r.returncode:
            raise SupportError(f"initdb failed: {r.stderr}")
        with open(self.data / "postgresql.conf", "a") as fh:
            fh.write("fsync = off\nfull_page_writes = off\nwal_level = replica\n"
                     "max_wal_senders = 4\nshared_buffers = 32MB\nmax_connections = 60\n")

    def start(self) -> None:
        """Start the server (socket only) and wait until it accepts connections."""
        opts = f"-k {self.sock} -c listen_addresses='' -p {self.port}"
        r = _as_postgres([str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                          "-o", opts, "-w", "-t", "60", "start"])
        if r.returncode:
            raise SupportError(f"pg_ctl start failed: {r.stdout}{r.stderr}\n{self.log_text()}")

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop (fast: clients are disconnected; immediate: no shutdown checkpoint)."""
        if self.pid() is None:
            return
        _as_postgres([str(BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60",
                      "stop"])

    def pid(self) -> int | None:
        """The postmaster's pid from postmaster.pid, if it runs."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) else None

    def kill(self) -> None:
        """SIGKILL exactly the postmaster, as a crash would; its backends (found by pid
        before) notice and exit, and are killed by pid if they linger."""
        import psutil

        pid = self.pid()
        if pid is None:
            return
        try:
            backends = [c.pid for c in psutil.Process(pid).children()]
        except psutil.Error:
            backends = []
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(pid), 20, what="postmaster gone")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(pid_alive(b) for b in backends):
            time.sleep(0.05)
        for b in backends:
            if pid_alive(b):
                os.kill(b, signal.SIGKILL)
        (self.data / "postmaster.pid").unlink(missing_ok=True)

    def log_text(self) -> str:
        """The server log."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> PrivatePostgres:
        try:
            if self._init:
                self.initdb()
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        """Stop this server and its standbys, remove the directory."""
        for child in self.children:
            child.cleanup()
        self.stop("immediate")
        if self.pid() is not None:
            self.kill()
        if self.own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- use ----------------------------------------------------------------------------------
    def dsn(self, db: str = "postgres", user: str = "postgres", **params: str) -> str:
        """A libpq URI for this server's socket."""
        extra = "".join(f"&{k}={v}" for k, v in params.items())
        return f"postgresql://{user}@/{db}?host={self.sock}&port={self.port}{extra}"

    def psql(self, sql: str, db: str = "postgres", user: str = "postgres") -> str:
        """Run SQL with psql (-X -A -t, stop on error); returns stdout."""
        r = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h",
                            str(self.sock), "-p", str(self.port), "-U", user, "-d", db,
                            "-c", sql], capture_output=True, text=True, timeout=60,
                           check=False)
        if r.returncode:
            raise SupportError(f"psql failed: {r.stderr.strip()}")
        return r.stdout.strip()

    def standby(self, sync: bool = True) -> PrivatePostgres:
        """A streaming standby of this server (pg_basebackup -R), started."""
        sb = PrivatePostgres(self.root / f"standby{len(self.children) + 1}", init=False)
        sb.own_root = False
        sb.data = sb.root / "data"
        sb.sock = sb.root
        sb.log = sb.root / "postgres.log"
        r = _as_postgres([str(BIN / "pg_basebackup"), "-D", str(sb.data), "-h", str(self.sock),
                          "-p", str(self.port), "-U", "postgres", "-R", "-X", "stream",
                          "-c", "fast", "--no-sync",
                          "-d", f"application_name=sb{len(self.children) + 1}"])
        if r.returncode:
            raise SupportError(f"pg_basebackup failed: {r.stderr}")
        self.children.append(sb)
        sb.start()
        if sync:
            self.psql(f"ALTER SYSTEM SET synchronous_standby_names = "
                      f"'sb{len(self.children)}'")
            self.psql("SELECT pg_reload_conf()")
        wait_until(lambda: self.psql("SELECT count(*) FROM pg_stat_replication "
                                     "WHERE state = 'streaming'") != "0", 30,
                   what="standby streaming")
        return sb

    def promote(self) -> None:
        """Promote this standby to primary and wait until it accepts writes."""
        r = _as_postgres([str(BIN / "pg_ctl"), "-D", str(self.data), "-w", "promote"])
        if r.returncode:
            raise SupportError(f"pg_ctl promote failed: {r.stderr}")
        wait_until(lambda: self.psql("SELECT pg_is_in_recovery()") == "f", 30,
                   what="standby promoted")
