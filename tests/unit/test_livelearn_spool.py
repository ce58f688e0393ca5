"""Live learning, fast: spool names, digests, learn-enqueue's outcomes, the daemon's checks."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from mailopsd.cli.cmd_livelearn import _split_fast
from mailopsd.core.config import parse_config
from mailopsd.core.errors import ConfigError
from mailopsd.livelearn import spool
from mailopsd.livelearn.batch import latest_per_digest
from mailopsd.livelearn.drain import Entry, Spool
from mailopsd.livelearn.enqueue import enqueue
from mailopsd.livelearn.store import Digest, digest_of


def _pipe(data: bytes) -> tuple[int, threading.Thread, list[BaseException]]:
    """A read fd fed with ``data`` by a thread (which fails on a broken pipe)."""
    r, w = os.pipe()
    errors: list[BaseException] = []

    def feed() -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(w, view[:65536]):]
        except BaseException as exc:
            errors.append(exc)
        finally:
            os.close(w)

    t = threading.Thread(target=feed)
    t.start()
    return r, t, errors


def _enqueue(spool_dir: Path, data: bytes, klass: str = "spam", **kw: int):  # type: ignore[no-untyped-def]
    r, t, errors = _pipe(data)
    try:
        out = enqueue(r, klass, str(spool_dir), max_size=kw.get("max_size", 1000),
                      daily_limit=kw.get("daily_limit", 3), uid=kw.get("uid", os.getuid()))
    finally:
        t.join(10)
        os.close(r)
    assert errors == [], "learn-enqueue must read the whole message (no broken pipe)"
    return out


def test_entry_names_round_trip_and_strangers_are_not_ours() -> None:
    name = spool.new_name("ham")
    kind, klass, t = spool.parse_name(name)  # type: ignore[misc]
    assert (kind, klass) == ("learn", "ham") and t > 0
    assert spool.parse_name(spool.new_name("refused.size"))[:2] == ("refused", "size")  # type: ignore[index]
    for bad in ("spam", "spam.1.2", "spam.x.1.y", "eggs.1.2.3", "refused.other.1.2.3",
                "ham.1.2.3.4", ".tmp.spam.1.2.3", "../spam.1.2.3"):
        assert spool.parse_name(bad) is None, bad


def test_digest_reads_crlf_as_lf_across_chunk_boundaries() -> None:
    lf = b"Subject: x\n\nbody\n"
    crlf = lf.replace(b"\n", b"\r\n")
    d = Digest()
    for i in range(len(crlf)):
        d.update(crlf[i:i + 1])  # every CR ends a chunk once
    assert d.hexdigest() == digest_of(lf) == digest_of(crlf)
    assert digest_of(b"a\rb") != digest_of(b"ab")  # a lone CR is content


def test_enqueue_writes_one_private_entry_atomically(tmp_path: Path) -> None:
    out = _enqueue(tmp_path, b"Subject: s\r\n\r\nspam\r\n")
    assert out.status == "queued" and out.size == 20
    entry = tmp_path / out.name
    assert entry.read_bytes() == b"Subject: s\r\n\r\nspam\r\n"
    assert entry.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no .tmp left behind


def test_enqueue_refuses_an_oversized_message_after_reading_all_of_it(tmp_path: Path) -> None:
    out = _enqueue(tmp_path, b"x" * 3_000_000, max_size=1000)
    assert (out.status, out.reason, out.size) == ("refused", "size", 3_000_000)
    names = [p.name for p in tmp_path.iterdir()]
    assert len(names) == 1 and spool.parse_name(names[0])[:2] == ("refused", "size")  # type: ignore[index]
    assert (tmp_path / names[0]).stat().st_size == 0


def test_enqueue_refuses_early_only_on_todays_published_count(tmp_path: Path) -> None:
    (tmp_path / spool.DAILY_DIR).mkdir()
    daily = Path(spool.daily_path(str(tmp_path), 4242))
    daily.write_text("1999-01-01 99\n")  # yesterday's count grants nothing and refuses nothing
    assert _enqueue(tmp_path, b"m\n", uid=4242).status == "queued"
    daily.write_text(f"{spool.today()} 3\n")
    out = _enqueue(tmp_path, b"m\n", uid=4242)
    assert (out.status, out.reason) == ("refused", "daily_limit")
    assert _enqueue(tmp_path, b"m\n", uid=4242, daily_limit=0).status == "queued"  # 0: no limit


def test_enqueue_without_a_spool_fails_after_draining_stdin(tmp_path: Path) -> None:
    out = _enqueue(tmp_path / "missing", b"y" * 200_000, max_size=0)
    assert out.status == "failed" and "does not exist" in out.reason
    assert out.size == 200_000


def test_scan_refuses_links_fifos_hard_links_and_strange_names(tmp_path: Path) -> None:
    good = tmp_path / spool.new_name("spam")
    good.write_bytes(b"m\n")
    (tmp_path / spool.new_name("ham")).symlink_to("/etc/passwd")
    os.mkfifo(tmp_path / spool.new_name("spam"))
    linked = tmp_path / spool.new_name("spam")
    linked.write_bytes(b"l\n")
    os.link(linked, tmp_path / "elsewhere")
    (tmp_path / "spam.not.a.name").write_bytes(b"x")
    (tmp_path / spool.new_name("refused.daily_limit")).touch()
    (tmp_path / (spool.TMP_PREFIX + "fresh")).write_bytes(b"being written")
    full = tmp_path / spool.new_name("spam")
    full.mkdir()
    (full / "inside").write_bytes(b"x")
    sp = Spool(str(tmp_path))
    sp.fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        scan = sp.scan()
        assert [e.name for e in scan.entries] == [good.name]
        assert sorted(why for _, _, why in scan.rejected) == [
            "hard_link", "hard_link", "not_regular", "not_regular", "not_regular",
            "unknown_name"]
        assert sum(scan.refused.values()) == 1
        removed = {name: sp.remove(name) for name, _, _ in scan.rejected}
    finally:
        sp.close()
    assert removed.pop(full.name) is False and all(removed.values())  # a full dir stays
    assert (full / "inside").exists() and Path("/etc/passwd").exists()


def test_copy_rechecks_the_owner_and_follows_no_link_swapped_in(tmp_path: Path) -> None:
    class Staging:
        def create(self, stem: str) -> tuple[str, int]:
            raise AssertionError("nothing may be copied")

    name = spool.new_name("spam")
    (tmp_path / name).write_bytes(b"mine\n")
    sp = Spool(str(tmp_path))
    sp.fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        stranger = Entry(name, os.getuid() + 1, "spam", 1)
        assert sp.copy(stranger, Staging(), 0) == "owner_changed"
        (tmp_path / name).unlink()
        (tmp_path / name).symlink_to("/etc/passwd")
        assert sp.copy(Entry(name, os.getuid(), "spam", 1), Staging(), 0) == "not_regular"
    finally:
        sp.close()


def test_the_latest_entry_of_a_message_wins() -> None:
    def e(name: str, klass: str, t: int, digest: str) -> Entry:
        return Entry(name, 1000, klass, t, digest=digest)

    spam, ham, other = e("a", "spam", 1, "D"), e("b", "ham", 2, "D"), e("c", "spam", 3, "E")
    winners, older = latest_per_digest([other, ham, spam])
    assert [w.name for w in winners] == ["b", "c"]
    assert older == {"D": [spam]}


@pytest.mark.parametrize(("argv", "want"), [
    (["learn-enqueue", "spam"], (None, "spam")),
    (["-c", "/etc/x.toml", "learn-enqueue", "ham"], ("/etc/x.toml", "ham")),
    (["--config=/x", "--log-level", "debug", "learn-enqueue", "spam"], ("/x", "spam")),
    (["learn-enqueue", "eggs"], None),
    (["learn-enqueue"], None),
    (["learn-enqueue", "spam", "alice"], None),
    (["--help", "learn-enqueue", "spam"], None),
])
def test_learn_enqueue_fast_path_takes_only_exact_usage(argv: list[str], want: object) -> None:
    assert _split_fast(argv) == want


def test_live_learn_config_defaults_and_errors_name_the_key() -> None:
    cfg = parse_config({})
    assert (cfg.live_learn.enabled, cfg.live_learn.spool_dir, cfg.live_learn.daily_limit,
            cfg.live_learn.batch_wait) == (False, "/var/spool/mailopsd/learn", 300, 2.0)
    with pytest.raises(ConfigError) as err:
        parse_config({"live-learn": {"daily_limit": -1, "spool_dir": "/tmp", "bogus": 1,
                                     "batch_wait": "soon"}})
    text = str(err.value)
    for key in ("live-learn.daily_limit", "live-learn.spool_dir", "live-learn.bogus",
                "live-learn.batch_wait"):
        assert key in text


@pytest.mark.parametrize("toml", [
    "[live-learn]\ndaily_limit = -1\n",
    "[live-learn]\ndaily_limit = true\n",
    "[live-learn]\nspool_dir = \"relative\"\n",
    "[live-learn]\nspool_dir = \"/tmp\"\n",
    "[live-learn]\nbatch_wait = \"soon\"\n",
    "[live-learn]\nenabled = \"yes\"\n",
    "[live-learn]\nbogus = 1\n",
    "[jobs.learn-spam]\nmax_size = \"big\"\n",
    "[logging]\nlevel = \"loud\"\n",
    "[logging]\njournal_socket = \"sock\"\n",
    "live-learn = 3\n",
    "not toml [",
])
def test_learn_enqueue_settings_refuse_what_the_full_schema_refuses(toml: str) -> None:
    from mailopsd.livelearn.fastconfig import FastConfigError, parse

    with pytest.raises(FastConfigError):
        parse(toml.encode())
    import tomllib

    try:
        data = tomllib.loads(toml)
    except tomllib.TOMLDecodeError:
        return
    with pytest.raises(ConfigError):
        parse_config(data)


def test_learn_enqueue_settings_agree_with_the_full_schema() -> None:
    from mailopsd.livelearn.fastconfig import parse

    toml = ("[live-learn]\nenabled = true\nspool_dir = \"/srv/learn\"\ndaily_limit = 7\n"
            "batch_wait = \"500ms\"\n[jobs.learn-spam]\nmax_size = 99\n[logging]\n"
            "level = \"warning\"\njournal_socket = \"/run/j\"\nsyslog_identifier = \"x\"\n")
    fast = parse(toml.encode())
    import tomllib

    full = parse_config(tomllib.loads(toml))
    assert (fast.spool_dir, fast.daily_limit, fast.max_size, fast.level, fast.journal_socket,
            fast.syslog_identifier) == (
        full.live_learn.spool_dir, full.live_learn.daily_limit, full.jobs.learn_spam.max_size,
        full.logging.level, full.logging.journal_socket, full.logging.syslog_identifier)
    default = parse(b"")
    dfull = parse_config({})
    assert (default.spool_dir, default.daily_limit, default.max_size) == (
        dfull.live_learn.spool_dir, dfull.live_learn.daily_limit, dfull.jobs.learn_spam.max_size)


def test_learn_enqueue_default_config_path_is_the_loaders() -> None:
    from mailopsd.cli.cmd_livelearn import DEFAULT_CONFIG
    from mailopsd.core.config.loader import DEFAULT_CONFIG_PATH

    assert DEFAULT_CONFIG == DEFAULT_CONFIG_PATH


def test_learn_enqueue_settings_merge_drop_ins_as_the_loader_does(tmp_path: Path) -> None:
    from mailopsd.core.config import load_config
    from mailopsd.livelearn.fastconfig import load

    main = tmp_path / "mailopsd.toml"
    main.write_text("[live-learn]\nspool_dir = \"/srv/a\"\ndaily_limit = 5\n")
    (tmp_path / "mailopsd.d").mkdir()
    (tmp_path / "mailopsd.d" / "20-b.toml").write_text("[live-learn]\ndaily_limit = 9\n")
    (tmp_path / "mailopsd.d" / "10-a.toml").write_text(
        "[live-learn]\nspool_dir = \"/srv/b\"\ndaily_limit = 7\n[jobs.learn-spam]\nmax_size = 3\n")
    (tmp_path / "mailopsd.d" / "ignored.conf").write_text("[live-learn]\ndaily_limit = 1\n")
    fast, full = load(str(main)), load_config(main)
    assert (fast.spool_dir, fast.daily_limit, fast.max_size) == (
        full.live_learn.spool_dir, full.live_learn.daily_limit, full.jobs.learn_spam.max_size
    ) == ("/srv/b", 9, 3)


_VALUES = [0, 1, -1, 300, 2.5, True, "2s", "500ms", "soon", "", "/srv/learn", "/tmp", "rel",
           "/var/tmp/", "/a\x01b", [], {}]


def test_learn_enqueue_settings_accept_exactly_what_the_schema_accepts() -> None:
    """For every key learn-enqueue reads, fastconfig refuses a value iff the full schema does."""
    import itertools

    from mailopsd.livelearn.fastconfig import FastConfigError, settings

    keys = [("live-learn", "spool_dir"), ("live-learn", "daily_limit"),
            ("live-learn", "batch_wait"), ("live-learn", "enabled"),
            ("jobs.learn-spam", "max_size"), ("logging", "level"), ("logging", "journal_socket"),
            ("logging", "target")]
    for (table, key), value in itertools.product(keys, [*_VALUES, "debug", "journald"]):
        data: dict[str, object] = {}
        node = data
        for part in table.split("."):
            node = node.setdefault(part, {})  # type: ignore[assignment]
        node[key] = value  # type: ignore[index]
        try:
            parse_config(data)
            full_ok = True
        except ConfigError:
            full_ok = False
        try:
            settings(data)  # type: ignore[arg-type]
            fast_ok = True
        except FastConfigError:
            fast_ok = False
        assert fast_ok == full_ok, (table, key, value)
