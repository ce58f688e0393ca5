"""Demo steps for each feature area (used by scripts/demo.py).

Every step uses real components in a sandbox: test users, a private Exim in network namespaces,
the real sa-learn; everything is removed when the step ends.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.support.daemon import MAILOPSD, MailopsdProcess, write_config
from tests.support.exim import PrivateExim
from tests.support.netns import Netns, tcp_probe, veth_pair
from tests.support.users import TestUser, deliver

SPAM = ("From: winner@lottery.example\nTo: {to}\nSubject: You won {n} million\n\n"
        "Claim your casino lottery prize now, cheap pills, act now {n}\n")
HAM = ("From: colleague@example.test\nTo: {to}\nSubject: Budget meeting {n}\n\n"
       "Agenda for the budget review on Thursday, notes attached {n}\n")


def banner(text: str) -> None:
    """A step heading."""
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def show(argv: list[str], label: str | None = None, *, check: bool = True,
         events: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command, print it (as an admin would type it) and its output."""
    shown = label or " ".join(argv)
    print(f"$ {shown}", flush=True)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if result.stdout:
        print(result.stdout.rstrip())
    if events:
        for line in result.stderr.splitlines():
            print(f"  [event] {line}")
    print(f"  (exit {result.returncode})", flush=True)
    if check and result.returncode != 0:
        raise SystemExit(f"demo step failed: {shown}")
    return result


def mailopsd(config: Path, *args: str, check: bool = True,
             events: bool = True) -> subprocess.CompletedProcess[str]:
    """``mailopsd --config CONFIG ARGS`` through show()."""
    return show([MAILOPSD, "--config", str(config), *args], "mailopsd " + " ".join(args),
                check=check, events=events)


def demo_blocker(root: Path) -> None:
    """An abusive client in a network namespace is banned from port 25; a good one is not."""
    banner("log-driven blocking: a private Exim on 192.0.2.1:25 in its own network namespace")
    with Netns("dsrv") as server, Netns("dcli") as client, Netns("dgood") as good:
        veth_pair(server, client, "192.0.2.1/24", "192.0.2.2/24")
        veth_pair(server, good, "198.51.100.1/24", "198.51.100.2/24")
        (root / "exim").mkdir()
        with PrivateExim(root / "exim", listen=["192.0.2.1", "198.51.100.1"], port=25,
                         netns=server) as exim:
            # JSON events: the demo reads the daemon's ip_banned event from them
            config = write_config(root / "blocker", logging={"target": "json", "level": "info"},
                                  blocker={"enabled": True, "mainlog": str(exim.mainlog),
                                           "rules": {"no-rdns": {"maxretry": 5}}})
            bans = server.argv([MAILOPSD, "--config", str(config), "bans"])
            run = server.argv([MAILOPSD, "--config", str(config), "run"])
            with MailopsdProcess(config, argv=run) as daemon:
                daemon.wait_event("daemon_started", timeout=20)
                print("the client 192.0.2.2 has no reverse DNS; Exim logs each connection:")
                for i in range(6):
                    state = tcp_probe(client, "192.0.2.1", 25, timeout=1)
                    print(f"  connect {i + 1} to 192.0.2.1:25 -> {state}")
                ev = daemon.wait_event("ip_banned", timeout=15, ip="192.0.2.2")
                print(f"  [event] ip_banned ip={ev['ip']} rule={ev['rule']} "
                      f"count={ev['count']} duration={ev['duration']}")
                show([*bans, "list"], "mailopsd bans list")
                show(server.argv(["iptables-legacy", "-S", "mailopsd"]),
                     "iptables-legacy -S mailopsd   # python-iptables writes the legacy tables")
                show(server.argv(["ipset", "list", "mailopsd-v4"]),
                     "ipset list mailopsd-v4        # the banned addresses, one rule matches them")
                print(f"  banned client again -> {tcp_probe(client, '192.0.2.1', 25, 1)}")
                print(f"  another client      -> {tcp_probe(good, '198.51.100.1', 25, 1)}")
            show([*bans, "flush"], "mailopsd bans flush")


