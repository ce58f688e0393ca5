"""The .forward side of the server: make-forwards and post-email.

Owns: ``forwards`` (the spam-to-Trash Exim filter written into users' homes, checked with
``exim -bf`` first, never overwriting), ``post_email`` (``mailopsd post-email URL``: one message
from a .forward pipe posted to a web endpoint), ``message`` (extracting its fields) and
``html_text`` (HTML-only bodies to text). May import: core only.
"""
