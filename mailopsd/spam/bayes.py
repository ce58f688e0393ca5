"""sa-learn command builders and output parsers (pure functions, no I/O).

Shared by the SpamAssassin jobs; running the commands (as the database owner, under the Bayes
lock) lives in ``mailopsd.spam.bayes_db``. Facts these rely on (SpamAssassin 4.0.1, checked by
hand):

- ``-f LISTFILE`` reads one source per line, ``spam:file:/path`` or ``ham:file:/path``; spaces are
  fine, but each path is glob-expanded (``* ? [ ] { }``), so listed paths must not contain those.
- sa-learn silently skips files over 500 KiB unless ``--max-size 0``, and counts neither; callers
  apply their own size limit and pass 0, so that every listed file is really examined.
- stdout: ``Learned tokens from N message(s) (M message(s) examined)``; rc 0 when something was
  examined, 1 when nothing was, other codes (13, 25, ... and signals) are failures.
- Learning must load the rules: ``bayes_ignore_header`` lines and the Bayes stop words live in
  the default rule files and shape the tokens, so the maintenance shortcut of pointing
  ``--configpath`` at nothing (``bayes_db.NO_RULES``) must never be used to learn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Klass = Literal["spam", "ham"]
GLOB_CHARS = frozenset("*?[]{}~")
_LEARNED = re.compile(r"Learned tokens from (\d+) message\(s\) \((\d+) message\(s\) examined\)")


@dataclass(frozen=True)
class Learned:
    """What one sa-learn run reported."""

    learned: int  # messages whose tokens were new to the database
    examined: int  # messages read (already-learned ones count here, not in learned)


def sa_learn_argv(binary: str, *, dbpath: str | None, listfile: str, klass: Klass,
                  max_size: int = 0, site_config: str = "") -> tuple[str, ...]:
    """argv to learn every file named in ``listfile`` as ``klass``.

    ``max_size`` 0 (the default) lifts sa-learn's silent 500 KiB skip: filter sizes yourself.
    """
    if klass not in ("spam", "ham"):
        raise ValueError(f"klass must be 'spam' or 'ham', not {klass!r}")
    argv = [binary, f"--{klass}", "--max-size", str(max_size), "-f", listfile]
    if dbpath:
        argv[1:1] = ["--dbpath", dbpath]
    if site_config:  # where a shared (e.g. PgSQL) Bayes store is configured
        argv[1:1] = ["--siteconfigpath", site_config]
    return tuple(argv)


def check_listable(path: str) -> None:
    """Raise ValueError if sa-learn would not read ``path`` literally from a list file."""
    bad = sorted(set(path) & GLOB_CHARS)
    if bad or "\n" in path or "\r" in path or not path.startswith("/"):
        raise ValueError(f"path {path!r} cannot go in an sa-learn list file "
                         f"(absolute, no newline, no {''.join(sorted(GLOB_CHARS))})")


def list_file_text(klass: Klass, paths: list[str]) -> str:
    """The ``-f`` list: one ``<klass>:file:<path>`` line per message; raises ValueError."""
    for path in paths:
        check_listable(path)
    return "".join(f"{klass}:file:{path}\n" for path in paths)


def parse_learned(stdout: str) -> Learned | None:
    """The counts from sa-learn's summary line, or None if it printed none."""
    m = _LEARNED.search(stdout)
    return Learned(int(m.group(1)), int(m.group(2))) if m else None


def learn_outcome(returncode: int, stdout: str, listed: int) -> tuple[bool, Learned, str]:
    """Judge a learn run over ``listed`` files: (ok, counts, why-not).

    Success means rc 0 and every listed file examined; rc 1 is fine only for an empty list.
    Anything less keeps the messages: we cannot tell which ones sa-learn skipped.
    """
    counts = parse_learned(stdout) or Learned(0, 0)
    if returncode == 1 and listed == 0:
        return True, counts, ""
    if returncode != 0:
        return False, counts, f"sa-learn exited with {returncode}"
    if counts.examined != listed:
        return False, counts, f"sa-learn examined {counts.examined} of {listed} messages"
    return True, counts, ""
