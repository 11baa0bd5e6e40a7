"""Command line: parse arguments, load the config once, run a command, map errors to exit codes.

Exit codes: 0 success; 1 some files failed; 2 usage or configuration error; 3 any other
tagger error (model, catalogue, tag writing); 130 interrupted; 141 the output pipe closed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
from typing import Callable, Iterator, Sequence

from tagger import __version__
from tagger.config import Config, load_config, workers_option
from tagger.errors import ConfigError, TaggerError

EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `head` leaves a shell pipeline's writer with

log = logging.getLogger("tagger")


class UsageError(ConfigError):
    """A command-line usage error (exit 2); ``usage`` is the parser's usage line, if any."""

    def __init__(self, message: str, usage: str = "", prog: str = "tagger"):
        super().__init__(message)
        self.usage, self.prog = usage, prog


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # argparse would exit(2) itself; keep one exit path
        raise UsageError(message, self.format_usage(), self.prog)


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
    from tagger.model.classify import Classifier

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
    from tagger.library.catalogue import open_catalogue

    catalogue = open_catalogue(config.database_url)
    if catalogue.upgraded_from not in (None, catalogue.revision):
        log.info("catalogue upgraded from schema %s to %s", catalogue.upgraded_from,
                 catalogue.revision)
    return catalogue


def _roots(args: argparse.Namespace, config: Config) -> list[str]:
    """The folders (or single files) to scan: given, or ``library.roots``."""
    roots = [os.path.abspath(os.path.expanduser(p)) for p in (args.paths or config.library.roots)]
    if not roots:
        raise UsageError("no PATH given and no 'library.roots' in tagger.toml")
    for root in roots:
        if not os.path.exists(root):
            raise UsageError(f"{root}: does not exist")
        if not (os.path.isdir(root) or os.path.isfile(root)):
            raise UsageError(f"{root}: neither a folder nor a file")
    return roots


@contextlib.contextmanager
def graceful_stop() -> Iterator[Callable[[], bool]]:
    """First Ctrl-C (or SIGTERM) asks to stop after the files in progress; a second one aborts.

    Yields the flag to poll; the previous handlers come back on exit.
    """
    requested = []

    def handler(signum, frame):
        if requested:
            raise KeyboardInterrupt
        requested.append(signum)
        if signum == signal.SIGTERM:  # systemd or kill: nobody is there to press Ctrl-C
            log.info("SIGTERM: stopping after the files in progress")
        else:
            print("\nstopping after the files in progress (Ctrl-C again to abort)",
                  file=sys.stderr)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(requested)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def cmd_scan(args: argparse.Namespace, config: Config) -> int:
    from tagger.cli.progress import ScanDisplay, use_state_caches
    from tagger.library.catalogue import current, head
    from tagger.library.lock import WriterLock
    from tagger.service.scan import scan

    roots = _roots(args, config)
    display = ScanDisplay(quiet=args.quiet, first_run=use_state_caches(config.state_path))
    display.say(f"{'dry run: ' if args.dry_run else ''}scanning {', '.join(roots)}; catalogue "
                f"{_where(config)}")
    proposals: list[dict] = []
    options = dict(force=args.force, workers=args.workers or 0, retry_failed=args.retry_failed,
                   progress=display, on_phase=display.phase)
    with graceful_stop() as should_stop:
        try:
            if args.dry_run:  # writes nothing at all: not even a new or upgraded catalogue
                exists = current(config.database_url) == head()
                with (_open_catalogue(config) if exists else contextlib.nullcontext()) as cat:
                    summary = scan(roots, config, cat, dry_run=True, should_stop=should_stop,
                                   on_proposal=proposals.append if args.json else None,
                                   **options)
            else:
                with WriterLock(config.state_path, config.database_url, "tagger scan"), \
                        _open_catalogue(config) as catalogue:
                    summary = scan(roots, config, catalogue, should_stop=should_stop, **options)
        finally:
            display.close()
    if args.json:
        out = summary.as_dict()
        if args.dry_run:
            out["proposals"] = proposals
        print(json.dumps(out, ensure_ascii=False))
    elif not args.quiet or summary.failed or summary.interrupted:
        print("\n".join(summary.lines()))
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILURES if summary.failed else EXIT_OK


