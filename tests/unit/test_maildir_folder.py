"""mailopsd.maildir.folder and maildir_ops on a real filesystem, as the current user."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from mailopsd.core.errors import UnsafePathError
from mailopsd.maildir.folder import FolderMissing, Maildir, MessageRef
from mailopsd.maildir.ops import apply, collect

UID = os.getuid()


def make(root: Path, *folders: str) -> Path:
    md = root / "Maildir"
    for f in ("", *folders):
        for sub in ("cur", "new", "tmp"):
            (md / f / sub).mkdir(parents=True, exist_ok=True)
    return md


def put(md: Path, folder: str, sub: str, name: str, data: bytes = b"Subject: x\n\nbody\n") -> Path:
    path = md / folder / sub / name
    path.write_bytes(data)
    return path


class Recorder:
    """Stands in for asuser.Channel: keeps items in memory."""

    def __init__(self) -> None:
        self.items: list[tuple[dict[str, Any], bytes]] = []

    def item(self, meta: dict[str, Any], chunks: Iterable[bytes] = ()) -> bool:
        self.items.append((meta, b"".join(chunks)))
        return True


def test_symlinked_maildir_folder_or_subdir_is_refused(tmp_path: Path) -> None:
    md = make(tmp_path / "real", ".Spam")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "Maildir").symlink_to(md)
    with pytest.raises(UnsafePathError):
        Maildir.open(str(tmp_path / "home"), "Maildir", UID)
    (md / ".Evil").symlink_to("/etc")
    os.rename(md / ".Spam" / "cur", md / ".Spam" / "cur.real")
    (md / ".Spam" / "cur").symlink_to(md / ".Spam" / "cur.real")
    with Maildir.open(str(tmp_path / "real"), "Maildir", UID) as box:
        with pytest.raises(UnsafePathError):
            box.folder(".Evil")
        spam = box.folder(".Spam")
        with pytest.raises(UnsafePathError):
            spam.names("cur")
        with pytest.raises(FolderMissing):
            box.folder(".Nothing")
        spam.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_folder_of_another_owner_is_refused(tmp_path: Path) -> None:
    md = make(tmp_path, ".Spam")
    os.chown(md / ".Spam", 65534, 65534)
    with Maildir.open(str(tmp_path), "Maildir", UID) as box, pytest.raises(UnsafePathError):
        box.folder(".Spam")


def test_inspect_says_why_a_message_is_left_alone(tmp_path: Path) -> None:
    md = make(tmp_path, ".Spam")
    put(md, ".Spam", "cur", "1.M1P1.h:2,S")
    put(md, ".Spam", "cur", "2.M1P1.h:2,ST")
    put(md, ".Spam", "cur", "3.M1P1.h:2,", b"x" * 2000)
    (md / ".Spam" / "new" / "4.M1P1.h").symlink_to("/etc/passwd")
    os.mkfifo(md / ".Spam" / "new" / "5.M1P1.h")
    with Maildir.open(str(tmp_path), "Maildir", UID) as box:
        f = box.folder(".Spam")
        assert isinstance(f.inspect("cur", "1.M1P1.h:2,S", max_size=1000), MessageRef)
        assert f.inspect("cur", "2.M1P1.h:2,ST") == "trashed"
        assert f.inspect("cur", "3.M1P1.h:2,", max_size=1000) == "oversize"
        assert f.inspect("new", "4.M1P1.h") == "symlink"
        assert f.inspect("new", "5.M1P1.h") == "not_regular"
        assert f.inspect("new", "gone") == "vanished"
        f.close()


def test_read_refuses_a_file_swapped_after_the_snapshot(tmp_path: Path) -> None:
    md = make(tmp_path, ".Spam")
    path = put(md, ".Spam", "new", "1.M1P1.h", b"original")
    with Maildir.open(str(tmp_path), "Maildir", UID) as box:
        f = box.folder(".Spam")
        ref = f.inspect("new", "1.M1P1.h")
        assert isinstance(ref, MessageRef)
        assert b"".join(f.read(ref)) == b"original"
        path.unlink()
        path.write_bytes(b"another file of another size")
        with pytest.raises(UnsafePathError):
            b"".join(f.read(ref))
        f.close()


def test_locate_follows_a_client_rename_from_new_to_cur(tmp_path: Path) -> None:
    md = make(tmp_path, ".Spam")
    put(md, ".Spam", "new", "1.M1P1.h")
    with Maildir.open(str(tmp_path), "Maildir", UID) as box:
        f = box.folder(".Spam")
        ref = f.inspect("new", "1.M1P1.h")
        assert isinstance(ref, MessageRef)
        os.rename(md / ".Spam" / "new" / "1.M1P1.h", md / ".Spam" / "cur" / "1.M1P1.h:2,S")
        found = f.locate(ref)
        assert found is not None and (found.subdir, found.name) == ("cur", "1.M1P1.h:2,S")
        (md / ".Spam" / "cur" / "1.M1P1.h:2,S").unlink()
        put(md, ".Spam", "cur", "1.M1P1.h:2,S", b"other")  # same name, another file
        assert f.locate(ref) is None
        f.close()


def test_link_into_never_replaces_an_existing_name(tmp_path: Path) -> None:
    md = make(tmp_path, ".Ham")
    put(md, ".Ham", "cur", "1.M1P1.h:2,F", b"ham")
    put(md, "", "cur", "1.M1P1.h:2,FS", b"someone else")
    with Maildir.open(str(tmp_path), "Maildir", UID) as box:
        ham, inbox = box.folder(".Ham"), box.folder("")
        ref = ham.inspect("cur", "1.M1P1.h:2,F")
        assert isinstance(ref, MessageRef)
        new = ham.link_into(ref, inbox, add_flags="S")
        assert new != "1.M1P1.h:2,FS" and new.endswith(":2,FS")
        assert (md / "cur" / "1.M1P1.h:2,FS").read_bytes() == b"someone else"
        assert (md / "cur" / new).read_bytes() == b"ham"
        ham.close()
        inbox.close()


def test_write_and_replace_use_new_names_and_keep_mtime_and_flags(tmp_path: Path) -> None:
    md = make(tmp_path, ".Sent")
    with Maildir.open(str(tmp_path), "Maildir", UID) as box:
        sent = box.folder(".Sent")
        name = sent.write_message(b"hello", subdir="cur", flags="S", mtime=1_700_000_000)
        assert name.endswith(",S=5:2,S")
        assert os.stat(md / ".Sent" / "cur" / name).st_mtime == 1_700_000_000
        ref = sent.inspect("cur", name)
        assert isinstance(ref, MessageRef)
        new = sent.replace_message(ref, b"hello, world", add_flags="F")
        assert new != name and new.endswith(":2,FS")
        assert os.listdir(md / ".Sent" / "cur") == [new]
        assert os.listdir(md / ".Sent" / "tmp") == []
        assert (md / ".Sent" / "cur" / new).read_bytes() == b"hello, world"
        assert os.stat(md / ".Sent" / "cur" / new).st_mtime == 1_700_000_000
        sent.close()
        trash = box.ensure_folder(".Trash")
        assert sorted(os.listdir(md / ".Trash")) == ["cur", "new", "tmp"]
        trash.close()


def test_collect_streams_accepted_messages_and_counts_the_rest(tmp_path: Path) -> None:
    md = make(tmp_path, ".Spam", ".Not Spam")
    put(md, ".Spam", "new", "1.M1P1.h", b"spam one")
    put(md, ".Spam", "cur", "2.M1P1.h:2,ST", b"deleted by the client")
    (md / ".Spam" / "cur" / "3.M1P1.h:2,").symlink_to("/etc/passwd")
    put(md, ".Not Spam", "cur", "4.M1P1.h:2,F", b"ham")
    rec = Recorder()
    res = collect({"home": str(tmp_path), "maildir": "Maildir", "max_size": 0,
                   "classes": {"spam": [".Spam", ".Missing"], "ham": [".Not Spam"]}}, rec)
    assert res["folders"] == {".Spam": "ok", ".Missing": "missing", ".Not Spam": "ok"}
    assert res["skipped"] == {"trashed": 1, "symlink": 1}
    assert res["listed"] == {"spam": 1, "ham": 1}
    assert [(m["class"], data) for m, data in rec.items] == [("spam", b"spam one"),
                                                              ("ham", b"ham")]


def test_apply_deletes_spam_and_moves_ham_back_read_only_for_snapshotted_files(
        tmp_path: Path) -> None:
    md = make(tmp_path, ".Spam", ".Not Spam")
    put(md, ".Spam", "new", "1.M1P1.h", b"spam")
    put(md, ".Not Spam", "cur", "2.M1P1.h:2,F", b"ham")
    original = put(md, "", "cur", "3.M1P1.h:2,S", b"copied by IMAP")
    os.link(original, md / ".Not Spam" / "cur" / "9.M1P1.h:2,")  # Dovecot's hard-link COPY
    rec = Recorder()
    collect({"home": str(tmp_path), "maildir": "Maildir",
             "classes": {"spam": [".Spam"], "ham": [".Not Spam"]}}, rec)
    put(md, ".Spam", "new", "5.M1P1.h", b"arrived after the snapshot")
    actions = [{"kind": "delete", "folder": m["folder"], "ref": m["ref"], "tag": "spam"}
               if m["class"] == "spam" else
               {"kind": "move", "folder": m["folder"], "ref": m["ref"], "tag": "ham",
                "dest": "", "add_flags": "S", "dedupe": True} for m, _ in rec.items]
    res = apply({"home": str(tmp_path), "maildir": "Maildir", "actions": actions}, rec)
    assert res["counts"] == {"spam_deleted": 1, "ham_moved": 1, "ham_deduped": 1}
    assert os.listdir(md / ".Spam" / "new") == ["5.M1P1.h"]
    assert os.listdir(md / ".Not Spam" / "cur") == []
    inbox = sorted((p.read_bytes(), p.name.partition(":2,")[2]) for p in (md / "cur").iterdir())
    assert inbox == [(b"copied by IMAP", "S"), (b"ham", "FS")]
    again = apply({"home": str(tmp_path), "maildir": "Maildir", "actions": actions}, rec)
    assert again["counts"] == {"spam_gone": 1, "ham_gone": 2}
