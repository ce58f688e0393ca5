"""``mailopsd post-email URL``: called from a user's .forward pipe (was post-email.pl)."""

from __future__ import annotations

import argparse
from typing import Any

EXIT_HELP = """\
exit codes (sysexits, as Exim's pipe transport reads them):
  0   posted (HTTP 2xx)
  75  EX_TEMPFAIL: network error, timeout, HTTP 5xx/408/429, unreadable config:
      Exim keeps the message and retries
  65  EX_DATAERR: message over post-email.max_message_size, or {to_domain} with no usable
      To domain: Exim bounces it
  69  EX_UNAVAILABLE: the site refused it (other HTTP 4xx, or a redirect): Exim bounces it
  64  EX_USAGE: the URL is malformed or has an unknown placeholder

example ~/.forward (an Exim filter; the absolute path must be executable by the user):
  # Exim filter
  pipe "/usr/bin/mailopsd post-email https://{to_domain}/index.php"
"""


def register(sub: Any) -> None:
    """Add the post-email command."""
    p = sub.add_parser(
        "post-email", help="POST a message on stdin to a web site (from a .forward pipe)",
        description="Read one message on stdin (as Exim's pipe transport gives it), and POST "
        "its id (Message-ID without <>), date, from, to, subject and text body - MIME-decoded, "
        "HTML-only bodies converted to text - form-encoded in UTF-8 to URL. {to_domain} in URL "
        "becomes the domain of the message's To address. Works without a configuration file "
        "(defaults); with one, [post-email] and [logging] apply. One event per message.",
        epilog=EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", metavar="URL", help="http(s) URL; may contain {to_domain}")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="limit for the whole request (default: post-email.timeout, 30)")
    p.add_argument("--max-size", type=int, metavar="BYTES",
                   help="refuse larger messages (default: post-email.max_message_size, 10 MiB)")
    p.set_defaults(handler=cmd_post_email)


def _load_config(explicit: str | None) -> tuple[Any, str]:
    """The config and where it came from; an absent/unreadable DEFAULT file means defaults.

    Raises ConfigError if a file named by --config or $MAILOPSD_CONFIG is unusable, or if the
    default file exists and is readable but invalid.
    """
    from mailopsd.core.config import (
        DEFAULT_CONFIG_PATH,
        config_path_from,
        load_config,
        parse_config,
    )
    from mailopsd.core.config.sources import all_readable

    path = config_path_from(explicit)
    if path == DEFAULT_CONFIG_PATH and not all_readable(path):
        # post-email runs as the mail user: the daemon's config (or a drop-in of it) may well
        # be root-only; then the defaults, never half of the configuration.
        return parse_config({}, "(defaults)"), "defaults"
    return load_config(path), path


def cmd_post_email(args: argparse.Namespace) -> int:
    """Post the message on stdin; the exit code tells Exim to accept, retry or bounce."""
    import os
    import pwd
    import sys

    from mailopsd.core import logs
    from mailopsd.core.errors import ConfigError
    from mailopsd.forward.post_email import EX_TEMPFAIL, post_email

    try:
        cfg, source = _load_config(args.config)
    except ConfigError as exc:
        print(f"mailopsd post-email: {exc}; Exim will retry", file=sys.stderr)
        return EX_TEMPFAIL
    target = cfg.logging.target
    if target == "auto":  # under Exim: no JOURNAL_STREAM and no terminal; prefer the journal
        sock = cfg.logging.journal_socket
        target = "journald" if os.access(sock, os.W_OK) else "json"
    logs.configure(target, args.log_level or cfg.logging.level, cfg.logging.journal_socket,
                   cfg.logging.syslog_identifier)
    settings = cfg.post_email
    timeout = args.timeout if args.timeout and args.timeout > 0 else float(settings.timeout)
    max_size = args.max_size if args.max_size and args.max_size > 0 else \
        settings.max_message_size

    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = str(os.getuid())
    log = logs.get_logger("post_email").bind(config=source, user=user)
    return post_email(args.url, sys.stdin.buffer, timeout=timeout, max_size=max_size,
                      allowed_domains=settings.to_domains, log=log)