def _where(config: Config) -> str:
    from tagger.library.catalogue import safe_url

    url = config.database_url
    return url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else safe_url(url)


def cmd_show(args: argparse.Namespace, config: Config) -> int:
    records = []
    with _open_catalogue(config) as catalogue:
        for p in args.paths:
            path = os.path.abspath(os.path.expanduser(p))
            if os.path.isdir(path):  # a folder: every catalogued track below it, as revert
                below = sorted(catalogue.known_files([path]))
                if not below:
                    records.append((p, None))
                records += [(q, catalogue.track(q)) for q in below]
            else:
                records.append((p, catalogue.track(path)))
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
    from tagger.library import tags
    from tagger.library.lock import WriterLock
    from tagger.library.paths import is_inside, outside_reason, real_roots

    if not args.all and not args.paths:
        raise UsageError("give PATHs or --all", prog="tagger revert")
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
        roots = real_roots(config.library.roots
                           or [p for p in map(os.path.abspath, args.paths) if os.path.isdir(p)])
        for path, group in by_path.items():
            # never through a symlink to outside the library (without roots: outside the
            # file's own folder), even one swapped in after tagger wrote the file
            if not is_inside(path, roots or real_roots([os.path.dirname(path)])):
                failed += 1
                log.error("%s: not reverting: %s", path, outside_reason(path))
                continue
            if not args.force and _edited_since(path, group):
                failed += 1
                log.error("%s: its genre was changed after tagger wrote it; not reverting "
                          "(--force reverts anyway)", path)
                continue
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
    print(f"restored the original tags of {restored} files"
          + (f", {failed} failed" if failed else ""))
    return EXIT_FAILURES if failed else EXIT_OK


def _edited_since(path: str, changes) -> bool:
    """Whether the file's genre is no longer what tagger last wrote (someone edited it since)."""
    from tagger.library import tags

    genre_writes = [c for c in changes if "CONFIDENCE" not in c.field and c.field != "gnre"]
    if not genre_writes:
        return False
    try:
        return tuple(tags.read_genres(path)) != tuple(genre_writes[-1].new or ())
    except TaggerError:
        return False  # restore() will report what is wrong with the file


def cmd_db(args: argparse.Namespace, config: Config) -> int:
    from tagger.library.catalogue import current, head, safe_url, upgrade

    url = config.database_url
    if args.db_command == "upgrade":
        old, new = upgrade(url)
        print(f"{safe_url(url)}: {old or 'empty'} -> {new}" if old != new
              else f"{safe_url(url)}: already at {new}")
    else:
        revision = current(url)
        print(f"{safe_url(url)}: {revision or 'no schema'} (newest: {head()})")
    return EXIT_OK


# ---------------------------------------------------------------- train and eval


def _labelled_dataset(args: argparse.Namespace, config: Config):
    """The labelled tracks ``train``/``eval`` work on: a genre-folder dataset or --from-tags."""
    from tagger.learn.datasets import GenreMap, folder_dataset, tags_dataset

    genre_map = GenreMap.parse(args.map or (), args.genre_map)
    if args.from_tags:
        with _open_catalogue(config) as catalogue:
            dataset = tags_dataset(catalogue, under=[os.path.abspath(p) for p in args.source],
                                   genre_map=genre_map, min_tracks=args.min_tracks)
        left = ", ".join(f"{g} ({n})" for g, n in sorted(dataset.dropped.items()))
        print(f"library tags: {len(dataset.tracks)} labelled tracks, "
              f"{len(dataset.unlabelled)} without a genre of their own"
              + (f"; left out (fewer than {args.min_tracks} tracks or mapped away): {left}"
                 if left else ""), file=sys.stderr)
        return dataset
    if len(args.source) != 1:
        raise UsageError("give one DATASET folder (ROOT/<genre>/...) or --from-tags",
                         prog=f"tagger {args.command}")
    return folder_dataset(args.source[0], config.library, genre_map)


