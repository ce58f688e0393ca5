"""Renders a private Exim 4.96 configuration for tests (from reference/exim-sandbox/exim.conf).

Debian-like ACLs ("relay not permitted", verify = recipient, header syntax), AUTH PLAIN/LOGIN
without TLS against an lsearch file of test passwords, remote domains routed to a test SMTP sink
(or failed when there is none), local users delivered to ~/Maildir, and optionally Debian's
``userforward`` router (an Exim filter in ~/.forward may ``save`` and ``pipe``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

# Debian 12's default MAIN_LOG_SELECTOR.
DEBIAN_LOG_SELECTOR = ("+smtp_protocol_error +smtp_syntax_error +tls_certificate_verified "
                       "+tls_peerdn")

# Fast retries: tests cannot wait 15 minutes for a deferred message.
FAST_RETRY = "*   *   F,1h,10s"

# The copy-to-Sent transports that work on Exim 4.96 (reference/exim-sandbox): pass this as
# ``extra_transports`` with a system filter that does ``unseen save $home/Maildir/.Sent/`` and
# ``variant=COPY_TO_SENT_MAIN``.
COPY_TO_SENT_TRANSPORTS = r"""
copy_to_sent:
  driver = appendfile
  maildir_format
  user = ${local_part:$sender_address}
  group = ${extract{3}{:}{${lookup passwd{${local_part:$sender_address}}}}}
  directory = ${extract{5}{:}{${lookup passwd{${local_part:$sender_address}}}}}/Maildir/.Sent
  delivery_date_add
  envelope_to_add
  return_path_add
  mode = 0600

copy_to_sent_pipe:
  driver = pipe
  user = ${local_part:$sender_address}
  group = ${extract{3}{:}{${lookup passwd{${local_part:$sender_address}}}}}
  environment = EXIM_SENDER_ADDR=$sender_address : EXIM_AUTH_ID=$authenticated_id
  log_output
"""
# The reference copy-to-Sent system filter (no pipe; recipients logged by logwrite).
COPY_TO_SENT_FILTER = """# Exim filter
if $sender_address_domain is "example.test" and $authenticated_id is not "" then
  logfile @ROOT@/log/sent-recipients.log
  logwrite "$tod_log $message_exim_id sender=<$sender_address> recipients=<$recipients>"
  unseen save $home/Maildir/.Sent/
endif
"""
COPY_TO_SENT_MAIN = ("system_filter_directory_transport = copy_to_sent\n"
                     "system_filter_pipe_transport = copy_to_sent_pipe\n")

# Debian's 600_exim4-config_userforward, trimmed: a ~/.forward may be an Exim filter that saves
# to a directory (maildir) or pipes to a command run as the user.
USERFORWARD_ROUTER = r"""
userforward:
  driver = redirect
  domains = +local_domains
  check_local_user
  file = $home/.forward
  require_files = $local_part_data:$home/.forward
  no_verify
  no_expn
  check_ancestor
  allow_filter
  forbid_smtp_code = true
  directory_transport = address_directory
  file_transport = address_file
  pipe_transport = address_pipe
  reply_transport = address_reply
  skip_syntax_errors
  syntax_errors_to = postmaster@$domain
"""

# Debian's address_* transports (used by .forward and filter deliveries).
ADDRESS_TRANSPORTS = r"""
address_file:
  driver = appendfile
  delivery_date_add
  envelope_to_add
  return_path_add

address_pipe:
  driver = pipe
  return_fail_output

address_reply:
  driver = autoreply

address_directory:
  driver = appendfile
  delivery_date_add
  envelope_to_add
  return_path_add
  check_string = ""
  escape_string = ""
  maildir_format
"""


def exim_list(items: Sequence[str]) -> str:
    """An Exim list; uses ``<;`` as separator when an item is an IPv6 address (has colons)."""
    if any(":" in i for i in items):
        return "<; " + " ; ".join(items)
    return " : ".join(items)


def render_auth_file(users: Mapping[str, str]) -> str:
    """The lsearch file of AUTH users: ``name: password`` lines (lsearch data is unquoted).

    Raises ValueError for names or passwords the format cannot carry.
    """
    for name, pw in users.items():
        if not name or any(c in name for c in ' :\t\n"#'):
            raise ValueError(f"bad AUTH user name {name!r}")
        if not pw or "\n" in pw or pw != pw.strip():
            raise ValueError(f"bad AUTH password for {name!r}")
    return "".join(f"{name}: {pw}\n" for name, pw in users.items())


def _auth_condition(root: str, user: str, password: str) -> str:
    """server_condition: a non-empty password equal to the user's line in ROOT/auth_users."""
    # Concatenation, not format(): Exim's braces would all need doubling.
    lookup = "${lookup{" + user + "}lsearch{" + root + "/auth_users}{$value}{}}"
    return "${if and{{!eq{" + password + "}{}}{eq{" + password + "}{" + lookup + "}}}}"


