"""post-email's event reaches a real journald, with fields an admin can filter on (root)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.journald import private_journald
from tests.unit.test_post_email_http import RecordingServer

pytestmark = pytest.mark.integration

MAILOPSD = str(Path(sys.executable).with_name("mailopsd"))


def test_every_outcome_is_a_journal_event(tmp_path: Path) -> None:
    with private_journald() as journald, RecordingServer((200, 503)) as server:
        cfg = tmp_path / "mailopsd.toml"
        cfg.write_text(f'[logging]\njournal_socket = "{journald.socket_path}"\n'
                       'syslog_identifier = "mailopsd-post-test"\n')
        for _ in range(2):
            subprocess.run([MAILOPSD, "--config", str(cfg), "post-email", server.url()],
                           input=b"To: a@site.example\nMessage-ID: <j1@example.net>\n\nhi\n",
                           capture_output=True, timeout=30, check=False,
                           env={"PATH": "/usr/bin:/bin"})
        [sent] = journald.query("SYSLOG_IDENTIFIER=mailopsd-post-test", "EVENT=post_email_sent")
        assert (sent["STATUS"], sent["EXIT"], sent["MESSAGE_ID"]) == ("200", "0",
                                                                     "<j1@example.net>")
        assert sent["USER"] == "root" and sent["PRIORITY"] == "6"
        [deferred] = journald.query("SYSLOG_IDENTIFIER=mailopsd-post-test",
                                    "EVENT=post_email_deferred")
        assert (deferred["STATUS"], deferred["EXIT"], deferred["PRIORITY"]) == ("503", "75", "4")
