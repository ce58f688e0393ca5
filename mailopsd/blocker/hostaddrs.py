"""This host's own addresses, read from the kernel over rtnetlink (no psutil import).

``mailopsd scan-log`` is timed start-up included, and importing psutil for one call to
``net_if_addrs`` cost ~16 ms of it. The kernel answers the same question (an RTM_GETADDR dump,
what glibc's ``getifaddrs`` and therefore psutil ask) in well under a millisecond. Each address
is the one ``getifaddrs`` reports: IFA_LOCAL where the kernel gives one (point-to-point links,
where IFA_ADDRESS is the peer), else IFA_ADDRESS. Any failure raises OSError: the caller falls
back to psutil.
"""

from __future__ import annotations

import _socket  # socket's C functions: socket.py's enum set-up costs ~1 ms of scan-log's start-up
import struct

_NETLINK_ROUTE = 0
_RTM_NEWADDR, _RTM_GETADDR = 20, 22
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTA = struct.Struct("=HH")  # rtattr: len, type
_SIZES = {_socket.AF_INET: 4, _socket.AF_INET6: 16}


def _align(n: int) -> int:
    return (n + 3) & ~3


def netlink_addresses(timeout: float = 2.0) -> list[str]:
    """Every IPv4/IPv6 address on this host's interfaces (this network namespace).

    Raises OSError if the kernel cannot be asked or answers with an error or garbage.
    """
    # the C socket type: no context manager, closed by hand
    sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC,
                          _NETLINK_ROUTE)
    try:
        sock.settimeout(timeout)
        body = _IFADDR.pack(_socket.AF_UNSPEC, 0, 0, 0, 0)
        sock.sendto(_HDR.pack(_HDR.size + len(body), _RTM_GETADDR,
                              _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0) + body, (0, 0))
        out: list[str] = []
        while True:
            data = sock.recv(1 << 17)
            if not data:
                raise OSError("rtnetlink: empty answer")
            if _parse(data, out):
                return out
    finally:
        sock.close()


def _parse(data: bytes, out: list[str]) -> bool:
    """Append the addresses of one datagram's messages to ``out``; True at the dump's end."""
    off = 0
    while off + _HDR.size <= len(data):
        length, kind, _, _, _ = _HDR.unpack_from(data, off)
        if length < _HDR.size or off + length > len(data):
            raise OSError("rtnetlink: malformed message")
        if kind == _NLMSG_DONE:
            return True
        if kind == _NLMSG_ERROR:
            raise OSError("rtnetlink: error answer")
        if kind == _RTM_NEWADDR and length >= _HDR.size + _IFADDR.size:
            addr = _address(data, off + _HDR.size, off + length)
            if addr is not None:
                out.append(addr)
        off += _align(length)
    return False


def _address(data: bytes, start: int, end: int) -> str | None:
    """The address of one RTM_NEWADDR message (IFA_LOCAL before IFA_ADDRESS), or None."""
    family = _IFADDR.unpack_from(data, start)[0]
    size = _SIZES.get(family)
    if size is None:
        return None
    found: dict[int, bytes] = {}
    a = start + _IFADDR.size
    while a + _RTA.size <= end:
        alen, atype = _RTA.unpack_from(data, a)
        if alen < _RTA.size or a + alen > end:
            break
        if atype in (_IFA_ADDRESS, _IFA_LOCAL) and alen - _RTA.size == size:
            found[atype] = data[a + _RTA.size:a + alen]
        a += _align(alen)
    raw = found.get(_IFA_LOCAL, found.get(_IFA_ADDRESS))
    return None if raw is None else _socket.inet_ntop(family, raw)
