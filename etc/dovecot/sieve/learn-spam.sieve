# mailopsd live learning: a message copied, moved or appended INTO a Spam folder is spam.
# Installed with 95-mailopsd-live-learn.conf; compile with sievec after changing it.
require ["vnd.dovecot.pipe", "copy", "imapsieve", "environment", "vnd.dovecot.environment",
         "vnd.dovecot.imapsieve"];

# Copied or moved from one Spam folder to another (or within one): nothing new to learn.
# (vnd.dovecot.mailbox-from, the source folder, needs "vnd.dovecot.imapsieve"; for an APPEND it
# is the destination itself, so it is looked at only for COPY, which includes MOVE.)
if allof (environment :is "imap.cause" "COPY",
          environment :matches "vnd.dovecot.mailbox-from"
                      ["Junk", "Spam", "INBOX?Spam", "INBOX?Junk"]) {
  stop;
}
# learn-enqueue runs as the mailbox user, only queues the message and exits 0 (also when it
# refuses it by size or daily limit); the mailopsd daemon trains spamd's Bayes database.
pipe :copy "mailopsd-learn" ["spam"];
