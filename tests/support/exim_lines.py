"""Mainlog lines built the way Exim 4.96-4.99 writes them (pure functions, no root needed).

Each builder follows Exim's own format strings (smtp_in.c, host.c, receive.c): the host field
``[name ][(helo) ][ip][:port]`` (``host_build_sender_fullhost``), then `` I=[iface]:port``
(+incoming_interface), `` U=ident`` (ident answered), `` Ci=id`` (+connection_id, 4.98+)
(``host_and_ident``). The unit and property tests of the blocker's grammar use them; the
integration tests check the same forms against a real Exim.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Host:
    """What Exim knows about the client, and which optional log fields are on."""

    ip: str
    name: str | None = None  # verified rDNS name
    helo: str | None = None
    port: int | None = None  # +incoming_port
    iface: str | None = None  # +incoming_interface: the server's address
    ident: str | None = None  # RFC 1413 answer (any log_selector)
    ci: str | None = None  # +connection_id (Exim 4.98+)
    ds: bool = False  # +dnssec and a DNSSEC-verified rDNS name

    def fullhost(self) -> str:
        """sender_fullhost: the HELO is left out when it equals the name or the address."""
        addr = f"[{self.ip}]" + (f":{self.port}" if self.port else "")
        helo = self.helo
        if helo is not None and helo.strip("[]").removeprefix("IPv6:") == self.ip:
            helo = None
        if self.name is None:
            return f"({helo}) {addr}" if helo is not None else addr
        if helo is None or helo.lower() == self.name.lower():
            return f"{self.name} {addr}"
        return f"{self.name} ({helo}) {addr}"

    def iface_text(self) -> str:
        return f" I=[{self.iface}]:25" if self.iface else ""

    def and_ident(self, flag: bool) -> str:
        """host_and_ident(flag)."""
        text = ("H=" if flag else "") + self.fullhost() + self.iface_text()
        if self.ident is not None:
            text += f" U={self.ident}"
        if self.ci is not None:
            text += f" Ci={self.ci}"
        return text


TLS = ' X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=no DN="CN=client.example"'


def auth_failed(h: Host, set_id: str = "alice", driver: str = "plain_server",
                flag: bool = False) -> str:
    """4.96-4.98 write host_and_ident(FALSE); 4.99 host_and_ident(TRUE), i.e. with "H=" (flag)."""
    return (f"{driver} authenticator failed for {h.and_ident(flag)}: 535 Incorrect "
            f"authentication data (set_id={set_id})")


def relay_denied(h: Host, sender: str = "spam@spammer.test", rcpt: str = "victim@remote.test",
                 tls: str = "") -> str:
    # smtp_handle_acl_fail: "%s%s%s %s%srejected %s%s", DS, host_and_ident(TRUE), tls, F=<>
    return (f"{' DS' if h.ds else ''}{h.and_ident(True)}{tls} F=<{sender}> rejected RCPT "
            f"<{rcpt}>: relay not permitted")


def sync_early(h: Host, data: str = "EHLO early.test\\r\\n") -> str:
    return ("SMTP protocol synchronization error (input sent without waiting for greeting): "
            f"rejected connection from {h.and_ident(True)} input=\"{data}\"")


def sync_pipelining(h: Host, command: str = "MAIL FROM:<a@nopipe.test>",
                    data: str = "RCPT TO:<bob@example.test>\\r\\n", tail: str = "") -> str:
    """4.96 writes no tail; 4.99 adds " (N bytes)"."""
    return ("SMTP protocol synchronization error (next input sent too soon: pipelining was not "
            f"advertised): rejected \"{command}\" {h.and_ident(True)} next input=\"{data}\""
            + tail)


def nonmail(h: Host, kind: str = "nonmail", last: str = "NOOP") -> str:
    if kind == "nonmail":
        return (f"SMTP call from {h.and_ident(False)} dropped: too many nonmail commands "
                f"(last was \"{last}\")")
    if kind == "unrecognized":
        return (f"SMTP call from {h.and_ident(False)} dropped: too many unrecognized commands "
                f"(last was \"{last}\")")
    return (f"SMTP call from {h.and_ident(False)} dropped: too many syntax or protocol errors "
            f"(last command was \"{last}\", C=EHLO,AUTH)")


def no_host_name(h: Host) -> str:
    return f"no host name found for IP address {h.ip}"


def no_ip_for_host(h: Host, ptr: str = "7.2.0.192.dyn.example") -> str:
    """smtp_get_connection_info(): Ci= before "from" (4.98+), I= after the host, no ident."""
    ci = f" Ci={h.ci}" if h.ci is not None else ""
    return (f"no IP address found for host {ptr} (during SMTP connection{ci} from "
            f"{h.fullhost()}{h.iface_text()})")


def arrival(h: Host, sender: str = "alice@example.test", proto: str = "esmtpsa",
            auth: str | None = "plain_server:alice", tls: str = TLS, msgid: str = "m1@client",
            subject: str = "hello", exim_id: str = "1xVyTg-0000db-27") -> str:
    """A ``<=`` line in receive.c's order, with +all's extra fields."""
    text = f"{exim_id} <= {sender}{' DS' if h.ds else ''} H={h.fullhost()}{h.iface_text()}"
    if h.ident is not None:
        text += f" U={h.ident}"
    if h.ci is not None:
        text += f" Ci={h.ci}"
    text += f" P={proto} L-{tls}"
    if auth is not None:
        text += f" A={auth}"
    return text + f" S=1234 M8S=0 RT=0.012s id={msgid} T=\"{subject}\" for bob@example.test"


PREFIXES = (
    "2026-11-24 21:55:02 ",  # Debian's default
    "2026-11-24 21:55:02.123 ",  # +millisec
    "2026-11-24 21:55:02 [4242] ",  # +pid
    "2026-11-24 21:55:02.123 +0000 [4242] ",  # log_timezone, +millisec, +pid
)
