"""THE way mailopsd touches a user's Maildir: as the owner, no link followed, atomic renames.

Owns: ``folder`` (Maildir/Folder opened through verified directory descriptors, message names
and flags, writes that never lose a message), ``ops`` (what the as-user worker runs: snapshot
folders, then act on exactly the snapshot) and ``rewrite`` (root-side rewriting of one message
through verified descriptors, used by copy-to-Sent). May import: core only.
"""
