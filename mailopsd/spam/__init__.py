"""SpamAssassin and Bayes: everything that drives sa-learn, sa-update, spamd and the Bayes DB.

Owns: ``bayes`` (sa-learn argv builders and output parsers), ``bayes_db`` (running them as the
database owner under the Bayes lock), ``bayes_backup`` and ``bayes_ops`` (validated backups,
retention, restore), ``spamassassin`` (sa-update, lint, sa-compile, reloading spamd),
``rules_snapshot`` (undoing a broken rules update) and ``staging`` (the private copy of messages
that sa-learn reads). May import: core only (the learn-spam job joins spam and maildir).
"""
