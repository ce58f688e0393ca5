"""post-email (was post-email.pl): POST a message piped from a user's .forward to a web site.

The message arrives on stdin (Exim's pipe transport; it starts with a "From " line). Its
Message-ID, Date, From, To, Subject and text body (MIME-decoded in its own charset; an HTML-only
message is converted to text) are POSTed form-encoded, as UTF-8, to the URL. ``{to_domain}`` in
the URL is replaced by the domain of the message's To address - what the seed did with
``$header_to``, which Exim 4.96 no longer allows in a pipe command (it is tainted).

Exit codes follow sysexits, as Exim's pipe transport expects: 0 delivered; 75 (EX_TEMPFAIL) on
network errors, timeouts, HTTP 5xx/408/429 and unreadable configuration - Exim keeps the message
and retries; 65 (EX_DATAERR) for a message over the size limit or without a usable To domain;
69 (EX_UNAVAILABLE) when the site refuses the post (other 4xx, or a redirect); 64 (EX_USAGE) for
a malformed URL. Exim bounces the message on 64/65/69, with our one-line reason in the bounce.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, BinaryIO

from mailopsd import __version__
from mailopsd.core.errors import MailopsError
from mailopsd.forward.message import extract_fields, header_text, parse_message, to_domain

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_TEMPFAIL = 75

_PLACEHOLDER = re.compile(r"\{([^{}/?#]*)\}")
_CHUNK = 65536


class PostEmailError(MailopsError):
    """post-email could not deliver; ``exit_code`` tells Exim whether to retry (75) or bounce."""

    def __init__(self, message: str, exit_code: int, status: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.status = status


def read_message(stream: BinaryIO, max_size: int) -> bytes:
    """Read the whole message; raises PostEmailError (EX_DATAERR) if over ``max_size`` bytes.

    Reads to the end even when too large, so Exim's writer never sees a broken pipe (it
    would then report a write error rather than our exit code).
    """
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total <= max_size:
            chunks.append(chunk)
    if total > max_size:
        raise PostEmailError(f"message is {total} bytes, over the post-email limit of "
                             f"{max_size} bytes (post-email.max_message_size)", EX_DATAERR)
    return b"".join(chunks)


def needs_to_domain(url_template: str) -> bool:
    """Whether the URL uses the {to_domain} placeholder."""
    return "{to_domain}" in url_template


def build_url(url_template: str, domain: str | None) -> str:
    """Fill in {to_domain} and check the result is an http(s) URL with a host.

    Raises PostEmailError: EX_USAGE for a bad URL or unknown placeholder, EX_DATAERR if the
    URL needs a To domain and the message has none usable.
    """
    def fill(m: re.Match[str]) -> str:
        if m.group(1) != "to_domain":
            raise PostEmailError(f"unknown placeholder {m.group(0)} in URL (only {{to_domain}})",
                                 EX_USAGE)
        if domain is None:
            raise PostEmailError("the URL uses {to_domain} but the message has no To address "
                                 "with a usable domain", EX_DATAERR)
        return domain

    url = _PLACEHOLDER.sub(fill, url_template)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PostEmailError(f"not an http(s) URL: {redact_url(url)!r}", EX_USAGE)
    return url


def redact_url(url: str) -> str:
    """The URL without user:password and query (they may hold secrets) for logs."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        query = "?..." if parts.query else ""
        return f"{parts.scheme}://{host}{parts.path}{query}"
    except ValueError:
        return "(unparsable URL)"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would turn the POST into a GET and drop the message."""

    def redirect_request(self, *_args: object, **_kwargs: object) -> None:
        return None


def post_form(url: str, fields: Mapping[str, str], timeout: float) -> int:
    """POST ``fields`` form-encoded (UTF-8) to ``url``; returns the 2xx status.

    Raises PostEmailError: EX_TEMPFAIL for network trouble, timeouts and 5xx/408/429;
    EX_UNAVAILABLE for other 4xx and any redirect.
    """
    import http.client

    data = urllib.parse.urlencode(fields, encoding="utf-8").encode("ascii")
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": f"mailopsd/{__version__} post-email"})
    # No proxy from the environment: Exim's pipe has none, and tests must not depend on one.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
    try:
        with _deadline(timeout), opener.open(request, timeout=timeout) as response:
            response.read(_CHUNK)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        detail = _error_body(exc)
        code = exc.code
        if code >= 500 or code in (408, 429):
            raise PostEmailError(f"HTTP {code} from {redact_url(url)}{detail}; Exim will retry",
                                 EX_TEMPFAIL, code) from None
        if 300 <= code < 400:
            where = exc.headers.get("Location", "?") if exc.headers else "?"
            raise PostEmailError(f"HTTP {code} redirect from {redact_url(url)} to "
                                 f"{redact_url(where)}: put the final URL in .forward",
                                 EX_UNAVAILABLE, code) from None
        raise PostEmailError(f"HTTP {code} from {redact_url(url)}{detail}: the site refused "
                             "the message", EX_UNAVAILABLE, code) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise PostEmailError(f"cannot reach {redact_url(url)}: {reason}; Exim will retry",
                             EX_TEMPFAIL) from None


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Bound the whole request, not just each socket read (a slow-drip server could hold
    Exim's delivery process for hours): SIGALRM raises EX_TEMPFAIL. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(_signum: int, _frame: object) -> None:
        raise PostEmailError(f"no complete answer within {seconds:g}s; Exim will retry",
                             EX_TEMPFAIL)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _error_body(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read(300).decode("utf-8", "replace")
    except Exception:
        return ""
    text = " ".join(text.split())[:200]
    return f" ({text})" if text else ""


def post_email(url_template: str, stream: BinaryIO, *, timeout: float, max_size: int,
               allowed_domains: Sequence[str] = (), log: Any = None) -> int:
    """Read a message from ``stream``, POST its fields, log one event; returns the exit code.

    Never raises for a delivery problem: every outcome becomes an event and an exit code.
    """
    import sys
    import time

    from mailopsd.core.logs import get_logger

    logger = log or get_logger("post_email")
    started = time.monotonic()
    info: dict[str, object] = {"url": redact_url(url_template)}
    try:
        try:
            raw = read_message(stream, max_size)
        except OSError as exc:
            raise PostEmailError(f"cannot read the message: {exc}", EX_TEMPFAIL) from None
        info["bytes"] = len(raw)
        msg = parse_message(raw)
        info["message_id"] = header_text(msg, "Message-ID")[:200]
        domain = to_domain(msg, allowed_domains) if needs_to_domain(url_template) else None
        url = build_url(url_template, domain)
        info["url"] = redact_url(url)
        fields = extract_fields(msg)
        info["body_chars"] = len(fields["body"])
        status = post_form(url, fields, timeout)
    except PostEmailError as exc:
        info.update(reason=str(exc), exit=exc.exit_code,
                    duration=round(time.monotonic() - started, 3))
        if exc.status is not None:
            info["status"] = exc.status
        # First, one clear line: Exim quotes the pipe's output in the bounce (Debian's
        # address_pipe has return_fail_output; with log_fail_output the first line is logged).
        print(f"mailopsd post-email: {exc}", file=sys.stderr, flush=True)
        if exc.exit_code == EX_TEMPFAIL:
            logger.warning("post_email_deferred", **info)
        else:
            logger.error("post_email_refused", **info)
        return exc.exit_code
    except Exception as exc:  # a bug must not lose mail: Exim keeps it and retries
        import traceback

        print(f"mailopsd post-email: internal error ({type(exc).__name__}); Exim will retry",
              file=sys.stderr, flush=True)
        logger.error("post_email_crashed", error=f"{type(exc).__name__}: {exc}",
                     traceback=traceback.format_exc(), exit=EX_TEMPFAIL, **info)
        return EX_TEMPFAIL
    info.update(status=status, exit=EX_OK, duration=round(time.monotonic() - started, 3))
    logger.info("post_email_sent", **info)
    return EX_OK
