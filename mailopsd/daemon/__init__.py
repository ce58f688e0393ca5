"""The long-running daemon: scheduler, services, signals, and the one way a job runs.

Owns: ``main`` (the Daemon: start, SIGHUP reload, SIGTERM stop, sd_notify), ``scheduling``
(APScheduler set-up and Persistent=true style catch-up), ``services`` (the service contract and
its supervision), ``runner`` (one job run: lock, history, timeout, events, shared by the scheduler
and ``mailopsd run-job``), ``registry`` (which jobs and services exist, by id, as import
strings so the CLI stays fast), ``status`` (the snapshot ``mailopsd status`` reads) and
``notify`` (failure mail, one per job or service per interval). May import: core; domain
packages only through the registry's import strings. Nothing below it imports it.
"""
