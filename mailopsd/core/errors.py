"""The one exception hierarchy of mailopsd: everything raised on purpose is a MailopsError."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class MailopsError(Exception):
    """Root of every error mailopsd raises deliberately."""


@dataclass(frozen=True)
class ConfigProblem:
    """One mistake in a configuration file: the dotted key and what was expected there."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class ConfigError(MailopsError):
    """The configuration is unusable; carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[ConfigProblem], source: str = "") -> None:
        self.problems = tuple(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} configuration error(s){where}:\n{lines}")


class JobError(MailopsError):
    """A job ran and failed; the message says why."""


class UnknownJobError(MailopsError):
    """A job name that no module provides."""


class JobBusyError(MailopsError):
    """The job is already running (in the daemon or another run-job): EX_TEMPFAIL."""


class JobCancelled(MailopsError):
    """The job noticed a stop request and ended early."""


class ProcessError(MailopsError):
    """An external program could not be started, timed out, or failed."""

    def __init__(self, message: str, argv: Sequence[str] = (), returncode: int | None = None,
                 stderr: str = "") -> None:
        super().__init__(message)
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr


class UnsafePathError(MailopsError):
    """A path in a user's tree is a symlink, has the wrong owner or type: refused, not followed."""


class StateError(MailopsError):
    """The state database is unusable (newer schema, corrupt, unwritable)."""


class FirewallError(MailopsError):
    """The firewall backend could not apply a change."""
