"""``mailopsd bayes backup|restore FILE|stats|list``: the Bayes database spamd reads."""

from __future__ import annotations

import argparse
from typing import Any

from mailopsd.cli.common import EXIT_JOB_FAILED, EXIT_OK, add_json_flag, load, print_json

HELP = """\
The Bayes database is the one spamd reads: [spamassassin] bayes_owner's ~/.spamassassin/bayes
(or bayes_path). Every sa-learn runs as that owner. Backup, restore and learn-spam wait for
each other (lock <daemon.run_dir>/locks/bayes.lock)."""


def register(sub: Any) -> None:
    """Add ``bayes`` and its subcommands."""
    p = sub.add_parser("bayes", help="back up, restore and inspect the Bayes database",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    bsub = p.add_subparsers(dest="bayes_command", metavar="ACTION", required=True)

    b = bsub.add_parser("backup", help="take a validated backup now (the bayes-backup job)",
                        description="Run the bayes-backup job now, exactly as the scheduler "
                        "does: sync, dump as the owner, check the dump against --dump magic, "
                        "store it gzipped with a sha256 manifest, prune by retention. "
                        "Exits 75 if a backup is already running, 1 if it fails.")
    b.add_argument("--dry-run", action="store_true", help="say what would be pruned; "
                   "write nothing")
    b.set_defaults(handler=cmd_backup)

    r = bsub.add_parser("restore", help="restore the database from a backup file",
                        description="Validate FILE (sha256 from SHA256SUMS beside it when "
                        "listed, gzip integrity, line structure, counts), take a safety backup "
                        "of the current database (tag pre-restore), restore as the owner and "
                        "check --dump magic against the file. A truncated or corrupt file is "
                        "refused and nothing changes. FILE may be one of our .backup.gz files "
                        "or a plain `sa-learn --backup` dump.")
    r.add_argument("file", metavar="FILE", help="backup file (.backup.gz or plain text)")
    r.add_argument("--no-safety-backup", action="store_true",
                   help="skip the backup of the current database (e.g. when it is corrupt)")
    r.set_defaults(handler=cmd_restore)

    s = bsub.add_parser("stats", help="nspam, nham, ntokens and whether Bayes is active",
                        description="Print `sa-learn --dump magic` for the database spamd "
                        "reads, the seed's line \"N spams and M hams have been processed with "
                        "T tokens.\", and warnings (Bayes is off until both counts reach 200).")
    add_json_flag(s)
    s.set_defaults(handler=cmd_stats)

    ls = bsub.add_parser("list", help="list the backups and their checksums",
                         description="The backup directory's files, newest first, with size, "
                         "tag and whether SHA256SUMS lists a matching checksum.")
    add_json_flag(ls)
    ls.set_defaults(handler=cmd_list)


def cmd_backup(args: argparse.Namespace) -> int:
    """Run the bayes-backup job through run_job (lock, history, events)."""
    from mailopsd.core.state import StateDB
    from mailopsd.daemon.runner import run_job

    cfg = load(args)
    outcome = run_job("bayes-backup", cfg, StateDB(cfg.daemon.state_dir), trigger="cli",
                      dry_run=args.dry_run)
    if outcome.result == "ok":
        path = outcome.counts.get("path")
        print(f"backup written: {path}" if path else "nothing backed up (see the log)")
        return EXIT_OK
    print(f"mailopsd: bayes backup failed: {outcome.error}")
    return EXIT_JOB_FAILED


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore from FILE; MailopsError (refused, mismatch) becomes exit 1 in main."""
    import os

    from mailopsd.core.logs import get_logger
    from mailopsd.spam.bayes_ops import restore

    cfg = load(args)
    summary = restore(cfg, os.path.abspath(args.file), get_logger("bayes"),
                      safety_backup=not args.no_safety_backup)
    print(f"restored {summary['nspam']} spams, {summary['nham']} hams, {summary['ntokens']} "
          f"tokens from {summary['file']} (checksum: {summary['checksum']})")
    if summary["safety_backup"]:
        print(f"the previous database is saved in {summary['safety_backup']}")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    """Print the counts; a missing database is reported, not an error."""
    from mailopsd.spam.bayes_db import BayesDB, assess

    cfg = load(args)
    job = cfg.jobs.bayes_stats
    db = BayesDB.from_config(cfg)
    magic = db.magic(float(job.timeout))
    data: dict[str, Any] = {"owner": db.owner.name, "path": db.prefix,
                            "exists": magic is not None}
    if magic is None:
        data["warnings"] = ["no Bayes database yet: learn-spam creates it"]
    else:
        data.update(nspam=magic.nspam, nham=magic.nham, ntokens=magic.ntokens,
                    sentence=magic.sentence(), magic=magic.values,
                    warnings=[m for _, m in assess(magic, job.min_messages, job.max_ratio)])
    if args.json:
        print_json(data)
        return EXIT_OK
    print(f"Bayes database of {db.owner.name}: {db.prefix}")
    if magic is not None:
        print(magic.sentence())
    for warning in data["warnings"]:
        print(f"warning: {warning}")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    """List backups newest first with their checksum status."""
    import hashlib
    import os

    from mailopsd.cli.common import print_table
    from mailopsd.spam.bayes_backup import name_tag, name_time, read_manifest
    from mailopsd.spam.bayes_ops import backup_dir

    cfg = load(args)
    directory = backup_dir(cfg)
    names = sorted((n for n in (os.listdir(directory) if os.path.isdir(directory) else ())
                    if name_time(n)), reverse=True)
    sums = read_manifest(directory) if names else {}
    rows = []
    for name in names:
        path = os.path.join(directory, name)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        status = "ok" if sums.get(name) == digest else ("MISMATCH" if name in sums else "absent")
        rows.append({"file": path, "taken": str(name_time(name)), "tag": name_tag(name),
                     "bytes": os.path.getsize(path), "checksum": status})
    if args.json:
        print_json(rows)
    else:
        print_table(("FILE", "TAKEN (UTC)", "TAG", "BYTES", "CHECKSUM"),
                    [(r["file"], r["taken"], r["tag"] or "-", r["bytes"], r["checksum"])
                     for r in rows])
    return EXIT_OK if all(r["checksum"] != "MISMATCH" for r in rows) else EXIT_JOB_FAILED