def demo_learn_spam(root: Path) -> None:
    """learn-spam trains the Bayes owner's database and clears the folders as the user."""
    banner("learn-spam: a user's Spam / Not Spam folders train spamd's Bayes database")
    home_root = root / "users"
    home_root.mkdir()
    with TestUser(home_root, prefix="mod") as alice, \
            TestUser(home_root, prefix="mob", maildir=False) as owner:
        for n in range(3):
            deliver(alice, ".INBOX.Spam", SPAM.format(to=alice.address, n=n))
            deliver(alice, ".INBOX.Not Spam", HAM.format(to=alice.address, n=n))
        config = write_config(root / "learn", logging={"target": "console", "level": "info"},
                              mailboxes={"users": [alice.name]},
                              spamassassin={"bayes_owner": owner.name},
                              jobs={"learn-spam": {"staging_dir": str(root)}})
        print(f"user {alice.name}: 3 messages in .INBOX.Spam, 3 in '.INBOX.Not Spam'; the Bayes "
              f"database belongs to {owner.name} (standing in for Debian-exim)")
        mailopsd(config, "run-job", "learn-spam", "--dry-run")
        mailopsd(config, "run-job", "learn-spam")
        show(["runuser", "-u", owner.name, "--", "sa-learn", "--dump", "magic"],
             f"runuser -u {owner.name} -- sa-learn --dump magic")
        for folder in (".INBOX.Spam", ".INBOX.Not Spam", ""):
            path = alice.maildir / folder if folder else alice.maildir
            files = sorted(p.name for sub in ("new", "cur") for p in (path / sub).iterdir())
            print(f"  {folder or 'INBOX'}: {files if files else 'empty'}")
        mailopsd(config, "bayes", "stats")
        mailopsd(config, "bayes", "backup")
        mailopsd(config, "bayes", "list", events=False)
        time.sleep(0)


def demo_sent(root: Path) -> None:
    """A message sent with Bcc: its server-made Sent copy before and after mailopsd's fixup."""
    import re
    import smtplib

    from tests.support.smtp import SmtpSink

    banner("copy-to-Sent: the server files a copy in Sent; mailopsd adds Bcc: and marks it read")
    etc = Path(__file__).resolve().parents[1] / "etc" / "exim4"
    filt = (etc / "copy-to-sent.filter").read_text().replace(
        "/var/log/exim4/sent-recipients", "@ROOT@/log/sent-recipients")
    sent_root = root / "sent"
    sent_root.mkdir()
    with TestUser(sent_root, prefix="mos") as alice, SmtpSink() as sink, \
            PrivateExim(sent_root, system_filter=filt,
                        extra_transports=(etc / "transport-copy-to-sent.conf").read_text(),
                        variant="system_filter_directory_transport = mailopsd_copy_to_sent",
                        auth_users={alice.name: "secret"}, sink_port=sink.port) as exim:
        config = write_config(sent_root, logging={"target": "console", "level": "info"},
                              sent={"enabled": True, "users": [alice.name],
                                    "recipients_log": str(sent_root / "log" / "sent-recipients")})
        head = (f"From: {alice.address}\r\nTo: bob@remote.test\r\nCc: carol@remote.test\r\n"
                "Subject: quarterly figures\r\n\r\nThe figures are attached.\r\n")
        print(f"{alice.name} sends To: bob, Cc: carol, Bcc: dave and \"doe, john\" "
              "(the client strips the Bcc: header, as MUAs do)")
        mark = exim.mark()
        with smtplib.SMTP("127.0.0.1", exim.port, timeout=60) as smtp:
            smtp.login(alice.name, "secret")
            smtp.sendmail(alice.address, ["bob@remote.test", "carol@remote.test",
                                          "dave@remote.test", '"doe, john"@remote.test'],
                          head.encode())
        exim_id = exim.wait_for_log(rf"^\S+ \S+ (\S+) <= {re.escape(alice.address)} ",
                                    since=mark).group(1)
        exim.wait_for_log(rf"{exim_id} => \S+/\.Sent <system-filter>", since=mark, timeout=30)
        sent = alice.maildir / ".Sent"
        before = next((sent / "new").iterdir())
        print(f"before: .Sent/new/{before.name}")
        for line in before.read_text(errors="replace").splitlines():
            if line.split(":", 1)[0] in ("To", "Cc", "Bcc", "Subject"):
                print(f"    {line}")
        mailopsd(config, "sent-fixup", "--user", alice.name)
        after = next((sent / "cur").iterdir())
        print(f"after:  .Sent/cur/{after.name}   (':2,S' = read)")
        for line in after.read_text(errors="replace").splitlines():
            if line.split(":", 1)[0] in ("To", "Cc", "Bcc", "Subject"):
                print(f"    {line}")
