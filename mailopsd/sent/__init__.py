"""copy-to-Sent fixup (was copy-to-sent.pl): add Bcc: and \\Seen to the server-made copies.

Owns: the recipients-log grammar (``reclog``), RFC 5322 address lists (``addresses``), header
reading (``message``), the fixer and its pending store (``fixer``, ``store``), the catch-up scan
and ``mailopsd sent-fixup`` (``scan``, ``once``) and the daemon's ``sent-fixer`` service.
May import: core, logtail, maildir.
"""
