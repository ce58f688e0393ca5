"""nftables in-process through libnftables (Debian: python3-nftables), for the nftables backend.

``nft -f -`` costs a process start per ban (~4 ms, much more on a busy machine: the live
ban latency's p99); libnftables runs the same script text in-process in well under a
millisecond. Used only when ``binaries.nft`` is the stock ``/usr/sbin/nft`` and the module
loads (a different binary is the admin's choice, and is run as a program, with its timeout).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

STOCK_NFT = "/usr/sbin/nft"


def load(nft_path: str) -> Any | None:
    """A libnftables context, or None (another binary configured, or no python3-nftables)."""
    if os.path.realpath(nft_path) != os.path.realpath(STOCK_NFT) or \
            os.environ.get("MAILOPSD_NO_LIBNFT"):
        return None
    try:  # Debian's python3-nftables (ctypes over libnftables.so.1); no type stubs
        ctx = importlib.import_module("nftables").Nftables()
        ctx.set_handle_output(False)
    except Exception:  # missing module or library: the nft program does the same
        return None
    return ctx


def run(ctx: Any, script: str, args: tuple[str, ...]) -> tuple[int, str, str]:
    """Run ``script`` (as ``nft -f -`` would) or the command in ``args`` (as ``nft ARGS``);
    returns (exit status, stdout, stderr) like the program's."""
    options = [a for a in args if a.startswith("-")]
    text = " ".join(a for a in args if not a.startswith("-")) if args else script
    json_out = "-j" in options
    if json_out:
        ctx.set_json_output(True)
    try:
        rc, out, err = ctx.cmd(text)
    finally:
        if json_out:
            ctx.set_json_output(False)
    return (0 if rc == 0 else 1), out or "", err or ""