def _embedded(args: argparse.Namespace, config: Config):
    from tagger.cli.progress import ScanDisplay
    from tagger.learn.train import embed, load_backbones

    dataset = _labelled_dataset(args, config)
    backbones = load_backbones(config)
    progress = ScanDisplay(quiet=args.quiet, label="embedding")(len(dataset.tracks))
    last = [0]

    def advance(done: int, total: int) -> None:
        progress.advance(done - last[0])
        last[0] = done

    try:
        embedded = embed(dataset, config, backbones, threads=config.scan.workers or 2,
                         progress=advance)
    finally:
        progress.close()
    stats = embedded.stats
    print(f"embeddings: {stats.cached} cached, {stats.decoded} decoded, {stats.failed} "
          f"unreadable ({stats.seconds:.1f} s)", file=sys.stderr)
    return embedded, backbones


def _head_options(args: argparse.Namespace):
    from tagger.model.heads import HeadOptions

    given = {"embedding": args.embedding, "kind": args.head, "epochs": args.epochs}
    return HeadOptions(seed=args.seed, **{k: v for k, v in given.items() if v is not None})


def _write_json(path: str, data: dict) -> None:
    try:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
    except OSError as exc:
        raise TaggerError(f"cannot write the report: {exc.strerror or exc}", path) from None


def cmd_train(args: argparse.Namespace, config: Config) -> int:
    from tagger.learn.train import train_bundle

    embedded, backbones = _embedded(args, config)
    outcome = train_bundle(embedded, backbones, config, args.out, options=_head_options(args),
                           folds=args.folds, name=args.name)  # folds < 2: no cross-validation
    bundle, report = outcome.bundle, outcome.report
    counts = ", ".join(f"{g} {n}" for g, n in embedded.tracks_per_label().items())
    print(f"bundle {bundle.name} ({bundle.sha256[:12]}) written to {bundle.path}")
    options = bundle.card["training"]["options"]
    print(f"trained on {len(embedded.tracks)} tracks: {counts}; head {options['kind']} on "
          f"{options['embedding']} embeddings in {outcome.fit_seconds:.1f} s")
    if report:
        print(f"{report['folds']}-fold cross-validation: track accuracy "
              f"{report['track_accuracy']:.3f}, segment accuracy {report['segment_accuracy']:.3f}"
              f" (chance {report['chance']['uniform']:.3f})")
        if args.report:
            _write_json(args.report, report)
    print(f"use it: tagger classify --model {bundle.path} FILE..., or model.bundle in tagger.toml")
    return EXIT_OK


def cmd_eval(args: argparse.Namespace, config: Config) -> int:
    from tagger.learn.evaluate import cross_validate, evaluate_head, format_report, plot_confusion

    embedded, backbones = _embedded(args, config)
    if args.model:
        from tagger.model.classify import genre_head

        report = evaluate_head(embedded, backbones, genre_head(config, backbones.models))
    else:
        report = cross_validate(embedded, backbones, _head_options(args), args.folds, args.seed)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(format_report(report))
    if args.report:
        _write_json(args.report, report)
    if args.plot:
        plot_confusion(report, args.plot)
    return EXIT_OK


def cmd_watch(args: argparse.Namespace, config: Config) -> int:
    from tagger.service.watch import Watcher

    # unlike scan, a root that is not there yet (a NAS mounted later) is no error: the
    # daemon waits for it
    roots = [os.path.abspath(p) for p in (args.paths or config.library.roots)]
    if not roots:
        raise UsageError("no PATH given and no 'library.roots' in tagger.toml")
    from tagger.cli.systemd import notify_when_started

    watcher = Watcher(roots, config, workers=args.workers or 0)
    with graceful_stop() as should_stop, notify_when_started(watcher.started):
        watcher.run(should_stop)
    return EXIT_OK


