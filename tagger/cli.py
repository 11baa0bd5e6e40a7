"""Command line: parse arguments, load the config once, run a command, map errors to exit codes.

Exit codes: 0 success; 1 some files failed; 2 usage or configuration error; 3 any other
tagger error (model, catalogue, tag writing); 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
from typing import Callable, Sequence

from tagger import __version__
from tagger.config import Config, load_config
from tagger.errors import ConfigError, TaggerError

EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

log = logging.getLogger("tagger")


class UsageError(ConfigError):
    """A command-line usage error (exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would exit(2) itself; keep one exit path
        raise UsageError(f"{self.prog}: {message}")


# ---------------------------------------------------------------- output


def result_to_json(result) -> dict:
    """The documented ``--json`` object for one file."""
    outcome = result.vote
    return {
        "path": result.path,
        "genre": outcome.genre if outcome else None,
        "confidence": round(outcome.confidence, 4) if outcome else None,
        "tie": outcome.tie if outcome else False,
        "tied_genres": list(outcome.tied) if outcome and outcome.tie else [],
        "candidates": [
            {"genre": c.genre, "votes": c.votes, "mean_score": round(c.mean_score, 4)}
            for c in (outcome.candidates if outcome else ())
        ],
        "segments": [
            {"start_s": s.start_s, "genre": s.genre, "scores": s.scores} for s in result.segments
        ],
        "descriptors": result.descriptors,
        "duration_s": round(result.duration_s, 3) if result.duration_s is not None else None,
        "model": {"name": result.model.name, "sha256": result.model.sha256},
        "error": result.error,
    }


def format_row(result, name_width: int) -> str:
    """One human-readable table row."""
    name = result.path if len(result.path) <= name_width else "…" + result.path[-name_width + 1:]
    if result.error:
        return f"{name:<{name_width}}  {'-':<14} {'':>5} {'':>6}  error: {result.error}"
    outcome = result.vote
    votes = outcome.candidates[0].votes
    note = ""
    if outcome.tie:
        note = "tie: " + ", ".join(f"{c.genre} {c.votes}" for c in outcome.candidates
                                   if c.genre in outcome.tied)
    elif len(outcome.candidates) > 1:
        note = "also: " + ", ".join(f"{c.genre} {c.votes}" for c in outcome.candidates[1:4])
    if result.descriptors:
        note += ("; " if note else "") + ", ".join(list(result.descriptors)[:3])
    return (f"{name:<{name_width}}  {outcome.genre:<14} {outcome.confidence:5.2f} "
            f"{votes:>2}/{len(result.segments):<3}  {note}")


# ---------------------------------------------------------------- commands


def cmd_classify(args: argparse.Namespace, config: Config) -> int:
    from tagger.classify import Classifier

    classifier = Classifier(config)
    failed = 0
    width = min(48, max(len(p) for p in args.files))
    if not args.json:
        print(f"{'FILE':<{width}}  {'GENRE':<14} {'CONF':>5} {'VOTES':<6}  NOTES")
    for result in classifier.classify(args.files):
        failed += result.error is not None
        if args.json:
            print(json.dumps(result_to_json(result), ensure_ascii=False), flush=True)
        else:
            print(format_row(result, width), flush=True)
        if result.error:
            log.error("%s", result.error)
    return EXIT_FAILURES if failed else EXIT_OK


def _open_catalogue(config: Config):
    from tagger.catalogue import open_catalogue

    catalogue = open_catalogue(config.database_url)
    if catalogue.upgraded_from not in (None, catalogue.revision):
        log.info("catalogue upgraded from schema %s to %s", catalogue.upgraded_from,
                 catalogue.revision)
    return catalogue


def _roots(args: argparse.Namespace, config: Config) -> list[str]:
    roots = [os.path.abspath(p) for p in (args.paths or config.library.roots)]
    if not roots:
        raise UsageError("no PATH given and no 'library.roots' in tagger.toml")
    for root in roots:
        if not os.path.isdir(root):
            raise UsageError(f"not a folder: {root}")
    return roots


def _stop_flag() -> Callable[[], bool]:
    """First Ctrl-C (or SIGTERM) asks to stop after the files in progress; a second one aborts."""
    requested = []

    def handler(signum, frame):
        if requested:
            raise KeyboardInterrupt
        requested.append(signum)
        print("\nstopping after the files in progress (Ctrl-C again to abort)", file=sys.stderr)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return lambda: bool(requested)


def cmd_scan(args: argparse.Namespace, config: Config) -> int:
    from tagger.catalogue import current, head
    from tagger.lock import WriterLock
    from tagger.scan import scan

    roots = _roots(args, config)
    should_stop = _stop_flag()
    if args.dry_run:  # writes nothing at all: not even a new or upgraded catalogue
        catalogue = _open_catalogue(config) if current(config.database_url) == head() else None
        summary = scan(roots, config, catalogue, force=args.force, dry_run=True,
                       workers=args.workers or 0, should_stop=should_stop)
    else:
        with WriterLock(config.state_path, config.database_url, "tagger scan"):
            with _open_catalogue(config) as catalogue:
                summary = scan(roots, config, catalogue, force=args.force,
                               workers=args.workers or 0, should_stop=should_stop)
    if args.json:
        print(json.dumps({**{k: v for k, v in vars(summary).items() if k != "failures"},
                          "failed": summary.failed, "failures": dict(summary.failures)}))
    else:
        print("\n".join(summary.lines()))
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILURES if summary.failed else EXIT_OK


def cmd_show(args: argparse.Namespace, config: Config) -> int:
    with _open_catalogue(config) as catalogue:
        records = [(p, catalogue.track(os.path.abspath(p))) for p in args.paths]
    missing = 0
    for path, record in records:
        if record is None:
            print(f"{path}: not in the catalogue")
            missing += 1
            continue
        print(format_track(record))
    return EXIT_FAILURES if missing else EXIT_OK


def format_track(record) -> str:
    """Everything the catalogue knows of one track, for ``tagger show``."""
    lines = [record.path,
             f"  status: {record.status}" + (f" ({record.error})" if record.error else ""),
             f"  format: {record.format or '?'}, {record.size} bytes"
             + (f", {record.duration_s:.1f} s" if record.duration_s else ""),
             f"  content id: {record.content_id or '-'}",
             f"  last scanned: {record.last_scanned or '-'}"]
    for prediction in record.predictions:
        tie = f", tie between {', '.join(prediction.tied)}" if prediction.tie else ""
        lines.append(f"  prediction ({prediction.model.name} {prediction.model.sha256[:12]}, "
                     f"{prediction.created:%Y-%m-%d %H:%M}): {prediction.genre} "
                     f"{prediction.confidence:.2f}, {prediction.votes}/"
                     f"{prediction.segment_count} votes{tie}")
        for c in prediction.candidates:
            lines.append(f"    {c.genre:<16} {c.votes:>2} votes  mean {c.mean_score:.3f}")
        lines.append("    segments: " + ", ".join(
            f"{s.start_s:.0f}s {s.genre}" if s.start_s is not None else s.genre
            for s in prediction.segments))
        if prediction.descriptors:
            lines.append("    descriptors: " + ", ".join(
                f"{k} {v:.2f}" for k, v in prediction.descriptors.items()))
    for write in record.tag_writes:
        reverted = f" (reverted {write.reverted_at:%Y-%m-%d %H:%M})" if write.reverted_at else ""
        lines.append(f"  tag {write.field}: {_values(write.old)} -> {_values(write.new)} "
                     f"at {write.written_at:%Y-%m-%d %H:%M}{reverted}")
    return "\n".join(lines)


def _values(values) -> str:
    return "(none)" if values is None else "; ".join(values)


def cmd_stats(args: argparse.Namespace, config: Config) -> int:
    with _open_catalogue(config) as catalogue:
        stats = catalogue.stats()
    if args.json:
        print(json.dumps(dataclasses.asdict(stats), default=str))
        return EXIT_OK
    print(f"{stats.total} tracks: " + ", ".join(
        f"{n} {status}" for status, n in stats.status_counts.items() if n))
    print(f"{stats.predicted} with a genre, {stats.ties} ties")
    for genre, count in stats.genres:
        share = count / stats.predicted if stats.predicted else 0
        print(f"  {genre:<16} {count:>7}  {share:6.1%}  {'#' * round(40 * share)}")
    if stats.confidence:
        c = stats.confidence
        print(f"confidence: min {c.min:.2f}  q1 {c.q1:.2f}  median {c.median:.2f}  "
              f"q3 {c.q3:.2f}  max {c.max:.2f}")
    if stats.failures:
        print("not classified:")
        for status, reason, count in stats.failures[:10]:
            print(f"  {count:>6} {status}: {reason}")
    return EXIT_OK


def cmd_revert(args: argparse.Namespace, config: Config) -> int:
    from tagger import tags
    from tagger.lock import WriterLock

    if not args.all and not args.paths:
        raise UsageError("tagger revert: give PATHs or --all")
    failed = restored = 0
    with WriterLock(config.state_path, config.database_url, "tagger revert"), \
            _open_catalogue(config) as catalogue:
        if args.all:
            changes = catalogue.tag_changes()
        else:
            changes = []
            for path in map(os.path.abspath, args.paths):
                if os.path.isdir(path):
                    changes += catalogue.tag_changes(under=path)
                else:
                    changes += catalogue.tag_changes([path])
        by_path: dict[str, list] = {}
        for change in changes:
            by_path.setdefault(change.path, []).append(change)
        for path, group in by_path.items():
            try:
                tags.restore(path, group)  # oldest first: the user's own values win
            except TaggerError as exc:
                failed += 1
                log.error("%s", exc)
                continue
            with catalogue.batch():
                catalogue.mark_reverted(c.id for c in group)
                st = os.stat(path)
                catalogue.update_stat(path, st.st_size, st.st_mtime_ns)
            restored += 1
    print(f"restored the original tags of {restored} files" + (f", {failed} failed" if failed else ""))
    return EXIT_FAILURES if failed else EXIT_OK


def cmd_db(args: argparse.Namespace, config: Config) -> int:
    from tagger.catalogue import current, head, safe_url, upgrade

    url = config.database_url
    if args.db_command == "upgrade":
        old, new = upgrade(url)
        print(f"{safe_url(url)}: {old or 'empty'} -> {new}" if old != new
              else f"{safe_url(url)}: already at {new}")
    else:
        revision = current(url)
        print(f"{safe_url(url)}: {revision or 'no schema'} (newest: {head()})")
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace, Config], int]] = {
    "classify": cmd_classify,
    "scan": cmd_scan,
    "show": cmd_show,
    "stats": cmd_stats,
    "revert": cmd_revert,
    "db": cmd_db,
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tagger", description="Genre tagging for music libraries.")
    parser.add_argument("--version", action="version", version=f"tagger {__version__}")
    parser.add_argument("--config", metavar="FILE", help="tagger.toml to use")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    classify = sub.add_parser("classify", help="classify audio files and print the result")
    classify.add_argument("files", nargs="+", metavar="FILE")
    classify.add_argument("--json", action="store_true", help="one JSON object per file")

    db = _Parser(add_help=False)
    db.add_argument("--db", metavar="URL", help="catalogue URL (overrides tagger.toml)")

    scan = sub.add_parser("scan", parents=[db], help="classify, tag and catalogue a library")
    scan.add_argument("paths", nargs="*", metavar="PATH", help="default: library.roots")
    scan.add_argument("--dry-run", action="store_true",
                      help="print existing -> proposed genre; write nothing")
    scan.add_argument("--force", action="store_true", help="also redo unchanged files")
    scan.add_argument("--workers", type=int, metavar="N", help="decode worker processes")
    scan.add_argument("--json", action="store_true", help="print the summary as JSON")

    show = sub.add_parser("show", parents=[db], help="everything known about tracks")
    show.add_argument("paths", nargs="+", metavar="PATH")

    stats = sub.add_parser("stats", parents=[db], help="genre distribution, confidence, failures")
    stats.add_argument("--json", action="store_true")

    revert = sub.add_parser("revert", parents=[db], help="restore the tags tagger overwrote")
    revert.add_argument("paths", nargs="*", metavar="PATH", help="files or folders")
    revert.add_argument("--all", action="store_true", help="every file tagger ever wrote")

    dbcmd = sub.add_parser("db", parents=[db], help="catalogue schema: upgrade, current")
    dbcmd.add_argument("db_command", choices=("upgrade", "current"))
    return parser


def setup_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.root.level))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (never raises for expected errors)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help / --version
            return int(exc.code or 0)
        if not args.command:
            raise UsageError("tagger: a command is required (try 'tagger --help')")
        config = load_config(args.config)
        if getattr(args, "db", None):
            config = dataclasses.replace(config, database=args.db)
        setup_logging("debug" if args.verbose else config.log_level)
        return COMMANDS[args.command](args, config)
    except ConfigError as exc:
        print(f"tagger: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TaggerError as exc:
        print(f"tagger: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("tagger: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def main_entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
