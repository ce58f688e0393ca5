"""Local accounts: who has a mailbox, and the uid/gid/home to act as them."""

from __future__ import annotations

import pwd
from collections.abc import Iterator
from dataclasses import dataclass

from mailopsd.errors import MailopsError


@dataclass(frozen=True)
class Account:
    """A local user as passwd describes them."""

    name: str
    uid: int
    gid: int
    home: str

    @classmethod
    def lookup(cls, name: str) -> Account:
        """The passwd entry for a user; raises MailopsError if there is none."""
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            raise MailopsError(f"no such user {name!r}") from None
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