def cmd_list(args: argparse.Namespace, config: Config) -> int:
    from tagger.cli.listing import cmd_list as run

    return run(args, config, _open_catalogue)


def cmd_prune(args: argparse.Namespace, config: Config) -> int:
    from tagger.cli.listing import cmd_prune as run

    return run(args, config, _open_catalogue)


def cmd_completion(args: argparse.Namespace, config: Config) -> int:
    from tagger.cli.completion import script

    sys.stdout.write(script(args.shell, build_parser()))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, config: Config) -> int:
    from tagger.cli.demo import copy_demo

    folder = copy_demo(args.folder)
    print(f"copied the demo clips to {folder}", file=sys.stderr)
    args.paths = [str(folder)]
    return cmd_scan(args, config)


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    from tagger.service.watch import format_status, read_status

    info = read_status(config)
    print(json.dumps(info, ensure_ascii=False) if args.json else format_status(info))
    return EXIT_OK if info["running"] else EXIT_FAILURES


COMMANDS: dict[str, Callable[[argparse.Namespace, Config], int]] = {
    "classify": cmd_classify,
    "scan": cmd_scan,
    "show": cmd_show,
    "stats": cmd_stats,
    "revert": cmd_revert,
    "db": cmd_db,
    "watch": cmd_watch,
    "status": cmd_status,
    "train": cmd_train,
    "eval": cmd_eval,
    "list": cmd_list,
    "prune": cmd_prune,
    "completion": cmd_completion,
    "demo": cmd_demo,
}


DESCRIPTION = """\
Genre tags for music libraries, from the musicnn CNNs: the middle 30 s of each track is cut
into ten 3-second segments, each votes for a genre, the winner is written into the file's own
tags (a genre you set is kept by default) and everything goes into a SQLite catalogue."""

