"""The command line: argument parsing and exit codes only; the work is done elsewhere.

One ``cmd_<group>.py`` per command group, registered in ``main``, with helpers beside it
(``bans_ops``, ``bans_show``, ``status_view``, ``scan_lines``). May import anything below it
(daemon, domain packages, core), lazily inside each command so that ``--help`` stays fast.
"""
