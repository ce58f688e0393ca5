# mailopsd live learning: a message copied or moved OUT OF a Spam folder is ham, unless it
# goes to the Trash (throwing spam away says nothing) or to another Spam folder.
# Installed with 95-mailopsd-live-learn.conf; compile with sievec after changing it.
require ["vnd.dovecot.pipe", "copy", "imapsieve", "environment", "vnd.dovecot.environment",
         "vnd.dovecot.imapsieve"];

if environment :matches "imap.mailbox" ["Trash", "INBOX?Trash", "Deleted Messages",
                                        "Deleted Items", "Junk", "Spam", "INBOX?Spam",
                                        "INBOX?Junk"] {
  stop;
}
pipe :copy "mailopsd-learn" ["ham"];