EPILOG = """\
global options (before or after the command):
  --config FILE   tagger.toml to use (else $TAGGER_CONFIG, ./tagger.toml,
                  ~/.config/tagger/tagger.toml, else the built-in defaults)
  -v, --verbose   debug logging        -q, --quiet   warnings and errors only

files:
  <state_dir>/catalogue.sqlite   the catalogue (state_dir: $XDG_STATE_HOME/tagger, else
                                 ~/.local/state/tagger); backups beside it (tagger prune)
  <state_dir>/numba-cache        compiled audio kernels (made by the first run)

exit status:
  0 success, 1 some files failed, 2 usage or configuration error, 3 other error (model,
  catalogue, tag writing, another tagger is writing), 130 interrupted, 141 output pipe closed

examples:
  tagger scan ~/Music               classify and tag what is new or changed
  tagger scan --dry-run ~/Music     what would be written; writes nothing
  tagger list --low 0.35            the tracks to look at
  tagger revert ~/Music/Jazz        put back the genres tagger replaced
  eval "$(tagger completion bash)"  Tab completion

documentation: README.md, docs/queries.md, docs/watch.md, docs/training.md"""


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # SUPPRESS: a subcommand's parser leaves alone what was given before the command name
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--config", metavar="FILE", default=default, help="tagger.toml to use")
    parser.add_argument("-v", "--verbose", action="store_true", default=default or False
                        if top else argparse.SUPPRESS, help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", default=default or False
                        if top else argparse.SUPPRESS,
                        help="only warnings and errors (and a summary when files failed)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tagger", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"tagger {__version__}")
    _global_options(parser, top=True)
    common = _Parser(add_help=False)
    _global_options(common, top=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    parser.set_defaults(_commands=sub.choices)  # main() names the command in usage errors
    _add = sub.add_parser

    def add_parser(name, *, parents=(), **kwargs):
        return _add(name, parents=[common, *parents], **kwargs)

    sub.add_parser = add_parser

    model = _Parser(add_help=False)
    model.add_argument("--model", metavar="BUNDLE",
                       help="a bundle from 'tagger train' (or 'musicnn', the shipped genre map); "
                            "overrides model.bundle")

    classify = sub.add_parser("classify", parents=[model],
                              help="classify audio files and print the result")
    classify.add_argument("files", nargs="+", metavar="FILE")
    classify.add_argument("--json", action="store_true", help="one JSON object per file")

    db = _Parser(add_help=False)
    db.add_argument("--db", metavar="URL", help="catalogue URL (overrides tagger.toml)")

    scanning = _Parser(add_help=False)
    scanning.add_argument("--dry-run", action="store_true",
                          help="print existing -> proposed genre; write nothing")
    scanning.add_argument("--force", action="store_true", help="also redo unchanged files")
    scanning.add_argument("--retry-failed", action="store_true",
                          help="also retry files that failed for their content and did not "
                               "change (transient failures are always retried)")
    scanning.add_argument("--workers", type=workers_option, metavar="N",
                          help="decode worker processes")
    scanning.add_argument("--engine", choices=("local", "ray"),
                          help="where decode and inference run (cluster.engine; "
                               "docs/cluster.md)")
    scanning.add_argument("--address", metavar="ADDR",
                          help="Ray head node HOST:PORT, or 'auto' (cluster.address)")
    scanning.add_argument("--json", action="store_true",
                          help="print the summary as one JSON object (with --dry-run: and "
                               "every proposal in it)")
    scan = sub.add_parser(
        "scan", parents=[db, model, scanning], help="classify, tag and catalogue a library",
        description="Classify what is new or changed under PATHs (folders or files), write "
                    "the genres, update the catalogue. Unchanged files are skipped; files that "
                    "failed for a transient reason (worker died, timeout, permission) are "
                    "retried, the others when they change or with --retry-failed.")
    scan.add_argument("paths", nargs="*", metavar="PATH",
                      help="folders or files (default: library.roots)")

    demo = sub.add_parser("demo", parents=[db, model, scanning],
                          help="copy the shipped demo clips to FOLDER and scan them")
    demo.add_argument("folder", nargs="?", default="demo-library", metavar="FOLDER",
                      help="where to copy them (default: ./demo-library)")

    from tagger.cli.listing import add_parsers

    add_parsers(sub, [db])
    completion = sub.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=("bash", "zsh", "fish"))

    show = sub.add_parser("show", parents=[db], help="everything known about tracks")
    show.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")

    stats = sub.add_parser("stats", parents=[db], help="genre distribution, confidence, failures")
    stats.add_argument("--json", action="store_true")

    revert = sub.add_parser("revert", parents=[db], help="restore the tags tagger overwrote")
    revert.add_argument("paths", nargs="*", metavar="PATH", help="files or folders")
    revert.add_argument("--all", action="store_true", help="every file tagger ever wrote")
    revert.add_argument("--force", action="store_true",
                        help="also revert files whose genre was edited after tagger wrote it")

    dbcmd = sub.add_parser("db", parents=[db], help="catalogue schema: upgrade, current")
    dbcmd.add_argument("db_command", choices=("upgrade", "current"))

    watch = sub.add_parser("watch", parents=[db, model],
                           help="the daemon: reconcile, then tag new and changed files as they "
                                "arrive (docs/watch.md)")
    watch.add_argument("paths", nargs="*", metavar="PATH", help="default: library.roots")
    watch.add_argument("--workers", type=workers_option, metavar="N",
                       help="decode worker processes")

    status = sub.add_parser("status", parents=[db],
                            help="whether 'tagger watch' runs, its queue, counts, last error "
                                 "(exit 1 when it does not run)")
    status.add_argument("--json", action="store_true")

    learn = _Parser(add_help=False)
    learn.add_argument("source", nargs="*", metavar="DATASET",
                       help="folder with one subfolder of audio per genre; with --from-tags: "
                            "library folders to use (default: the whole catalogue)")
    learn.add_argument("--from-tags", action="store_true",
                       help="label catalogued tracks by the genre tags you set ('tagger scan' "
                            "first)")
    learn.add_argument("--min-tracks", type=int, default=5, metavar="N",
                       help="--from-tags: leave out genres with fewer tracks (default 5)")
    learn.add_argument("--map", action="append", metavar="SRC=DST",
                       help="rename a genre before use (repeatable; DST empty: drop it)")
    learn.add_argument("--genre-map", metavar="FILE", help="TOML/JSON table of SRC = DST")
    learn.add_argument("--embedding", choices=("penultimate", "pooled", "both", "tags"),
                       help="backbone features the head reads (default: pooled)")
    learn.add_argument("--head", choices=("linear", "mlp"), help="head shape (default: mlp)")
    learn.add_argument("--epochs", type=int, metavar="N")
    learn.add_argument("--seed", type=int, default=0)
    learn.add_argument("--folds", type=int, default=5, metavar="K",
                       help="k-fold cross-validation by track (train: 0 skips it)")

    train = sub.add_parser("train", parents=[db, learn],
                           help="train a genre head on labelled music; write a model bundle")
    train.add_argument("--out", required=True, metavar="BUNDLE", help="bundle folder to write")
    train.add_argument("--name", help="bundle name (default: the folder's name)")
    train.add_argument("--report", metavar="FILE.json", help="write the cross-validation report")

    evaluate = sub.add_parser("eval", parents=[db, learn, model],
                              help="accuracy on labelled music: cross-validated, or of --model")
    evaluate.add_argument("--report", metavar="FILE.json", help="write the report as JSON")
    evaluate.add_argument("--plot", metavar="FILE.png", help="draw the confusion matrix")
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


