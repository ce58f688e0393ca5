"""The two bulk ipset operations written as netlink bytes by hand: adding members, listing them.

pyroute2 (``ipset.py``) does everything else, but its generic encoder and decoder cost ~45 us per
member: 10,000 members took 0.45 s to add and 0.2-0.3 s to list, which would have made a restore
of 10,000 bans miss its 1 s target (bench/README.md). Here a member is one ``struct.pack``.

Wire format (linux/netfilter/ipset/ip_set.h, as ``ipset restore`` sends it): nlmsghdr, nfgenmsg,
then attributes; an ADD carrying many entries nests them as IPSET_ATTR_ADT > IPSET_ATTR_DATA >
(IPSET_ATTR_IP > IPADDR_IPV4|IPV6, IPSET_ATTR_CIDR), and needs IPSET_ATTR_LINENO.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterable, Iterator

from mailopsd.core.errors import FirewallError

NETLINK_NETFILTER = 12
NFNL_SUBSYS_IPSET = 6
CMD_LIST, CMD_ADD = 7, 9
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLA_F_NESTED, NLA_F_NET_BYTEORDER = 0x8000, 0x4000
A_PROTOCOL, A_SETNAME, A_DATA, A_ADT, A_LINENO = 1, 2, 7, 8, 9
A_IP, A_CIDR = 1, 3
A_IPADDR_IPV4, A_IPADDR_IPV6 = 1, 2
CHUNK = 1000  # entries per message: 24-36 bytes each, under an attribute's 64 KiB
_HDR = struct.Struct("=IHHII")
_NLA = struct.Struct("=HH")


def attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    size = _NLA.size + len(payload)
    return _NLA.pack(size, kind) + payload + b"\0" * (-size % 4)


def entry(target: str) -> bytes:
    """IPSET_ATTR_DATA for a canonical ban target (``192.0.2.7``, ``2001:db8::/64``)."""
    addr, _, plen = target.partition("/")
    v6 = ":" in addr
    raw = socket.inet_pton(socket.AF_INET6 if v6 else socket.AF_INET, addr)
    cidr = int(plen) if plen else (128 if v6 else 32)
    ip = attr(A_IP | NLA_F_NESTED,
              attr((A_IPADDR_IPV6 if v6 else A_IPADDR_IPV4) | NLA_F_NET_BYTEORDER, raw))
    return attr(A_DATA | NLA_F_NESTED, ip + attr(A_CIDR | NLA_F_NET_BYTEORDER, bytes([cidr])))


def message(cmd: int, flags: int, seq: int, attrs: bytes) -> bytes:
    """A whole ipset request: nlmsghdr + nfgenmsg (AF_INET, version 0, res_id 0) + attrs."""
    body = struct.pack("=BBH", socket.AF_INET, 0, 0) + attrs
    return _HDR.pack(_HDR.size + len(body), (NFNL_SUBSYS_IPSET << 8) | cmd, flags, seq, 0) + body


def add_messages(name: str, targets: Iterable[str], proto: int, seq: int) -> list[bytes]:
    """ADD requests (with ACK) carrying the targets, CHUNK at a time; seq counts up."""
    head = attr(A_PROTOCOL, bytes([proto])) + attr(A_SETNAME, name.encode() + b"\0") + \
        attr(A_LINENO, bytes(4))
    batch = [entry(t) for t in targets]
    out: list[bytes] = []
    for i in range(0, len(batch), CHUNK):
        adt = attr(A_ADT | NLA_F_NESTED, b"".join(batch[i:i + CHUNK]))
        out.append(message(CMD_ADD, NLM_F_REQUEST | NLM_F_ACK, seq + len(out), head + adt))
    return out


def list_message(name: str, proto: int, seq: int) -> bytes:
    """The dump request for one set's header and members."""
    attrs = attr(A_PROTOCOL, bytes([proto])) + attr(A_SETNAME, name.encode() + b"\0")
    return message(CMD_LIST, NLM_F_REQUEST | NLM_F_DUMP, seq, attrs)


def attrs_of(buf: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(type without flags, payload) of each attribute in ``buf[start:end]``."""
    end = len(buf) if end is None else end
    while start + _NLA.size <= end:
        size, kind = _NLA.unpack_from(buf, start)
        if size < _NLA.size:
            break
        yield kind & 0x3FFF, buf[start + _NLA.size:start + size]
        start += size + (-size % 4)


def members_in(payload: bytes) -> list[str]:
    """The members (canonical text) in one LIST reply's attributes (after nfgenmsg)."""
    out = []
    for kind, adt in attrs_of(payload):
        if kind != A_ADT:
            continue
        for dkind, data in attrs_of(adt):
            if dkind != A_DATA:
                continue
            addr, cidr = "", None
            for k, v in attrs_of(data):
                if k == A_IP:
                    for fam, raw in attrs_of(v):
                        addr = socket.inet_ntop(
                            socket.AF_INET6 if fam == A_IPADDR_IPV6 else socket.AF_INET, raw)
                elif k == A_CIDR:
                    cidr = v[0]
            if addr:
                full = 128 if ":" in addr else 32
                out.append(addr if cidr in (None, full) else f"{addr}/{cidr}")
    return out


def replies(buf: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(type, seq, payload) of each netlink message in a received buffer."""
    pos = 0
    while pos + _HDR.size <= len(buf):
        size, kind, _flags, seq, _pid = _HDR.unpack_from(buf, pos)
        if size < _HDR.size:
            break
        yield kind, seq, buf[pos + _HDR.size:pos + size]
        pos += size + (-size % 4)


class WireError(FirewallError):
    """The kernel refused a request; ``code`` is the errno or ipset's own error number."""

    def __init__(self, code: int, what: str) -> None:
        text = os.strerror(code) if code < 4096 else f"ipset error {code}"
        super().__init__(f"ipset {what} failed: {text} (code {code})")
        self.code = code


class Wire:
    """A plain netlink socket for the bulk requests (same network namespace as the process)."""

    def __init__(self, proto: int) -> None:
        self.proto = proto
        self.seq = 1
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))

    def close(self) -> None:
        self.sock.close()

    def add(self, name: str, targets: Iterable[str]) -> None:
        """Add members to ``name``; raises WireError on the first refusal."""
        msgs = add_messages(name, targets, self.proto, self.seq)
        for msg in msgs:
            self.sock.sendall(msg)
            self.seq += 1
            self._ack(f"add to {name}")

    def list(self, name: str) -> list[str] | None:
        """The members of ``name``, or None if there is no such set."""
        self.sock.sendall(list_message(name, self.proto, self.seq))
        seq, self.seq = self.seq, self.seq + 1
        out: list[str] = []
        while True:
            for kind, rseq, payload in replies(self.sock.recv(1 << 20)):
                if rseq != seq:
                    continue
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code == errno.ENOENT:
                        return None
                    if code:
                        raise WireError(code, f"list {name}")
                    continue
                out += members_in(payload[4:])  # after nfgenmsg

    def _ack(self, what: str) -> None:
        while True:
            for kind, rseq, payload in replies(self.sock.recv(65536)):
                if kind == NLMSG_ERROR and rseq == self.seq - 1:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise WireError(code, what)
                    return
