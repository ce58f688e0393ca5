"""Proves tests.support.netns: namespaces, veth pairs, probes, and Exim inside a namespace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.exim import PrivateExim
from tests.support.netns import Netns, tcp_connect, tcp_probe, veth_pair

pytestmark = pytest.mark.integration

CLIENT = """
import smtplib, sys
with smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=10) as s:
    print(s.ehlo("client.example.test")[0])
"""


def test_exim_in_netns_answers_client_in_other_netns_over_veth(mail_root: Path) -> None:
    with Netns() as server, Netns() as client:
        veth_pair(server, client, "192.0.2.1/24", "192.0.2.2/24",
                  "2001:db8::1/64", "2001:db8::2/64")
        with PrivateExim(mail_root, listen=["192.0.2.1", "2001:db8::1"], netns=server) as exim:
            assert exim.pid in server.pids()
            res = client.run([sys.executable, "-c", CLIENT, "192.0.2.1", str(exim.port)])
            assert res.stdout.strip() == "250"
            exim.wait_for_log(r"no host name found for IP address 192\.0\.2\.2$")
            assert tcp_connect(client, "2001:db8::1", exim.port)
            exim.wait_for_log(r"no host name found for IP address 2001:db8::2$")
            # Nothing listens on port 9: a real RST comes back.
            assert tcp_probe(client, "192.0.2.1", 9) == "refused"
        # The daemon is gone, so the port now refuses too.
        assert not tcp_connect(client, "192.0.2.1", exim.port)


def test_firewall_drop_inside_netns_shows_as_timeout() -> None:
    with Netns() as server, Netns() as client:
        veth_pair(server, client, "198.51.100.1/24", "198.51.100.2/24")
        code = ("import socket, time; s = socket.create_server(('198.51.100.1', 2525));"
                "print('up', flush=True); time.sleep(60)")
        listener = server.popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        assert listener.stdout is not None and listener.stdout.readline() == b"up\n"
        assert tcp_connect(client, "198.51.100.1", 2525, timeout=2)
        server.run(["iptables", "-I", "INPUT", "-p", "tcp", "--dport", "2525", "-j", "DROP"])
        assert tcp_probe(client, "198.51.100.1", 2525, timeout=0.5) == "timeout"
    assert listener.poll() is not None  # killed with the namespace


def test_netns_is_deleted_and_private_etc_removed() -> None:
    with Netns() as ns:
        name = ns.name
        assert (Path("/etc/netns") / name / "nsswitch.conf").exists()
        assert "lo" in ns.run(["ip", "-o", "link", "show", "up"]).stdout
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert name not in listed and not (Path("/etc/netns") / name).exists()
