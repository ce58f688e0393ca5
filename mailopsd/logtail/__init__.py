"""Following a log file by name, across rotation, resuming at an exact position.

Owns: ``follow`` (LogFollower: watchdog wake-ups with a stat fallback, rename and copytruncate
rotation, a saved (dev, inode, offset, first-line hash) position), ``chain`` (missed rotations:
the rest of the file last read, then every newer rotated copy, then the live file), ``rotated``
(finding rotated copies, oldest first, and reading compressed ones) and ``reader`` (whole lines
only, bounded length). Used by every log reader: the blocker (Exim mainlog) and the Sent fixer
(the recipients log). May import: core only.
"""
