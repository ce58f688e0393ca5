"""The copy-to-Sent install steps of etc/exim4/README.md, run on a COPY of this machine's Debian
/etc/exim4 (bind-mounted over /etc/exim4 in a private mount namespace, so update-exim4.conf sees
the paths it hard-codes and the host's configuration is never touched)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.common import scratch_root

pytestmark = pytest.mark.integration

ETC = Path(__file__).resolve().parents[2] / "etc" / "exim4"

NON_SPLIT = f"""
cat {ETC}/main-copy-to-sent.conf >> /etc/exim4/exim4.conf.localmacros
sed -i '/^begin transports/r {ETC}/transport-copy-to-sent.conf' /etc/exim4/exim4.conf.template
"""
SPLIT = f"""
sed -i "s/^dc_use_split_config=.*/dc_use_split_config='true'/" /etc/exim4/update-exim4.conf.conf
install -m 644 {ETC}/main-copy-to-sent.conf /etc/exim4/conf.d/main/50_mailopsd_copy-to-sent
install -m 644 {ETC}/transport-copy-to-sent.conf \
    /etc/exim4/conf.d/transport/40_mailopsd_copy-to-sent
"""


def generate(root: Path, steps: str) -> Path:
    """Apply ``steps`` to a copy of /etc/exim4 and run update-exim4.conf; return the config."""
    copy = root / "etc-exim4"
    shutil.copytree("/etc/exim4", copy, symlinks=True)
    out = root / "exim4.conf.generated"
    script = (f"set -e; mount --bind {copy} /etc/exim4\n{steps}\n"
              f"update-exim4.conf -o {out}\n")
    res = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    return out


def exim_bp(config: Path, *what: str) -> str:
    res = subprocess.run(["/usr/sbin/exim4", "-C", str(config), "-bP", *what],
                         capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.mark.parametrize("steps", [NON_SPLIT, SPLIT], ids=["non-split", "split"])
def test_debian_config_with_the_install_steps_is_valid_exim(steps: str) -> None:
    with scratch_root("mailopsd-sent-inst-") as root:
        config = generate(root, steps)
        text = config.read_text()
        assert text.count("mailopsd_copy_to_sent:") == 1
        subprocess.run(["/usr/sbin/exim4", "-C", str(config), "-bV"], capture_output=True,
                       timeout=30, check=True)
        assert exim_bp(config, "system_filter").strip() == \
            "system_filter = /etc/exim4/mailopsd-copy-to-sent.filter"
        assert "mailopsd_copy_to_sent" in exim_bp(config, "system_filter_directory_transport")
        transport = exim_bp(config, "transport", "mailopsd_copy_to_sent")
        assert "maildir_format" in transport and "/Maildir/.Sent" in transport
        # the shipped filter is valid Exim filter syntax for this Exim
        res = subprocess.run(["/usr/sbin/exim4", "-C", str(config), "-bF",
                              str(ETC / "copy-to-sent.filter"), "-f", "alice@example.test"],
                             input="Subject: t\n\nx\n", capture_output=True, text=True,
                             timeout=30, check=False)
        assert res.returncode == 0 and "error" not in res.stdout.lower(), res.stdout + res.stderr


def filter_test(sender: str, auth_id: str | None, headers: str = "",
                protocol: str = "esmtpa") -> str:
    """What the shipped filter does for a message, by Exim's own filter tester (-bF)."""
    argv = ["/usr/sbin/exim4", "-bF", str(ETC / "copy-to-sent.filter"), "-f", sender,
            "-oMr", protocol]
    if auth_id is not None:
        argv += ["-oMai", auth_id]
    res = subprocess.run(argv, input=f"Subject: t\n{headers}\nbody\n", capture_output=True,
                         text=True, timeout=30, check=False)
    assert res.returncode == 0, res.stderr
    return res.stdout


LOCAL = "daemon"  # a passwd account present on every Debian machine


def test_filter_logs_and_saves_only_for_local_accounts_submissions() -> None:
    from mailopsd.sent.reclog import parse_line

    out = filter_test(f"{LOCAL}@example.test", LOCAL)
    assert "Unseen save message to:" in out and "/Maildir/.Sent/" in out
    logged = out.split('Logwrite "', 1)[1].split('\\n"', 1)[0]
    entry = parse_line(logged)
    assert entry is not None and entry.sender == f"{LOCAL}@example.test"
    # case-insensitive, and a login that is the whole address counts too
    assert "save message to" in filter_test(f"{LOCAL.upper()}@example.test",
                                            f"{LOCAL}@example.test")
    for sender, auth, headers, proto in [
            (f"{LOCAL}@example.test", None, "", "esmtpa"),          # not authenticated as him
            (f"{LOCAL}@example.test", "bin", "", "esmtpa"),         # someone else's login
            ("root@example.test", "root", "", "local"),             # root's mail
            (f"{LOCAL}@example.test", LOCAL, "X-Spam-Status: No\n", "esmtpa"),  # re-injected
            (f"{LOCAL}@example.test", LOCAL, "", "spam-scanned"),
            ("nosuchuser0x@example.test", "nosuchuser0x", "", "esmtpa")]:  # no local account
        out = filter_test(sender, auth, headers, proto)
        assert "Logwrite" not in out and "save" not in out.lower(), (sender, auth, proto, out)
