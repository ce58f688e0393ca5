"""Small helpers for the real-systemd tests: unit properties, journal queries, config edits,
a mailbox user with Spam/Not Spam mail, and a real Exim writing blocker-worthy lines."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from tests.support.container import Container

CONFIG = "/etc/mailopsd/mailopsd.toml"
SPAM = (b"From: winner@lottery.example\r\nTo: alice@example.test\r\nSubject: You won\r\n"
        b"Message-ID: <spam-{n}@lottery.example>\r\n\r\nClaim your prize {n} now, "
        b"cheap pills, casino bonus.\r\n")
HAM = (b"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: Lunch\r\n"
       b"Message-ID: <ham-{n}@example.test>\r\n\r\nSee you at noon {n} by the river.\r\n")


def show(ct: Container, prop: str, unit: str = "mailopsd") -> str:
    """One property of a unit, from ``systemctl show``."""
    return ct.run(["systemctl", "show", "-p", prop, "--value", unit], check=False).stdout.strip()


def journal(ct: Container, *matches: str) -> list[dict[str, Any]]:
    """``journalctl -u mailopsd -o json MATCHES`` as dicts, oldest first."""
    out = ct.run(["journalctl", "-u", "mailopsd", "-o", "json", "--no-pager", *matches],
                 check=False).stdout
    entries = []
    for line in out.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries


def set_key(text: str, section: str, key: str, value: str) -> str:
    """``key = value`` in ``[section]`` of a TOML text: replaced (comment kept) or added."""
    lines = text.splitlines(keepends=True)
    header = re.compile(r"^\[" + re.escape(section) + r"\]\s*(#.*)?$")
    start = next((i for i, ln in enumerate(lines) if header.match(ln.strip())), None)
    if start is None:
        return text.rstrip("\n") + f"\n\n[{section}]\n{key} = {value}\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")),
               len(lines))
    pattern = re.compile(r"^(\s*)" + re.escape(key) + r"\s*=\s*(\"[^\"]*\"|[^#\s]*)(.*)$",
                         re.DOTALL)
    for i in range(start + 1, end):
        found = pattern.match(lines[i])
        if found:
            lines[i] = f"{found.group(1)}{key} = {value}{found.group(3)}"
            if not lines[i].endswith("\n"):
                lines[i] += "\n"
            return "".join(lines)
    lines.insert(start + 1, f"{key} = {value}\n")
    return "".join(lines)


def add_user_mail(ct: Container, user: str, spam: int = 1, ham: int = 1) -> None:
    """A real local user (uid >= 1000) with a Maildir, ``spam`` spams and ``ham`` hams filed."""
    if ct.run(["id", "-u", user], check=False).returncode != 0:
        ct.run(["useradd", "-m", "-s", "/bin/sh", user])
    folders = ["Maildir", "Maildir/.INBOX.Spam", "Maildir/.INBOX.Not Spam", "Maildir/.Trash",
               "Maildir/.Sent"]
    for folder in folders:
        ct.run(["install", "-d", "-o", user, "-g", user, "-m", "0700", f"/home/{user}/{folder}"])
        for sub in ("cur", "new", "tmp"):
            ct.run(["install", "-d", "-o", user, "-g", user, "-m", "0700",
                    f"/home/{user}/{folder}/{sub}"])
    stamp = ct.run(["date", "+%s%N"]).stdout.strip()
    for kind, count, folder, body in (("spam", spam, ".INBOX.Spam", SPAM),
                                      ("ham", ham, ".INBOX.Not Spam", HAM)):
        for n in range(count):
            name = f"{stamp}.M{n}P1Q{kind}.mailopsd-test,S={len(body)}"
            path = f"/home/{user}/Maildir/{folder}/new/{name}"
            ct.path(path).write_bytes(body.replace(b"{n}", str(n).encode()))
            ct.run(["chown", f"{user}:{user}", path])
            ct.run(["chmod", "0600", path])


def drive_exim_relay_attempts(ct: Container, ip: str, count: int) -> None:
    """The container's real Exim, as if ``ip`` tried to relay ``count`` times over SMTP.

    ``exim4 -bs -oMa IP.PORT`` is an SMTP session with that client address; the pauses keep
    Exim from seeing pipelined commands as a synchronization error.
    """
    steps = ["EHLO client.test", "MAIL FROM:<someone@client.test>"]
    steps += [f"RCPT TO:<victim{n}@elsewhere.test>" for n in range(count)]
    steps += ["QUIT"]
    script = "(" + "; ".join(f"printf '{s}\\r\\n'; sleep 0.2" for s in steps) + ")"
    out = ct.run(["sh", "-c", f"{script} | exim4 -bs -oMa {ip}.4242"], timeout=60).stdout
    if out.count("relay not permitted") != count:
        raise AssertionError(f"Exim did not refuse {count} relays:\n{out}")


def make_sa_channel(out: Path) -> tuple[Path, Path, str]:
    """A signed sa-update channel tarball for ``sa-update --install`` (the no-network path).

    Signed by a throwaway key made in a private GNUPGHOME (its agent stopped afterwards).
    Returns (tarball, public key file, fingerprint).
    """
    home = out / "signer"
    home.mkdir(mode=0o700, parents=True)

    def gpg(*args: str, input: bytes | None = None) -> str:
        return subprocess.run(["gpg", "--homedir", str(home), "--batch", *args], input=input,
                              capture_output=True, timeout=120, check=True).stdout.decode()

    try:
        gpg("--gen-key", input=b"%no-protection\nKey-Type: RSA\nKey-Length: 2048\n"
            b"Key-Usage: sign\nName-Real: mailopsd test channel\n"
            b"Name-Email: channel@example.test\nExpire-Date: 0\n%commit\n")
        fpr = next(ln.split(":")[9] for ln in gpg("--with-colons", "--list-keys").splitlines()
                   if ln.startswith("fpr"))
        key_file = out / "channel-key.asc"
        key_file.write_text(gpg("--armor", "--export", fpr))
        tarball = out / "1000001.tar.gz"
        with tarfile.open(tarball, "w:gz") as tar:
            for name in ("10_default_prefs.cf", "20_aux_tlds.cf"):
                tar.add(f"/usr/share/spamassassin/{name}", arcname=name)
            rule = out / "99_channel_test.cf"
            rule.write_text("header MAILOPSD_CHANNEL_RULE Subject =~ /mailopsd-channel/\n"
                            "score MAILOPSD_CHANNEL_RULE 0.1\n")
            tar.add(rule, arcname=rule.name)
        gpg("--armor", "--detach-sign", "-o", f"{tarball}.asc", str(tarball))
        data = tarball.read_bytes()
        Path(f"{tarball}.sha256").write_text(hashlib.sha256(data).hexdigest() + "\n")
        Path(f"{tarball}.sha512").write_text(hashlib.sha512(data).hexdigest() + "\n")
        return tarball, key_file, fpr
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                       capture_output=True, timeout=30, check=False)


def send_as_local_user(ct: Container, user: str, to: str, bcc: str) -> None:
    """``user`` submits a message (To: ``to``, Bcc: ``bcc``) to the container's real Exim.

    An SMTP session with ``-oMai USER -oMr esmtpa`` is what an authenticated submission looks
    like to the copy-to-Sent filter; the client stripped the Bcc header, as clients do.
    """
    host = ct.run(["hostname"]).stdout.strip()
    steps = ["EHLO client.test", f"MAIL FROM:<{user}@{host}>", f"RCPT TO:<{to}@{host}>",
             f"RCPT TO:<{bcc}@{host}>", "DATA",
             f"From: {user}@{host}\\r\\nTo: {to}@{host}\\r\\nSubject: lunch\\r\\n\\r\\n"
             "See you at noon.\\r\\n.", "QUIT"]
    script = "(" + "; ".join(f"printf '{s}\\r\\n'; sleep 0.3" for s in steps) + ")"
    out = ct.run(["sh", "-c", f"{script} | exim4 -bs -oMa 127.0.0.1.4242 -oMai {user} "
                  "-oMr esmtpa"], timeout=60).stdout
    if "250 OK id=" not in out:
        raise AssertionError(f"Exim did not accept the message:\n{out}")