def render_config(root: Path, *, listen: Sequence[str], port: int, host_lookup_order: str,
                  host_lookup: str, variant: str, log_selector: str,
                  system_filter: bool, extra_transports: str, local_domains: Sequence[str],
                  relay_from_hosts: Sequence[str], sink_host: str | None, sink_port: int | None,
                  pipelining_connect_advertise_hosts: str | None, retry: str,
                  userforward: bool, extra_routers: str, extra_acl_rcpt: str) -> str:
    """The whole Exim configuration text for a private daemon rooted at ``root``."""
    r = str(root)
    main = [
        "# Generated by tests/support/exim_config.py for a private test Exim",
        "primary_hostname = mail.example.test",
        f"qualify_domain = {local_domains[0]}",
        f"domainlist local_domains = {exim_list(local_domains)}",
        "domainlist relay_to_domains =",
        f"hostlist relay_from_hosts = {exim_list(relay_from_hosts)}",
        "exim_user = Debian-exim",
        "exim_group = Debian-exim",
        "never_users = root",
        f"spool_directory = {r}/spool",
        f"log_file_path = {r}/log/%slog",
        f"pid_file_path = {r}/exim.pid",
        f"daemon_smtp_ports = {port}",
        f"local_interfaces = {exim_list(listen)}",
        f"host_lookup = {host_lookup}",
        # bydns skips /etc/hosts, so 127.0.0.1 has no name and every client logs
        # "no host name found for IP address 127.0.0.1" (Debian's order is bydns:byaddr).
        f"host_lookup_order = {host_lookup_order}",
        "tls_advertise_hosts =",
        "auth_advertise_hosts = *",
        f"log_selector = {DEBIAN_LOG_SELECTOR} {log_selector}".rstrip(),
        "acl_smtp_mail = acl_check_mail",
        "acl_smtp_rcpt = acl_check_rcpt",
        "acl_smtp_data = acl_check_data",
        "keep_environment =",
        "add_environment =",
        "ignore_bounce_errors_after = 2d",
        "timeout_frozen_after = 7d",
    ]
    if pipelining_connect_advertise_hosts is not None:
        main.append(f"pipelining_connect_advertise_hosts = {pipelining_connect_advertise_hosts}")
    if system_filter:
        main.append(f"system_filter = {r}/system.filter")
    main.append(variant.replace("@ROOT@", r))

    if sink_port is not None:
        remote_router = (
            "remote_via_sink:\n  driver = manualroute\n  domains = ! +local_domains\n"
            f"  transport = remote_smtp\n  route_list = * {sink_host}\n  self = send\n"
            "  no_more\n")
        remote_transport = (
            f"remote_smtp:\n  driver = smtp\n  port = {sink_port}\n  allow_localhost\n"
            "  hosts_avoid_tls = *\n")
    else:
        # No sink: nothing may leave the machine, so remote addresses fail at once.
        remote_router = ("remote_disabled:\n  driver = redirect\n  domains = ! +local_domains\n"
                         "  allow_fail\n  data = :fail: no remote delivery in this test\n"
                         "  no_more\n")
        remote_transport = ""

    routers = [remote_router, extra_routers.replace("@ROOT@", r)]
    if userforward:
        routers.append(USERFORWARD_ROUTER)
    routers.append("local_user:\n  driver = accept\n  domains = +local_domains\n"
                   "  check_local_user\n  transport = maildir_home\n")

    return "\n".join([
        "\n".join(main),
        "",
        "begin acl",
        "",
        "acl_check_mail:",
        "  accept",
        "",
        "acl_check_rcpt:",
        "  accept",
        "    hosts = :",
        extra_acl_rcpt.replace("@ROOT@", r),
        "  deny",
        "    domains = +local_domains",
        "    local_parts = ^[.] : ^.*[@%!/|`#&?]",
        "    message = restricted characters in address",
        "  deny",
        "    domains = !+local_domains",
        "    local_parts = ^[./|] : ^.*[@%!`#&?] : ^.*/\\\\.\\\\./",
        "    message = restricted characters in address",
        "  accept",
        "    local_parts = postmaster",
        "    domains = +local_domains : +relay_to_domains",
        "  accept",
        "    hosts = +relay_from_hosts",
        "    control = submission/sender_retain",
        "  accept",
        "    authenticated = *",
        "    control = submission/sender_retain",
        "  require",
        "    message = relay not permitted",
        "    domains = +local_domains : +relay_to_domains",
        "  require",
        "    verify = recipient",
        "  accept",
        "",
        "acl_check_data:",
        "  deny",
        "    !verify = header_syntax",
        "    message = header syntax",
        "    log_message = header syntax ($acl_verify_message)",
        "  accept",
        "",
        "begin routers",
        "",
        "\n".join(routers),
        "begin transports",
        "",
        remote_transport,
        "maildir_home:\n  driver = appendfile\n  directory = $home/Maildir\n  maildir_format\n"
        "  delivery_date_add\n  envelope_to_add\n  return_path_add\n  mode = 0600\n",
        ADDRESS_TRANSPORTS,
        extra_transports.replace("@ROOT@", r),
        "",
        "begin retry",
        "",
        retry,
        "",
        "begin authenticators",
        "",
        "plain_server:",
        "  driver = plaintext",
        "  public_name = PLAIN",
        f"  server_condition = {_auth_condition(r, '$auth2', '$auth3')}",
        "  server_set_id = $auth2",
        "  server_prompts = :",
        "",
        "login_server:",
        "  driver = plaintext",
        "  public_name = LOGIN",
        '  server_prompts = "Username:: : Password::"',
        f"  server_condition = {_auth_condition(r, '$auth1', '$auth2')}",
        "  server_set_id = $auth1",
        "",
    ])
