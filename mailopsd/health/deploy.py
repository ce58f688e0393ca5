"""`mailopsd tls-deploy`: certbot's --deploy-hook for Exim and Dovecot.

certbot renews into /etc/letsencrypt/live/<name>/ (root-only keys): Exim runs as Debian-exim
and cannot read them there. This copies fullchain.pem and privkey.pem as regular files (each
written to a temporary file, fsynced and renamed: never a half-written key), Exim's key
root:Debian-exim 0640, Dovecot's key root:root 0600 (Dovecot reads it as root before dropping
privileges), certificates 0644; reloads the units; then checks what is served. A key that does
not match the certificate is refused before anything is written.
"""

from __future__ import annotations

import grp
import os
import time
from typing import Any

from mailopsd.core.errors import MailopsError


class DeployError(MailopsError):
    """The lineage was refused, or the new certificate is not being served."""


def key_matches_certificate(cert_pem: bytes, key_pem: bytes) -> bool:
    """Whether the private key is the certificate's; raises DeployError for unreadable PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise DeployError(f"unreadable certificate or key: {exc}") from None
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return bool(key.public_key().public_bytes(*fmt) == cert.public_key().public_bytes(*fmt))


def atomic_install(path: str, data: bytes, uid: int, gid: int, mode: int) -> None:
    """Write ``data`` to ``path`` as a regular file with owner and mode set before the rename."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.mailopsd-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)  # replaces a symlink itself, never writes through it
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:  # certbot's live/ holds symlinks into archive/: follow
            return f.read(1 << 20)
    except OSError as exc:
        raise DeployError(f"cannot read {path}: {exc.strerror}") from None


def deploy(config: Any, lineage: str) -> list[str]:
    """Install the lineage, reload, check what is served; returns report lines.

    Raises DeployError (nothing written when the key does not match the certificate).
    """
    from mailopsd.core.logs import get_logger
    from mailopsd.core.process import run

    log = get_logger("tls-deploy")
    td = config.tls_deploy
    chain = _read(os.path.join(lineage, "fullchain.pem"))
    key = _read(os.path.join(lineage, "privkey.pem"))
    if not key_matches_certificate(chain, key):
        log.error("tls_deploy_refused", lineage=lineage, reason="key does not match")
        raise DeployError(f"{lineage}: privkey.pem does not match fullchain.pem; "
                          "the files in place were left alone")
    try:
        exim_gid = grp.getgrnam(td.exim_group).gr_gid
    except KeyError:
        raise DeployError(f"no group {td.exim_group!r} ([tls-deploy] exim_group)") from None
    report: list[str] = []
    for path, data, gid, mode in (
            (td.exim_certificate, chain, 0, 0o644), (td.exim_privatekey, key, exim_gid, 0o640),
            (td.dovecot_certificate, chain, 0, 0o644), (td.dovecot_privatekey, key, 0, 0o600)):
        atomic_install(path, data, 0, gid, mode)
        report.append(f"installed {path} ({oct(mode)[2:]})")
    for unit in td.reload:
        run((config.binaries.systemctl, "reload-or-restart", unit), timeout=60)
        report.append(f"reloaded {unit}")
    log.info("tls_deployed", lineage=lineage, files=len(report), reloaded=list(td.reload))
    if not td.reload:
        return report  # nothing reloaded: the old certificate is still served, by design
    report.extend(check_served(td.check_urls, chain, float(td.served_wait)))
    return report


def check_served(urls: tuple[str, ...], chain: bytes, settle: float) -> list[str]:
    """Wait up to ``settle`` seconds for every URL to serve the new leaf; raises DeployError."""
    import ssl

    from mailopsd.health.tls import ProbeError, served_certificate

    begin = chain.find(b"-----BEGIN CERTIFICATE-----")
    end = chain.find(b"-----END CERTIFICATE-----", begin) + 25
    want = ssl.PEM_cert_to_DER_cert(chain[begin:end].decode("ascii", "replace"))
    lines = []
    for url in urls:
        deadline = time.monotonic() + settle
        while True:
            try:
                got: bytes | None = served_certificate(url, 5.0)
                error = ""
            except ProbeError as exc:
                got, error = None, str(exc)
            if got == want:
                lines.append(f"{url} serves the new certificate")
                break
            if time.monotonic() >= deadline:
                raise DeployError(f"{url} does not serve the new certificate "
                                  f"({error or 'another certificate'})")
            time.sleep(0.5)
    return lines
