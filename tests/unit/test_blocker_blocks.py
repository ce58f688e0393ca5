"""scan-log's blocks (scan.blocks): whole lines, the same cuts whatever room the buffer starts
with, long "lines" cut at LINE_LIMIT, a newline added at the end of the file."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator

import pytest

from mailopsd.blocker import scan


def _reference(data: bytes, block: int, limit: int) -> Iterator[bytes]:
    """The rules with one buffer of BLOCK + LINE_LIMIT from the start (scan-log before CARRY)."""
    f = io.BytesIO(data)
    buf = bytearray(block + limit)
    have = 0
    while True:
        got = 0
        while got < block:
            n = f.readinto(memoryview(buf)[have + got:have + block])
            if not n:
                break
            got += n
        if not got:
            break
        total = have + got
        last = buf.rfind(b"\n", 0, total)
        if last < 0 and total < limit:
            have = total
            continue
        cut = last + 1 if last >= 0 else total
        yield bytes(buf[:cut])
        have = total - cut
        buf[:have] = bytes(buf[cut:total])
    if have:
        yield bytes(buf[:have]) + b"\n"


class Trickle(io.RawIOBase):
    """A file handing out a few bytes per read (a pipe, a .gz)."""

    def __init__(self, data: bytes, rnd: random.Random) -> None:
        self.data, self.pos, self.rnd = data, 0, rnd

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        n = min(len(b), len(self.data) - self.pos, self.rnd.randrange(1, 300))
        b[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


@pytest.mark.parametrize("seed", range(300))
def test_blocks_cut_as_one_big_buffer_would(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rnd = random.Random(seed)
    block, carry, limit = rnd.choice(((64, 8, 128), (64, 16, 64), (32, 4, 256), (8, 1, 8)))
    monkeypatch.setattr(scan, "BLOCK", block)
    monkeypatch.setattr(scan, "CARRY", carry)
    monkeypatch.setattr(scan, "LINE_LIMIT", limit)
    sizes = (0, 1, carry - 1, carry, carry + 1, block, limit - 1, limit, limit + 1, 3 * limit)
    lines = [bytes(rnd.choice(b"ab \xff") for _ in range(rnd.choice(sizes)))
             for _ in range(rnd.randrange(0, 40))]
    data = b"\n".join(lines) + (b"\n" if rnd.random() < 0.5 else b"")
    got = []
    for body in scan.blocks(Trickle(data, rnd), "f"):  # type: ignore[arg-type]
        got.append(bytes(body))  # the block is valid until the next one is asked for
    assert got == list(_reference(data, block, limit))
    # and what the blocks must be whatever the buffer's history (not a copy of its code):
    # the file's bytes in order (a newline added to an unended last line), every block ending
    # in a newline except where a "line" reached LINE_LIMIT and was cut there
    joined = b"".join(got)
    assert joined == data or (joined == data + b"\n" and not data.endswith(b"\n"))
    tail = 0  # length of the line running on from the blocks before
    for body in got:
        assert body
        if not body.endswith(b"\n"):
            assert tail + len(body) >= limit
        tail = 0 if body.endswith(b"\n") else tail + len(body)
