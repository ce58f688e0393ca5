"""Maildir operations that run inside the as-user worker (``mailopsd.core.asuser.OPERATIONS``).

``collect`` snapshots folders and streams each accepted message's content; ``apply`` acts on
exactly the snapshotted messages afterwards. Both use only ``mailopsd.maildir.folder``, so every
path is opened without following symlinks, as the mailbox owner. Arguments and results are plain
JSON dicts; nothing here logs (the worker has no logging; the parent reports).
"""

from __future__ import annotations

import errno
import os
from collections import Counter
from typing import Any

from mailopsd.core.asuser import Channel
from mailopsd.core.errors import MailopsError, UnsafePathError
from mailopsd.maildir.folder import Folder, FolderMissing, Maildir, MessageRef, fsync_dir

MAX_ERRORS = 10


def _open_maildir(args: dict[str, Any]) -> Maildir | dict[str, Any]:
    """The user's Maildir, or a result dict saying why it cannot be used."""
    try:
        return Maildir.open(str(args["home"]), str(args["maildir"]), os.getuid())
    except FolderMissing:
        return {"maildir": "missing"}
    except (UnsafePathError, OSError) as exc:
        return {"maildir": "unsafe", "reason": str(exc)}


def collect(args: dict[str, Any], channel: Channel) -> dict[str, Any]:
    """Snapshot ``args["classes"]`` ({class: [folder, ...]}) and stream every usable message.

    Each item's meta is ``{"class", "folder", "ref"}``; with ``export`` false no content is
    sent (dry run). Messages left alone are counted by reason (see ``Folder.inspect``); folders
    report ``ok``, ``missing`` or ``unsafe: <why>``.
    """
    md = _open_maildir(args)
    if isinstance(md, dict):
        return md
    max_size = int(args.get("max_size", 0))
    export = bool(args.get("export", True))
    skipped: Counter[str] = Counter()
    folders: dict[str, str] = {}
    listed: Counter[str] = Counter()
    size: Counter[str] = Counter()
    with md:
        for klass, names in dict(args["classes"]).items():
            for name in names:
                try:
                    folder = md.folder(str(name))
                except FolderMissing:
                    folders[name] = "missing"
                    continue
                except (UnsafePathError, OSError, ValueError) as exc:
                    folders[name] = f"unsafe: {exc}"
                    continue
                try:
                    status = _collect_folder(folder, klass, max_size, export, channel,
                                             skipped, listed, size)
                finally:
                    folder.close()
                folders[name] = status
    return {"maildir": "ok", "folders": folders, "skipped": dict(skipped),
            "listed": dict(listed), "bytes": dict(size)}


def _collect_folder(folder: Folder, klass: str, max_size: int, export: bool, channel: Channel,
                    skipped: Counter[str], listed: Counter[str], size: Counter[str]) -> str:
    for subdir in ("new", "cur"):
        try:
            names = folder.names(subdir)
        except FolderMissing:
            continue
        except (UnsafePathError, OSError) as exc:
            return f"unsafe: {subdir}: {exc}"
        for name in sorted(names):
            found = folder.inspect(subdir, name, max_size=max_size)
            if isinstance(found, str):
                skipped[found] += 1
                continue
            meta = {"class": klass, "folder": folder.name, "ref": found.to_json()}
            if channel.item(meta, folder.read(found, max_size=max_size) if export else ()):
                listed[klass] += 1
                size[klass] += found.size
            else:
                skipped["unreadable"] += 1
    return "ok"


def apply(args: dict[str, Any], channel: Channel) -> dict[str, Any]:
    """Act on snapshotted messages: ``args["actions"]`` items are
    ``{"kind": "delete"|"move", "folder", "ref", "dest", "add_flags", "create_dest", "dedupe",
    "tag"}``; counts are ``<tag>_<outcome>`` (deleted, moved, deduped, gone, failed).

    Moves link the file into ``dest/cur`` (flags added) first and fsync; only then are the old
    names (and deletions) unlinked, so a crash leaves a duplicate, never a loss. With
    ``dedupe`` a message whose inode already has a name in ``dest`` (a hard-link copy) is
    only unlinked. A message no longer found is ``gone`` and nothing is done to it.
    """
    md = _open_maildir(args)
    if isinstance(md, dict):
        return md
    counts: Counter[str] = Counter()
    errors: list[str] = []
    folders: dict[str, Folder] = {}
    dest_inodes: dict[str, set[tuple[int, int]]] = {}
    unlinks: list[tuple[Folder, MessageRef, str, str]] = []  # folder, ref, tag, outcome

    def folder(name: str, create: bool = False) -> Folder:
        if name not in folders:
            folders[name] = md.ensure_folder(name) if create else md.folder(name)
        return folders[name]

    def inodes(dest: Folder) -> set[tuple[int, int]]:
        if dest.name not in dest_inodes:
            dest_inodes[dest.name] = dest.inodes()
        return dest_inodes[dest.name]

    def fail(tag: str, exc: BaseException) -> None:
        counts[f"{tag}_failed"] += 1
        if len(errors) < MAX_ERRORS:
            errors.append(f"{tag}: {type(exc).__name__}: {exc}")

    try:
        dests: set[str] = set()
        for action in args["actions"]:
            tag = str(action.get("tag") or "message")
            try:
                src = folder(str(action["folder"]))
                ref = src.locate(MessageRef.from_json(action["ref"]))
                if ref is None:
                    counts[f"{tag}_gone"] += 1
                elif action["kind"] == "delete":
                    unlinks.append((src, ref, tag, "deleted"))
                else:
                    dest = folder(str(action["dest"]), bool(action.get("create_dest")))
                    if (action.get("dedupe") and ref.nlink > 1
                            and (ref.dev, ref.ino) in inodes(dest)):
                        unlinks.append((src, ref, tag, "deduped"))
                        continue
                    src.link_into(ref, dest, add_flags=str(action.get("add_flags", "")))
                    dest_inodes.get(dest.name, set()).add((ref.dev, ref.ino))
                    dests.add(dest.name)
                    unlinks.append((src, ref, tag, "moved"))
            except (MailopsError, OSError, ValueError, KeyError) as exc:
                fail(tag, exc)
        for name in dests:  # the new names are durable before any old one goes
            fsync_dir(folders[name].sub("cur"))
        touched: set[tuple[str, str]] = set()
        for src, ref, tag, outcome in unlinks:
            try:
                src.unlink(ref)
                touched.add((src.name, ref.subdir))
            except FileNotFoundError:  # a client removed it meanwhile: nothing lost
                if outcome == "deleted":
                    outcome = "gone"
            except OSError as exc:
                fail(tag, exc)
                continue
            counts[f"{tag}_{outcome}"] += 1
        for name, subdir in touched:
            try:
                fsync_dir(folders[name].sub(subdir))
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    fail("fsync", exc)
    finally:
        for f in folders.values():
            f.close()
        md.close()
    return {"maildir": "ok", "counts": dict(counts), "errors": errors}
