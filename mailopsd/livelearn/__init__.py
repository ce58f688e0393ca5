"""Live learning: a message moved into (or out of) Spam is trained within seconds.

Owns: ``spool`` (the spool's names and layout, shared by both sides), ``enqueue`` (what
``mailopsd learn-enqueue`` does as the mailbox user: read stdin, write one entry atomically),
``drain`` (the daemon side: verify entries through a trusted directory fd, the owner from the
kernel, copy them for the Bayes owner), ``store`` (daily counts and the record of what was
learned live, in the state database), ``service`` (the daemon's ``live-learn`` service: inotify,
batches, one sa-learn per class) and ``status`` (``mailopsd learn-queue``).
May import: core, spam, maildir. ``spool`` and ``enqueue`` import almost nothing: enqueue runs
once per IMAP move and must start fast.
"""
