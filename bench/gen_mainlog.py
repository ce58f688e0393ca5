"""Generate a synthetic but realistic Exim 4.96 mainlog (Debian's default log_selector).

    .venv/bin/python bench/gen_mainlog.py OUT [--lines 200000] [--seed 1] [--hours 24]

Mostly normal traffic (arrivals from MTAs and from authenticated users, local and remote
deliveries, Completed, connection noise, rejected RCPT for unknown users), plus a few percent of
each abusive form the blocker knows (no rDNS, failed AUTH, relay attempts, synchronization errors,
dropped nonmail connections), from thousands of IPv4 and IPv6 addresses: a few hundred
"hammering" abusers that cross the thresholds and many one-off ones that do not.
Lines are the verbatim shapes of reference/exim.md. Deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import random
import string
import time

B62 = string.digits + string.ascii_letters


def exim_id(rnd: random.Random) -> str:
    return ("".join(rnd.choices(B62, k=6)) + "-" + "".join(rnd.choices(B62, k=6)) + "-"
            + "".join(rnd.choices(B62, k=2)))


def v4(rnd: random.Random) -> str:
    first = rnd.choice([n for n in range(1, 224) if n not in (10, 127)])
    return f"{first}.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}"


def v6(rnd: random.Random) -> str:
    a, b, c = rnd.randint(0, 0xffff), rnd.randint(0, 0xffff), rnd.randint(1, 0xffff)
    return f"2001:db8:{a:x}:{b:x}::{c:x}"


def ip(rnd: random.Random) -> str:
    return v6(rnd) if rnd.random() < 0.15 else v4(rnd)


USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
DOMAINS = ["example.net", "mail.example.org", "lists.example.com", "news.example.info"]


def normal(rnd: random.Random, mta_ips: list[str]) -> list[str]:
    """One message's worth of ordinary lines (2-4 lines)."""
    mid = exim_id(rnd)
    u = rnd.choice(USERS)
    if rnd.random() < 0.25:  # a local user sends through the submission port
        client = rnd.choice(mta_ips[:40])
        to = f"{rnd.choice(USERS)}@{rnd.choice(DOMAINS)}"
        return [
            f"{mid} <= {u}@example.test H=({u}-laptop) [{client}]:{rnd.randint(1024, 65535)} "
            f"P=esmtpsa X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=no A=plain_server:{u} "
            f"S={rnd.randint(800, 90000)} id={mid}@{u}-laptop",
            f"{mid} => {to} R=dnslookup T=remote_smtp H=mx.{to.split('@')[1]} "
            f"[{rnd.choice(mta_ips)}] X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=yes "
            f"C=\"250 2.0.0 OK {rnd.randint(1, 10**9)}\"",
            f"{mid} Completed",
        ]
    src = rnd.choice(mta_ips)
    dom = rnd.choice(DOMAINS)
    out = [
        f"{mid} <= news@{dom} H=mx{rnd.randint(1, 9)}.{dom} [{src}] P=esmtps "
        f"X=TLS1.2:ECDHE_RSA_AES_128_GCM_SHA256:128 CV=no S={rnd.randint(900, 60000)} "
        f"id={rnd.randint(1, 10**8)}@{dom}",
        f"{mid} => {u} <{u}@example.test> R=local_user T=maildir_home",
    ]
    if rnd.random() < 0.3:
        out.append(f"{mid} => {rnd.choice(USERS)} <list@example.test> R=local_user "
                   "T=maildir_home")
    out.append(f"{mid} Completed")
    return out


def noise(rnd: random.Random, client: str) -> str:
    """Connection-level lines no rule bans for."""
    return rnd.choice([
        f"SMTP connection from ({rnd.choice(DOMAINS)}) [{client}]:{rnd.randint(1024, 65535)} "
        "lost D=0.012s",
        f"H=({rnd.choice(DOMAINS)}) [{client}] F=<x@{rnd.choice(DOMAINS)}> rejected RCPT "
        f"<nobody{rnd.randint(1, 99)}@example.test>: Unknown user",
        f"TLS error on connection from ({rnd.choice(DOMAINS)}) [{client}] (SSL_accept): "
        "error:0A000126:SSL routines::unexpected eof while reading",
        f"no MAIL in SMTP connection from [{client}] D=5s C=EHLO,QUIT",
    ])


