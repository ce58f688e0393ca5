"""The pieces of make-forwards: the filter template, checking it with exim -bf, writing ~/.forward.

Writing happens AS THE USER, in a child process (``/bin/sh`` and coreutils, via
``mailopsd.core.process.run(account=...)``): the file is created with the user's own rights and
quota, on NFS with root_squash too, and a hostile home directory can never make root write
somewhere else. The child writes a private temporary file, fsyncs it, and publishes it with
``ln`` (link(2)), which is atomic and fails if ``.forward`` exists in any form - file,
directory, dangling or live symlink - without following it. So an existing ``.forward`` is never
overwritten, even one created a moment after we looked.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from dataclasses import dataclass

from mailopsd.core.errors import MailopsError
from mailopsd.core.process import run
from mailopsd.core.users import Account

# The seed's spam section, verbatim in meaning: spam goes to .Trash (the trailing slash makes
# Exim deliver Maildir-style; without it delivery fails with "mailbox has too many links").
DEFAULT_TEMPLATE = """\
# Exim filter
# Written by mailopsd make-forwards; edit freely, mailopsd never overwrites an existing file.
# Messages SpamAssassin marked as spam go to the Trash folder; everything else is delivered
# normally.
if
   $h_X-Spam-Status: CONTAINS "Yes"
then
   save $home/Maildir/.Trash/
   finish
endif
"""
MAX_TEMPLATE_BYTES = 64 * 1024
# Exim recognises a filter by this first line (case and spacing as Exim accepts them).
_FILTER_HEADER = re.compile(r"^#\s*exim\s+filter\b", re.IGNORECASE)

SAMPLE_HEADERS = (b"From: Sender <sender@example.net>\nTo: Someone <someone@example.org>\n"
                  b"Subject: mailopsd filter check\nMessage-ID: <check@mailopsd.invalid>\n"
                  b"Date: Tue, 24 Nov 2026 12:00:00 +0000\n")
SAMPLE_SPAM = SAMPLE_HEADERS + (b"X-Spam-Status: Yes, score=12.3 required=5.0\n\n"
                                b"A sample spam message.\n")
SAMPLE_HAM = SAMPLE_HEADERS + b"X-Spam-Status: No, score=-1.0 required=5.0\n\nA sample message.\n"

# Runs as the user, cwd "/", HOME = the account's home. Nothing from outside is spliced into
# the script: the filter text arrives on stdin.  Exit 73 (EX_CANTCREAT): .forward exists.
WRITE_SCRIPT = r"""
set -u
umask 077
cd -- "$HOME" || exit 70
tmp=$(mktemp .forward.mailopsd.XXXXXXXX) || exit 71
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp" || exit 71
chmod 0644 -- "$tmp" || exit 71
sync -- "$tmp" || exit 71
if ln -T -- "$tmp" .forward; then
    sync -- . 2>/dev/null
    exit 0
