"""make-forwards logic without users: the template, exim -bf output, what is at ~/.forward."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailopsd.core.config import parse_config
from mailopsd.core.errors import ConfigError
from mailopsd.core.users import Account
from mailopsd.daemon.registry import JOBS
from mailopsd.forward.forwards import (
    DEFAULT_TEMPLATE,
    ForwardsError,
    forward_state,
    load_template,
    parse_filter_test,
    validate_template,
)

REPO = Path(__file__).resolve().parents[2]


def test_shipped_template_is_the_builtin_one() -> None:
    assert (REPO / "etc" / "forward.template").read_text() == DEFAULT_TEMPLATE
    first, *_ = DEFAULT_TEMPLATE.splitlines()
    assert first == "# Exim filter"
    # the seed's rule: spam to .Trash WITH the trailing slash (Maildir delivery)
    assert "$h_X-Spam-Status: CONTAINS \"Yes\"" in DEFAULT_TEMPLATE
    assert "save $home/Maildir/.Trash/\n" in DEFAULT_TEMPLATE


def test_load_template_none_is_builtin_and_file_is_read(tmp_path: Path) -> None:
    assert load_template(None) == DEFAULT_TEMPLATE
    path = tmp_path / "t"
    path.write_text("#Exim  Filter\nif $h_subject contains \"x\" then save $home/Maildir/.X/ "
                    "endif")
    assert load_template(str(path)).endswith("endif\n")  # a final newline is added


@pytest.mark.parametrize("text", [
    "someone@example.org\n",  # a plain forward list: Exim would forward the mail away
    "\n# Exim filter\n",
    "# Sieve filter\nkeep;\n",
    "",
])
def test_template_must_be_an_exim_filter(text: str) -> None:
    with pytest.raises(ForwardsError, match="first line must be '# Exim filter'"):
        validate_template(text)


def test_unreadable_huge_or_binary_templates_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ForwardsError, match="cannot read"):
        load_template(str(tmp_path / "missing"))
    big = tmp_path / "big"
    big.write_text("# Exim filter\n" + "#" * 70000)
    with pytest.raises(ForwardsError, match="over"):
        load_template(str(big))
    binary = tmp_path / "bin"
    binary.write_bytes(b"# Exim filter\n\xff\xfe")
    with pytest.raises(ForwardsError, match="not UTF-8"):
        load_template(str(binary))


def test_parse_filter_test_output() -> None:
    spam = ('Return-path copied from sender\nSender      = root@vm\nRecipient   = root@vm\n'
            'Testing Exim filter file "/tmp/f"\n\nSave message to: /home/u/Maildir/.Trash/\n'
            'Finish\nFiltering set up at least one significant delivery or other action.\n'
            'No other deliveries will occur.\n')
    assert parse_filter_test(spam) == (True, ("Save message to: /home/u/Maildir/.Trash/",
                                              "Finish"))
    ham = ('Testing Exim filter file "/tmp/f"\n\n'
           'Filtering did not set up a significant delivery.\nNormal delivery will occur.\n')
    assert parse_filter_test(ham) == (False, ())


def test_forward_state_never_follows_links(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    acct = Account("u", os.getuid(), os.getgid(), str(home))
    assert forward_state(acct) == "missing"
    target = tmp_path / "target"
    (home / ".forward").symlink_to(target)  # dangling
    assert forward_state(acct) == "symlink"
    target.write_text("x")  # live
    assert forward_state(acct) == "symlink"
    (home / ".forward").unlink()
    (home / ".forward").mkdir()
    assert forward_state(acct) == "other"
    (home / ".forward").rmdir()
    (home / ".forward").write_text("# Exim filter\n")
    assert forward_state(acct) == "file"
    assert forward_state(Account("v", 1, 1, str(tmp_path / "nohome"))) == "no_home"
    assert forward_state(Account("w", 1, 1, str(target))) == "no_home"
    assert forward_state(Account("x", os.getuid() + 1, 1, str(home))) == "home_not_owned"


def test_config_keys_and_defaults() -> None:
    cfg = parse_config({})
    job = cfg.jobs.make_forwards
    assert (job.enabled, job.template, job.check_with_exim) == (False, None, True)
    assert cfg.post_email.max_message_size == 10 * 1024 * 1024
    cfg = parse_config({"jobs": {"make-forwards": {"template": "/etc/mailopsd/forward.template",
                                                    "command_timeout": "1m"}},
                        "post-email": {"timeout": "10s", "to_domains": ["site.example"]}})
    assert cfg.jobs.make_forwards.template == "/etc/mailopsd/forward.template"
    assert cfg.jobs.make_forwards.command_timeout == 60
    assert cfg.post_email.timeout == 10 and cfg.post_email.to_domains == ("site.example",)
    with pytest.raises(ConfigError) as info:
        parse_config({"jobs": {"make-forwards": {"template": "relative/path"}},
                      "post-email": {"to_domains": ["Bad_Domain"], "max_message_size": 0}})
    text = str(info.value)
    for key in ("jobs.make-forwards.template", "post-email.to_domains",
                "post-email.max_message_size"):
        assert key in text


def test_job_is_registered_with_its_seed_script() -> None:
    module, summary, replaces = JOBS["make-forwards"]
    assert (module, replaces) == ("mailopsd.jobs.make_forwards", "make-forwards.pl")
    assert summary
