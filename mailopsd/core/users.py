"""Local accounts: who has a mailbox, and the uid/gid/home to act as them."""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from dataclasses import dataclass

from mailopsd.core.errors import MailopsError


@dataclass(frozen=True)
class Account:
    """A local user as passwd describes them."""

    name: str
    uid: int
    gid: int
    home: str

    @classmethod
    def lookup(cls, name: str, key: str = "") -> Account:
        """The passwd entry for a user; raises MailopsError if there is none (naming the
        config ``key`` that holds the name, when given)."""
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            where = f"{key}: " if key else ""
            raise MailopsError(f"{where}no such user {name!r}") from None
        return cls(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)


def mailbox_accounts(users: tuple[str, ...], min_uid: int, max_uid: int,
                     exclude: tuple[str, ...] = ()) -> Iterator[Account]:
    """The accounts whose mailboxes mailopsd looks after, read afresh from passwd each call.

    An explicit ``users`` list wins (unknown names are skipped by the caller's lookup error);
    otherwise every passwd entry with min_uid <= uid <= max_uid. Root is never included.
    """
    if users:
        for name in users:
            if name in exclude:
                continue
            acct = Account.lookup(name)
            if acct.uid != 0:
                yield acct
        return
    seen: set[str] = set()
    for pw in sorted(pwd.getpwall(), key=lambda p: p.pw_name):
        if pw.pw_name in seen or pw.pw_name in exclude or pw.pw_uid == 0:
            continue
        if min_uid <= pw.pw_uid <= max_uid:
            seen.add(pw.pw_name)
            yield Account(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)


@dataclass(frozen=True)
class Mailbox:
    """A user's Maildir: the account and the Maildir's path relative to its home."""

    account: Account
    maildir: str

    @property
    def path(self) -> str:
        """The Maildir's absolute path (for messages; open it with mailopsd.maildir.folder)."""
        return os.path.join(self.account.home, self.maildir)


def find_mailboxes(users: tuple[str, ...], min_uid: int, max_uid: int,
                   exclude: tuple[str, ...], maildir: str
                   ) -> tuple[list[Mailbox], list[tuple[str, str]]]:
    """Every mailbox to look after, read afresh from passwd: ([Mailbox], [(user, problem)]).

    The explicit ``users`` list wins over the uid range (as in mailbox_accounts). A user whose
    Maildir does not exist is left out: silently for range users (system accounts), as a
    problem for listed ones; unknown listed names and root are problems. One mailbox per
    (uid, home) even if passwd has aliases. Root only lstat()s the Maildir path here (nothing
    read, the last component not followed); opening it is the as-user worker's job.
    """
    found: list[Mailbox] = []
    problems: list[tuple[str, str]] = []
    names = users or tuple(a.name for a in mailbox_accounts((), min_uid, max_uid, exclude))
    seen: set[tuple[int, str]] = set()
    for name in names:
        if name in exclude:
            continue
        try:
            acct = Account.lookup(name)
        except MailopsError as exc:
            problems.append((name, str(exc)))
            continue
        if acct.uid == 0:
            problems.append((name, "root's mail is never touched"))
            continue
        if (acct.uid, acct.home) in seen:
            continue
        seen.add((acct.uid, acct.home))
        box = Mailbox(acct, maildir)
        try:
            os.lstat(box.path)
        except FileNotFoundError:
            if users:
                problems.append((name, f"no Maildir at {box.path}"))
            continue
        except OSError:
            pass  # e.g. a root-squashed NFS home: let the worker (as the user) decide
        found.append(box)
    return found, problems