fi
if [ -e .forward ] || [ -L .forward ]; then exit 73; fi
exit 71
"""
EXIT_EXISTS = 73


class ForwardsError(MailopsError):
    """The template is unusable, or a .forward could not be written."""


class ForwardExistsError(ForwardsError):
    """A .forward appeared between the check and the write; it was left alone."""


@dataclass(frozen=True)
class FilterCheck:
    """What ``exim -bf`` said about the template for one sample message."""

    sample: str
    significant: bool  # the filter set up a delivery (e.g. saved to .Trash) instead of normal
    actions: tuple[str, ...]


def load_template(path: str | None) -> str:
    """The filter text from ``path`` (None: the built-in one); raises ForwardsError if unusable.

    The first line must be ``# Exim filter``: without it Exim reads the file as a list of
    forwarding addresses, which would silently send mail elsewhere.
    """
    if path is None:
        return DEFAULT_TEMPLATE
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_TEMPLATE_BYTES + 1)
    except OSError as exc:
        raise ForwardsError(f"cannot read forward template {path}: {exc.strerror}") from None
    if len(raw) > MAX_TEMPLATE_BYTES:
        raise ForwardsError(f"forward template {path} is over {MAX_TEMPLATE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ForwardsError(f"forward template {path} is not UTF-8 text") from None
    return validate_template(text, path)


def validate_template(text: str, where: str = "template") -> str:
    """Return ``text`` ending in a newline; raises ForwardsError unless it is an Exim filter."""
    first = text.split("\n", 1)[0]
    if not _FILTER_HEADER.match(first):
        raise ForwardsError(f"{where}: the first line must be '# Exim filter' (got {first[:60]!r})")
    if "\x00" in text:
        raise ForwardsError(f"{where}: contains a NUL byte")
    return text if text.endswith("\n") else text + "\n"


def exim_filter_test_argv(exim: str, filter_path: str) -> tuple[str, ...]:
    """The command that tests a filter file against a message on stdin."""
    return (exim, "-bf", filter_path)


def parse_filter_test(output: str) -> tuple[bool, tuple[str, ...]]:
    """From ``exim -bf`` output: whether a significant delivery was set up, and the actions.

    The actions are the lines between "Testing Exim filter file" and "Filtering ...", e.g.
    ``Save message to: /home/alice/Maildir/.Trash/`` and ``Finish``.
    """
    actions: list[str] = []
    inside = False
    for line in output.splitlines():
        if line.startswith("Testing Exim filter file"):
            inside = True
        elif line.startswith("Filtering "):
            inside = False
        elif inside and line.strip():
            actions.append(line.strip())
    return "set up at least one significant delivery" in output, tuple(actions)


def check_template(text: str, exim: str, timeout: float) -> list[FilterCheck]:
    """Run ``exim -bf`` (as root) on the filter text with a spam and a non-spam sample.

    Raises ForwardsError with Exim's "Filter error" line if Exim rejects the filter, or if Exim
    does not read it as an Exim filter at all.
    """
    with tempfile.TemporaryDirectory(prefix="mailopsd-forward-") as tmpdir:
        path = os.path.join(tmpdir, "forward")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return check_filter_file(path, exim, timeout)


def check_filter_file(path: str, exim: str, timeout: float,
                      account: Account | None = None) -> list[FilterCheck]:
    """Run ``exim -bf PATH`` (as ``account`` if given) with a spam and a non-spam sample.

    Raises ForwardsError if Exim rejects the filter or does not read it as an Exim filter.
    """
    from mailopsd.core.errors import ProcessError

    results = []
    for name, sample in (("spam", SAMPLE_SPAM), ("ham", SAMPLE_HAM)):
        try:
            res = run(exim_filter_test_argv(exim, path), timeout=timeout, input=sample,
                      account=account, cwd="/", ok_codes=(0, 1))
        except ProcessError as exc:
            raise ForwardsError(f"cannot test the filter with exim -bf: {exc}") from None
        out = res.stdout + res.stderr
        if res.returncode != 0:
            detail = _filter_error(out) or f"exit status {res.returncode}"
            raise ForwardsError(f"exim -bf rejected the filter: {detail}")
        if "Testing Exim filter file" not in out:
            raise ForwardsError(f"exim -bf did not read {path} as an Exim filter")
        significant, actions = parse_filter_test(out)
        results.append(FilterCheck(name, significant, actions))
    return results


def _filter_error(text: str) -> str:
    for line in text.splitlines():
        if "error" in line.lower():
            return line.strip()
    return ""


def forward_state(account: Account) -> str:
    """What is at ~/.forward, looked at without following anything.

    One of: "missing", "file", "symlink", "other" (directory, fifo...), "no_home" (the home is
    missing or not a directory), "home_not_owned" (the user does not own the home, so could not
    create the file, and Exim would not trust it there).
    """
    try:
        st = os.stat(account.home)  # passwd's home path is the admin's; it may be a link
    except OSError:
        return "no_home"
    if not stat.S_ISDIR(st.st_mode):
        return "no_home"
    if st.st_uid != account.uid:
        return "home_not_owned"
    try:
        st = os.lstat(os.path.join(account.home, ".forward"))
    except FileNotFoundError:
        return "missing"
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    return "file" if stat.S_ISREG(st.st_mode) else "other"


def write_forward(account: Account, text: str, timeout: float) -> None:
    """Create ~/.forward holding ``text`` as the user, mode 0644, atomically, never overwriting.

    Raises ForwardExistsError if a .forward exists (left untouched), ForwardsError otherwise.
    """
    from mailopsd.core.errors import ProcessError

    try:
        res = run(("/bin/sh", "-c", WRITE_SCRIPT, "mailopsd-make-forward"), timeout=timeout,
                  account=account, input=text.encode("utf-8"), cwd="/", umask=0o077,
                  ok_codes=(0, EXIT_EXISTS))
    except ProcessError as exc:
        raise ForwardsError(f"cannot write {account.home}/.forward as {account.name}: "
                            f"{exc}") from None
    if res.returncode == EXIT_EXISTS:
        raise ForwardExistsError(f"{account.home}/.forward exists; left untouched")
    verify_forward(account, text)


def verify_forward(account: Account, text: str) -> None:
    """Check, following no link, that ~/.forward is regular, the user's, 0644, with our text.

    Raises ForwardsError if not (the user may have changed it meanwhile; nothing is touched).
    """
    path = os.path.join(account.home, ".forward")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ForwardsError(f"{path} cannot be opened after writing: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != account.uid:
            raise ForwardsError(f"{path} is not a regular file owned by {account.name}")
        if stat.S_IMODE(st.st_mode) != 0o644:
            raise ForwardsError(f"{path} has mode {stat.S_IMODE(st.st_mode):o}, not 644")
        data = os.read(fd, MAX_TEMPLATE_BYTES + 1)
    finally:
        os.close(fd)
    if data != text.encode("utf-8"):
        raise ForwardsError(f"{path} does not hold the template text")
