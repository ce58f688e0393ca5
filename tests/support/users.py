"""TestUser: a real, uniquely named local account for a test, plus Maildir helpers.

File work in the user's home runs AS the user (a child process with the user's uid/gid), so the
result has exactly the ownership a real delivery would give.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from mailopsd.core.users import Account
from tests.support.common import SupportError, random_suffix

DEFAULT_FOLDERS = (".Sent", ".INBOX.Spam", ".INBOX.Not Spam", ".Trash")
PASSWORD = "secret"  # what PrivateDovecot's static passdb accepts
# A python without the venv (the venv may not be readable by the user), isolated mode.
USER_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
_LOCKED_EXIT = 10  # useradd/userdel: "cannot lock /etc/passwd" (another test is adding a user)


def _shadow_tool(argv: list[str], timeout: float = 30.0) -> None:
    """Run useradd/userdel, retrying while /etc/passwd is locked by a concurrent test."""
    deadline = time.monotonic() + timeout
    while True:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if res.returncode == 0:
            return
        if res.returncode != _LOCKED_EXIT or time.monotonic() > deadline:
            raise SupportError(f"{argv[0]} failed ({res.returncode}): {res.stderr.strip()}")
        time.sleep(0.1)


class TestUser:
    """A system user ``mo<random>`` with home ``<root>/home/<name>``; deleted on exit.

    Attributes after start: ``name, uid, gid, home (Path), maildir (Path), password``.
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, root: Path, *, prefix: str = "mo", maildir: bool = True,
                 folders: tuple[str, ...] = DEFAULT_FOLDERS) -> None:
        if len(prefix) > 20 or not prefix.isalnum():
            raise ValueError("prefix must be short and alphanumeric")
        self.root = root
        self.name = prefix + random_suffix(8)
        self.home = root / "home" / self.name
        self.maildir = self.home / "Maildir"
        self.password = PASSWORD
        self.uid = -1
        self.gid = -1
        self._make_maildir = maildir
        self._folders = folders
        self._created = False

    @property
    def account(self) -> Account:
        """This user as mailopsd.core.users.Account."""
        return Account(self.name, self.uid, self.gid, str(self.home))

    @property
    def address(self) -> str:
        return f"{self.name}@example.test"

    def start(self) -> TestUser:
        """``useradd`` the user (uid >= 1000, home created) and optionally its Maildir."""
        homes = self.root / "home"
        homes.mkdir(mode=0o755, exist_ok=True)
        homes.chmod(0o755)
        try:
            pwd.getpwnam(self.name)
            raise SupportError(f"user {self.name} already exists")
        except KeyError:
            pass
        _shadow_tool(["useradd", "-m", "-d", str(self.home), "-s", "/usr/sbin/nologin",
                      "-K", "UID_MIN=1000", self.name])
        self._created = True
        pw = pwd.getpwnam(self.name)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        try:
            if self._make_maildir:
                make_maildir(self, self._folders)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """``userdel`` the user (only if this object created it) and remove its home."""
        if not self._created:
            return
        self._created = False
        try:
            # -f: a Dovecot imap process of a test may still run as the user.
            _shadow_tool(["userdel", "-f", self.name])
        finally:
            if self.home.parent == self.root / "home":
                shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> TestUser:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def run(self, argv: list[str], *, input: bytes | None = None, timeout: float = 30.0,
            check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """Run ``argv`` as the user (no supplementary groups, HOME set, cwd = home)."""
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.home), "USER": self.name,
               "LOGNAME": self.name, "LANG": "C.UTF-8"}
        return subprocess.run(argv, input=input, capture_output=True, timeout=timeout,
                              check=check, env=env, cwd=self.home, user=self.uid,
                              group=self.gid, extra_groups=[], umask=0o077)

    def python(self, code: str, *args: str, input: bytes | None = None) -> bytes:
        """Run a Python snippet as the user and return its stdout; raises SupportError."""
        res = self.run([USER_PYTHON, "-I", "-S", "-c", code, *args], input=input, check=False)
        if res.returncode != 0:
            raise SupportError(f"as {self.name}: {res.stderr.decode(errors='replace')}")
        return res.stdout


_MAKE_MAILDIR = """
import os, sys
home = os.environ["HOME"]
for folder in sys.argv[1:]:
    base = os.path.join(home, "Maildir", folder)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(base, sub), mode=0o700, exist_ok=True)
    os.chmod(base, 0o700)
    if folder:  # Maildir++ subfolders carry a maildirfolder marker, as Dovecot makes them
        open(os.path.join(base, "maildirfolder"), "a").close()
"""


def make_maildir(user: TestUser, folders: tuple[str, ...] = DEFAULT_FOLDERS) -> Path:
    """Create ~/Maildir/{cur,new,tmp} and each folder's, as the user, mode 0700; return it."""
    for f in folders:
        if not f.startswith(".") or "/" in f:
            raise ValueError(f"Maildir++ folder names start with '.' and have no '/': {f!r}")
    user.python(_MAKE_MAILDIR, "", *folders)
    return user.maildir


_DELIVER = """
import os, socket, sys, time
folder_dir, sub, suffix, mtime = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
data = sys.stdin.buffer.read()
now = time.time()
base = "%d.M%dP%dQ%s.%s" % (now, (now % 1) * 1e6, os.getpid(), os.urandom(4).hex(),
                            socket.gethostname().replace("/", "_").replace(":", "_"))
base += ",S=%d" % len(data)
tmp = os.path.join(folder_dir, "tmp", base)
fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
os.write(fd, data)
os.fsync(fd)
os.close(fd)
if mtime:
    os.utime(tmp, (float(mtime), float(mtime)))
final = os.path.join(folder_dir, sub, base + suffix)
os.rename(tmp, final)
print(final, end="")
"""


def deliver(user: TestUser, folder: str, content: bytes | str, flags: str = "", *,
            subdir: str | None = None, mtime: float | None = None) -> Path:
    """Write a message into ``folder`` ("" = INBOX, else ".Sent" etc.) as the user.

    Goes tmp/ -> new/ (no flags) or cur/ with ``:2,FLAGS``; ``subdir`` forces new/ or cur/.
    Returns the delivered file's path.
    """
    data = content.encode() if isinstance(content, str) else content
    if folder in ("INBOX", "."):
        folder = ""
    sub = subdir or ("cur" if flags else "new")
    suffix = f":2,{''.join(sorted(flags))}" if flags or sub == "cur" else ""
    out = user.python(_DELIVER, str(user.maildir / folder), sub, suffix,
                      "" if mtime is None else repr(mtime), input=data)
    return Path(out.decode())
