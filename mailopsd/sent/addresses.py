"""RFC 5322 address lists: parse To/Cc headers and Exim's ``$recipients`` into addr-specs.

A hand-written tokenizer rather than ``email.utils.getaddresses``: the input is hostile (a
quoted local part may hold ", ", "<", ">" or "@"; comments nest; groups end in ";"), and the
result must be exact for comparison. Addresses compare case-insensitively on their unquoted
form, so ``"john.doe"@Example.TEST`` equals ``John.Doe@example.test``. Nothing here raises on
bad input: unparseable pieces are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

_ATEXT_RUN = re.compile(r"[^\s()<>\[\]:;@\\,.\"]+")
_DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\U0010ffff-]+"
                       r"(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\U0010ffff-]+)*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Address:
    """One addr-spec: the unquoted local part and the domain as written."""

    local: str
    domain: str

    @property
    def key(self) -> str:
        """The comparison key: unquoted and lower-cased."""
        return f"{self.local.lower()}@{self.domain.lower()}"

    def render(self) -> str:
        """The address as it goes into a header: quoted only if it must be.

        Raises ValueError if it holds a control character (CR/LF must never reach a header).
        """
        if _CONTROL.search(self.local) or _CONTROL.search(self.domain):
            raise ValueError("address contains a control character")
        local = self.local
        if not _DOT_ATOM.match(local):
            local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{local}@{self.domain}" if self.domain else local


# Token kinds: "q" quoted string, "l" domain literal, "a" angle-addr content, "w" word,
# and the specials "," ":" ";" "@" ".". Comments and whitespace are dropped.
_Token = tuple[str, str]


def _read_quoted(text: str, i: int, end_char: str) -> tuple[str, int]:
    """Read a quoted string / literal from text[i] (the opening char); return (content, next)."""
    out: list[str] = []
    i += 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if c == end_char:
            return "".join(out), i + 1
        out.append(c)
        i += 1
    return "".join(out), i  # unterminated: take the rest


def _skip_comment(text: str, i: int) -> int:
    """Skip a (possibly nested) comment starting at text[i] == "("; return the next index."""
    depth = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def _read_angle(text: str, i: int) -> tuple[str, int]:
    """Return the raw text inside <...> starting at text[i] == "<", respecting quotes."""
    start = i + 1
    i = start
    while i < len(text):
        c = text[i]
        if c == '"':
            _, i = _read_quoted(text, i, '"')
            continue
        if c == "(":
            i = _skip_comment(text, i)
            continue
        if c == ">":
            return text[start:i], i + 1
        i += 1
    return text[start:], i


def tokenize(text: str) -> Iterator[_Token]:
    """Split an address list into tokens (comments and folding whitespace dropped)."""
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "(":
            i = _skip_comment(text, i)
        elif c == '"':
            content, i = _read_quoted(text, i, '"')
            yield ("q", content)
        elif c == "[":
            content, i = _read_quoted(text, i, "]")
            yield ("l", "[" + content + "]")
        elif c == "<":
            content, i = _read_angle(text, i)
            yield ("a", content)
        elif c in ",:;@.":
            yield (c, c)
            i += 1
        elif c in ">)]\\":
            i += 1  # stray closer or backslash: ignore
        else:
            m = _ATEXT_RUN.match(text, i)
            if m is None:  # cannot happen, but never loop forever on hostile input
                i += 1
                continue
            yield ("w", m.group())
            i = m.end()


def _addr_spec(tokens: list[_Token]) -> Address | None:
    """An Address from the tokens of an addr-spec (local "@" domain), or None."""
    at = max((k for k, t in enumerate(tokens) if t[0] == "@"), default=-1)
    local_toks = tokens[:at] if at >= 0 else tokens
    domain_toks = tokens[at + 1:] if at >= 0 else []
    local = "".join(v for kind, v in local_toks if kind in ("w", "q", "."))
    domain = "".join(v for kind, v in domain_toks if kind in ("w", "l", "."))
    if not local or (at >= 0 and not domain):
        return None
    return Address(local, domain)


def _mailbox(tokens: list[_Token]) -> Address | None:
    """The address of one mailbox: its angle-addr if it has one, else the bare addr-spec."""
    angles = [v for kind, v in tokens if kind == "a"]
    if angles:
        inner = list(tokenize(angles[-1]))
        # obs-route "<@a,@b:user@host>": keep what follows the route's colon
        colons = [k for k, t in enumerate(inner) if t[0] == ":"]
        if colons:
            inner = inner[colons[-1] + 1:]
        return _addr_spec(inner)
    return _addr_spec(tokens)


def parse_address_list(text: str) -> list[Address]:
    """Every address in an RFC 5322 address list (groups flattened), in order."""
    result: list[Address] = []
    current: list[_Token] = []

    def flush() -> None:
        if current:
            addr = _mailbox(current)
            if addr is not None:
                result.append(addr)
            current.clear()

    for token in tokenize(text):
        kind = token[0]
        if kind == ",":
            flush()
        elif kind == ":" and not any(t[0] == "a" for t in current):
            current.clear()  # "group name:" starts a group; its name is no address
        elif kind == ";":
            flush()
        else:
            current.append(token)
    flush()
    return result


def bcc_addresses(recipients: Iterable[Address], visible: Iterable[Address]) -> list[Address]:
    """Envelope recipients not in To/Cc, case-insensitively, first occurrence kept, in order."""
    seen = {a.key for a in visible}
    out: list[Address] = []
    for addr in recipients:
        if addr.key not in seen:
            seen.add(addr.key)
            out.append(addr)
    return out
