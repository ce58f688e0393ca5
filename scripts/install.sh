#!/usr/bin/env bash
# Install everything mailopsd and its tests need on Debian 12, idempotently (run as root):
# the Debian packages (without starting their services), including mailopsd's own libraries as
# Debian ships them (python3-apscheduler, python3-iptables, ...), a venv at ./.venv built from
# Debian's Python with those system packages visible (so the tests run against exactly the
# versions the Debian package depends on, and test users can execute it too), mailopsd itself
# (editable, no dependency taken from PyPI) and the developer tools (ruff, mypy) from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  exim4-daemon-heavy dovecot-imapd spamassassin spamd spamc sa-compile gnupg
  iptables nftables iproute2 systemd util-linux procps
  fail2ban time
  python3 python3-venv python3-dev gcc
  # mailopsd's runtime libraries, bookworm's versions (the Debian package depends on these)
  python3-apscheduler python3-iptables python3-structlog python3-watchdog python3-psutil
  # the test suite's libraries from Debian
  python3-pytest python3-hypothesis python3-aiosmtpd python3-setuptools python3-wheel
  tzdata  # the local-time tests switch TZ to Berlin, Lord Howe, Troll... (a minimal image lacks it)
  # issue 18 (health): metrics, DNS and certificate checks; the tests' DNS servers and openssl
  python3-prometheus-client python3-dnspython python3-cryptography rbldnsd dnsmasq-base openssl
  prometheus  # promtool: the tests check the scrape and the shipped alert rules with it
  # live learning (issue 17): Pigeonhole's imap_sieve, sieve_imapsieve, sieve_extprograms, sievec
  dovecot-sieve
  # [cluster] (issue 16): psycopg 3, SpamAssassin's PgSQL Bayes driver, PostgreSQL for the tests
  python3-psycopg libdbd-pg-perl postgresql-15 postgresql-client-15
  # issue 15: build the .deb (debhelper/pybuild, man page) and boot a systemd container for tests
  debhelper dh-python pybuild-plugin-pyproject python3-build python3-installer python3-docutils lintian debootstrap systemd-container
  python3-all-dev  # issue 12: the .deb builds scan-log's C extension (gcc, python3-dev above too)
  # issue 13: the missed-rotation tests run the real logrotate (Debian's exim4-base stanza)
  logrotate
  git  # tests/support/debpkg.py builds the .deb from the files git tracks
  # issue 12: nftables bans in-process through libnftables (no nft process per ban)
  python3-nftables
  # issue 12: iptables bans as ipset members over netlink (pyroute2); ipset: the admin's and the
  # tests' view of the sets (`ipset list`)
  python3-pyroute2 ipset
)

if [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (it installs Debian packages)" >&2
  exit 2
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install.sh: installing Debian packages: ${missing[*]}"
  # Keep package services (exim4 on port 25, spamd, dovecot, fail2ban) from starting: the
  # tests and the demo run private instances. Only our own policy-rc.d is removed afterwards.
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  trap '[ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Debian's python, not a per-user one: mailbox users run `mailopsd post-email` from .forward.
PY=/usr/bin/python3
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)' \
   || ! grep -q '^include-system-site-packages = true' .venv/pyvenv.cfg; then
  rm -rf .venv
  "$PY" -m venv --system-site-packages .venv
fi
# --no-deps --no-build-isolation: every library comes from Debian (above), none from PyPI.
.venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
.venv/bin/pip install -q --disable-pip-version-check "ruff>=0.6" "mypy>=1.10"
.venv/bin/mailopsd --version
