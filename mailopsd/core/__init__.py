"""The ground floor every other package stands on; it imports nothing above itself.

Owns: the configuration (``config/``: TOML into frozen dataclasses, one schema module per area),
the state database (``state``), logging and journald (``logs``, ``journald``), sd_notify
(``sdnotify``), the exception root (``errors``), THE subprocess runner (``process``), running code
as a mailbox owner (``asuser``), local accounts (``users``), file locks (``locks``) and crontab
schedules (``schedule``). May import: the standard library and the design card's libraries only,
never another mailopsd package (``tests/unit/test_architecture.py`` enforces it).
"""
