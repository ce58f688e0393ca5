"""What Exim and Dovecot actually serve over TLS, against the certificate files on disk.

STARTTLS for smtp/submission/imap, TLS at connect for smtps/imaps. The served certificate is
taken without verification (a self-signed or expired one must still be seen, to be reported).
"""

from __future__ import annotations

import datetime
import socket
import ssl
import time
from dataclasses import dataclass

from mailopsd.core.config.schema_health import TLS_SCHEMES, parse_tls_url
from mailopsd.health.model import CRIT, OK, WARN, Check, Samples, human_age

SERVICE_OF = {"smtp": "exim", "submission": "exim", "smtps": "exim",
              "imap": "dovecot", "imaps": "dovecot"}


class ProbeError(Exception):
    """The endpoint could not be reached or did not start TLS."""


@dataclass(frozen=True)
class Endpoint:
    """One URL to probe and the file it should serve."""

    url: str
    cert: str
    implicit_default: bool = False  # one of the built-in defaults: absent = omitted


def _starttls(sock: socket.socket, scheme: str, deadline: float) -> None:
    f = sock.makefile("rb")
    try:
        def line() -> bytes:
            left = deadline - time.monotonic()
            if left <= 0:  # a server talking forever must not hold the check
                raise ProbeError("no STARTTLS answer in time")
            sock.settimeout(left)
            data = f.readline(4096)
            if not data:
                raise ProbeError("connection closed before STARTTLS")
            return data

        if scheme == "imap":
            if not line().startswith(b"* OK"):
                raise ProbeError("no IMAP greeting")
            sock.sendall(b"a STARTTLS\r\n")
            while True:
                reply = line()
                if reply.startswith(b"a "):
                    if not reply.startswith(b"a OK"):
                        raise ProbeError(f"STARTTLS refused: {reply[:100]!r}")
                    return
        else:
            def smtp_reply() -> bytes:
                while True:
                    reply = line()
                    if reply[3:4] != b"-":
                        return reply
            if not smtp_reply().startswith(b"220"):
                raise ProbeError("no SMTP greeting")
            sock.sendall(b"EHLO mailopsd.health\r\n")
            if not smtp_reply().startswith(b"250"):
                raise ProbeError("EHLO refused")
            sock.sendall(b"STARTTLS\r\n")
            reply = smtp_reply()
            if not reply.startswith(b"220"):
                raise ProbeError(f"STARTTLS refused: {reply[:100]!r}")
    finally:
        f.close()  # the socket stays open: makefile() only counts a reference


def _goodbye(tls: ssl.SSLSocket, scheme: str) -> None:
    """QUIT / LOGOUT, so the server logs a clean end, not a lost connection, every interval."""
    try:
        tls.sendall(b"a LOGOUT\r\n" if scheme.startswith("imap") else b"QUIT\r\n")
        tls.recv(512)
    except (OSError, ssl.SSLError):
        pass  # the certificate is what we came for


def served_certificate(url: str, timeout: float) -> bytes:
    """The DER leaf certificate ``url`` serves; raises ProbeError (ConnectionRefusedError
    inside for a closed port)."""
    scheme, host, port = parse_tls_url(url)
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise ProbeError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from exc
    try:
        if TLS_SCHEMES[scheme][1] == "starttls":
            _starttls(sock, scheme, deadline)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:  # see even a weak or old server's certificate: nothing secret is sent
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.set_ciphers("ALL:@SECLEVEL=0")
        except (ValueError, ssl.SSLError):
            pass
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        with ctx.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
            _goodbye(tls, scheme)
        if not der:
            raise ProbeError("no certificate served")
        return der
    except (OSError, ssl.SSLError) as exc:
        raise ProbeError(f"TLS with {host}:{port} failed: {exc}") from exc
    finally:
        sock.close()


def first_certificate_der(path: str) -> bytes:
    """The first certificate of a PEM file (the leaf of a fullchain); raises OSError/ValueError."""
    with open(path, "rb") as f:
        pem = f.read(1 << 20)
    begin = pem.find(b"-----BEGIN CERTIFICATE-----")
    end = pem.find(b"-----END CERTIFICATE-----", begin)
    if begin < 0 or end < 0:
        raise ValueError(f"{path} holds no PEM certificate")
    return ssl.PEM_cert_to_DER_cert(pem[begin:end + 25].decode("ascii", "replace"))


def not_after(der: bytes) -> float:
    """The certificate's expiry as epoch seconds."""
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    utc = getattr(cert, "not_valid_after_utc", None)  # cryptography >= 42
    if utc is not None:
        return float(utc.timestamp())
    return cert.not_valid_after.replace(tzinfo=datetime.UTC).timestamp()


def check_endpoint(ep: Endpoint, timeout: float, cert_warn: float, samples: Samples,
                   now: float | None = None) -> Check | None:
    """The check for one endpoint (None: a default endpoint that is not listening)."""
    scheme, _host, port = parse_tls_url(ep.url)
    service = SERVICE_OF[scheme]
    name = f"tls {service}:{port}"
    now = time.time() if now is None else now
    try:
        served = served_certificate(ep.url, timeout)
    except ProbeError as exc:
        if ep.implicit_default and isinstance(exc.__cause__, ConnectionRefusedError):
            return None
        return Check(name, CRIT, str(exc), f"is {service} running with TLS on port {port}?",
                     event="tls_probe_failed", fields={"url": ep.url})
    expiry = not_after(served)
    samples.set("tls_certificate_expiry_timestamp_seconds", expiry, service=service, port=port)
    try:
        on_disk: bytes | None = first_certificate_der(ep.cert)
    except (OSError, ValueError):
        on_disk = None
    matches = on_disk == served
    samples.set("tls_certificate_matches_disk", matches, service=service, port=port)
    left = expiry - now
    fields = {"url": ep.url, "cert": ep.cert, "expires": int(expiry)}
    if left <= 0:
        return Check(name, CRIT, f"served certificate expired {human_age(-left)} ago",
                     "renew it (certbot renew) and deploy it: mailopsd tls-deploy",
                     event="tls_certificate_expired", fields=fields)
    if not matches:
        what = (f"cannot read {ep.cert}" if on_disk is None
                else f"serves a different certificate than {ep.cert}")
        return Check(name, WARN, what,
                     f"reload {service} after a renewal (mailopsd tls-deploy does both), and "
                     f"check {service} can read the files",
                     event="tls_certificate_mismatch", fields=fields)
    if left < cert_warn:
        return Check(name, WARN, f"served certificate expires in {human_age(left)}",
                     "renewal is failing? run certbot renew --dry-run",
                     event="tls_certificate_expiring", fields=fields)
    return Check(name, OK, f"expires in {human_age(left)}, same as {ep.cert}")
