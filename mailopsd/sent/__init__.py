"""copy-to-Sent fixup (was copy-to-sent.pl): add Bcc: and \\Seen to the server-made copies."""
