"""The certificate files themselves: can Exim read its key, is no key world-readable, does each
key match its certificate? (The seed's failure: after a renewal Exim could not read the key.)"""

from __future__ import annotations

import os
import pwd
import stat
from typing import Any

from mailopsd.health.model import CRIT, OK, WARN, Check


def can_read(path: str, user: str) -> bool:
    """Whether ``user`` (with its groups) may read ``path`` and search every directory above."""
    pw = pwd.getpwnam(user)
    groups = set(os.getgrouplist(user, pw.pw_gid))

    def allowed(st: os.stat_result, bits: tuple[int, int, int]) -> bool:
        if pw.pw_uid == 0:
            return True
        if st.st_uid == pw.pw_uid:
            return bool(st.st_mode & bits[0])
        if st.st_gid in groups:
            return bool(st.st_mode & bits[1])
        return bool(st.st_mode & bits[2])

    real = os.path.realpath(path)
    parent = os.path.dirname(real)
    while True:
        if not allowed(os.stat(parent), (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)):
            return False
        if parent == "/":
            break
        parent = os.path.dirname(parent)
    return allowed(os.stat(real), (stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH))


def check_pair(service: str, cert: str, key: str, reader: str) -> Check | None:
    """One check for a certificate/key pair (None when neither file exists)."""
    from mailopsd.health.deploy import DeployError, key_matches_certificate

    name = f"tls_files {service}"
    if not os.path.exists(cert) and not os.path.exists(key):
        return None
    fields = {"cert": cert, "key": key}
    try:
        unreadable = [p for p in (cert, key) if not can_read(p, reader)]
        key_st = os.stat(key)
        with open(cert, "rb") as f:
            cert_pem = f.read(1 << 20)
        with open(key, "rb") as f:
            key_pem = f.read(1 << 20)
        matches = key_matches_certificate(cert_pem, key_pem)
    except (OSError, KeyError, DeployError) as exc:
        return Check(name, CRIT, f"cannot check {cert} / {key}: {exc}",
                     "mailopsd tls-deploy --lineage /etc/letsencrypt/live/NAME",
                     event="tls_files_broken", fields=fields)
    if unreadable:
        return Check(name, CRIT, f"{reader} cannot read {', '.join(unreadable)}",
                     f"chgrp {reader} the key and chmod 0640 it (mailopsd tls-deploy does)",
                     event="tls_files_unreadable", fields=fields)
    if not matches:
        return Check(name, CRIT, f"{key} is not the key of {cert}",
                     "deploy the pair from one certbot lineage: mailopsd tls-deploy",
                     event="tls_files_mismatch", fields=fields)
    if key_st.st_mode & stat.S_IROTH:
        return Check(name, WARN, f"{key} is world-readable",
                     f"chmod o-r {key}", event="tls_key_world_readable", fields=fields)
    return Check(name, OK, f"{reader} can read the pair; key matches certificate")


def file_checks(config: Any) -> list[Check]:
    """Exim's pair (read as [tls-deploy] exim_group's user Debian-exim) and Dovecot's (root)."""
    td = config.tls_deploy
    out = []
    for service, cert, key, reader in (
            ("exim", td.exim_certificate, td.exim_privatekey, "Debian-exim"),
            ("dovecot", td.dovecot_certificate, td.dovecot_privatekey, "root")):
        check = check_pair(service, cert, key, reader)
        if check is not None:
            out.append(check)
    return out