class _JournalFormatter(logging.Formatter):
    """stderr read by journald: a syslog priority prefix instead of a timestamp."""

    PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\n", "\n  ")
        return f"<{self.PRIORITY.get(record.levelno, 6)}>{text}"


def _stderr_is_journal() -> bool:
    """systemd sets $JOURNAL_STREAM to the device:inode of the stream it connected."""
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return os.environ.get("JOURNAL_STREAM") == f"{st.st_dev}:{st.st_ino}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now: the progress bar (rich) redirects it while it
    runs, so log lines appear above the bar instead of through it."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # logging.StreamHandler.__init__ assigns it
        pass


def setup_logging(level: str) -> None:
    handler = _StderrHandler()
    handler.setFormatter(_JournalFormatter("%(name)s: %(message)s") if _stderr_is_journal()
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.root.level))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (never raises for expected errors)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            args, extra = build_parser().parse_known_args(argv)
        except SystemExit as exc:  # --help / --version
            return int(exc.code or 0)
        if extra:  # said by the command's own parser, with its usage line
            command = args._commands.get(args.command)
            if command is None:
                raise UsageError(f"unrecognized arguments: {' '.join(extra)}",
                                 build_parser().format_usage())
            command.error(f"unrecognized arguments: {' '.join(extra)}")
        if not args.command:
            raise UsageError("a command is required (try 'tagger --help')",
                             build_parser().format_usage())
        config = load_config(args.config)
        if getattr(args, "db", None):
            config = dataclasses.replace(config, database=args.db)
        if getattr(args, "model", None):
            bundle = args.model if args.model == "musicnn" else os.path.abspath(
                os.path.expanduser(args.model))
            config = dataclasses.replace(config, model=dataclasses.replace(config.model,
                                                                           bundle=bundle))
        cluster = {k: v for k in ("engine", "address") if (v := getattr(args, k, None))}
        if cluster:
            config = dataclasses.replace(config, cluster=dataclasses.replace(config.cluster,
                                                                             **cluster))
        setup_logging("debug" if args.verbose else "warning" if args.quiet else config.log_level)
        from tagger.cli.progress import use_state_caches

        use_state_caches(config.state_path)  # before anything imports librosa (and numba)
        code = COMMANDS[args.command](args, config)
        sys.stdout.flush()  # here, so that a closed pipe is caught below
        return code
    except BrokenPipeError:
        # `tagger stats | head -1`: the reader has all it wanted. Point stdout at /dev/null
        # so the interpreter's final flush does not fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    except UsageError as exc:
        if exc.usage:
            sys.stderr.write(exc.usage)
        print(f"{exc.prog}: error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
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
