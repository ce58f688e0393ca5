"""mailopsd: one daemon for a small Debian mail server's chores.

Kept free of imports so that ``mailopsd --help`` starts fast.
"""

__version__ = "0.1.0"
