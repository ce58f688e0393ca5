# mailopsd live learning: a message copied, moved or appended INTO a Spam folder is spam.
# Installed with 95-mailopsd-live-learn.conf; compile with sievec after changing it.
require ["vnd.dovecot.pipe", "copy", "imapsieve", "environment", "vnd.dovecot.environment",
         "vnd.dovecot.imapsieve"];

# From one Spam folder to another (or within one): nothing new to learn. (The source folder,
# vnd.dovecot.mailbox-from, is only set with "vnd.dovecot.imapsieve" required; it is empty for
# APPEND.)
if environment :matches "vnd.dovecot.mailbox-from" ["Junk", "Spam", "INBOX?Spam", "INBOX?Junk"] {
  stop;
}
# learn-enqueue runs as the mailbox user, only queues the message and exits 0 (also when it
# refuses it by size or daily limit); the mailopsd daemon trains spamd's Bayes database.
pipe :copy "mailopsd-learn" ["spam"];