def abusive(rnd: random.Random, kind: str, a: str) -> str:
    helo = rnd.choice(["User", "ylmf-pc", "WIN-7Q2", "localhost", "[192.0.2.1]", "spammer.test"])
    if kind == "no-rdns":
        if rnd.random() < 0.1:
            return (f"no IP address found for host {rnd.randint(1, 255)}.dynamic.example.net "
                    f"(during SMTP connection from [{a}])")
        return f"no host name found for IP address {a}"
    if kind == "auth-failed":
        return (f"{rnd.choice(['plain_server', 'login_server'])} authenticator failed for "
                f"({helo}) [{a}]:{rnd.randint(1024, 65535)}: 535 Incorrect authentication "
                f"data (set_id={rnd.choice(USERS)}@example.test)")
    if kind == "relay-denied":
        return (f"H=({helo}) [{a}]:{rnd.randint(1024, 65535)} F=<spam@spammer.test> rejected "
                f"RCPT <victim{rnd.randint(1, 999)}@remote.test>: relay not permitted")
    if kind == "sync-error":
        if rnd.random() < 0.5:
            return ("SMTP protocol synchronization error (input sent without waiting for "
                    f"greeting): rejected connection from H=[{a}]:{rnd.randint(1024, 65535)} "
                    "input=\"EHLO early.test\\r\\n\"")
        return ("SMTP protocol synchronization error (next input sent too soon: pipelining "
                "was not advertised): rejected \"MAIL FROM:<a@nopipe.test>\" "
                f"H=({helo}) [{a}]:{rnd.randint(1024, 65535)} next "
                "input=\"RCPT TO:<bob@example.test>\\r\\nDATA\\r\\n\"")
    what = rnd.choice(["nonmail commands (last was \"NOOP\")",
                       "unrecognized commands (last was \"FOOBAR 3\")",
                       "syntax or protocol errors (last command was \"AUTH LOGIN\", "
                       "C=EHLO,AUTH)"])
    return f"SMTP call from ({helo}) [{a}]:{rnd.randint(1024, 65535)} dropped: too many {what}"


# chance per generated event (a normal message is ~3.3 lines, an abusive event 1 line): about
# 6% no-rdns, 3.3% auth-failed, 1.2% relay-denied, 0.6% sync-error, 0.6% nonmail of all lines
MIX = {"no-rdns": 0.15, "auth-failed": 0.08, "relay-denied": 0.03, "sync-error": 0.015,
       "nonmail": 0.015}
WINDOW = 3000  # lines during which the same few "hammering" IPs are active
ACTIVE = 3


def generate(lines: int, seed: int, hours: float, start: float) -> list[str]:
    """The log's lines, timestamps spread evenly over ``hours`` from ``start``."""
    rnd = random.Random(seed)
    mta_ips = [ip(rnd) for _ in range(3000)]
    windows = lines // WINDOW + 1
    # a few IPs per kind and time window hammer hard enough to cross the thresholds
    hammer = {k: [ip(rnd) for _ in range(windows * ACTIVE)] for k in MIX}
    body: list[str] = []
    while len(body) < lines:
        w = len(body) // WINDOW
        r = rnd.random()
        acc = 0.0
        for kind, share in MIX.items():
            acc += share
            if r < acc:
                pool = hammer[kind][w * ACTIVE:(w + 1) * ACTIVE]
                a = rnd.choice(pool) if rnd.random() < 0.5 else ip(rnd)  # half one-off IPs
                body.append(abusive(rnd, kind, a))
                break
        else:
            if r < acc + 0.08:
                body.append(noise(rnd, ip(rnd)))
            else:
                body.extend(normal(rnd, mta_ips))
    body = body[:lines]
    step = hours * 3600.0 / max(1, lines)
    out = []
    for i, text in enumerate(body):
        ts = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start + i * step))
        out.append(f"{ts} {text}\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--start", type=float, default=time.mktime((2026, 11, 24, 0, 0, 0, 0, 0, -1)))
    args = ap.parse_args()
    with open(args.out, "w", encoding="utf-8") as f:
        f.writelines(generate(args.lines, args.seed, args.hours, args.start))


if __name__ == "__main__":
    main()
