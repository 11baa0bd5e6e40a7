"""Commands on the catalogue: ``show``, ``stats``, ``revert``, ``set-genre``, ``db``, ``list``,
``prune``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

from tagger.cli.common import (
    EXIT_FAILURES,
    EXIT_OK,
    UsageError,
    catalogue_of,
    existing_paths,
    log,
)
from tagger.cli.output import format_track, printable
from tagger.config import Config


def cmd_show(args: argparse.Namespace, config: Config) -> int:
    records = []
    with catalogue_of(config) as catalogue:
        for p in args.paths:
            path = os.path.abspath(os.path.expanduser(p))
            if os.path.isdir(path):  # a folder: every catalogued track below it, as revert
                below = sorted(catalogue.known_files([path]))
                if not below:
                    records.append((p, None))
                records += [(q, catalogue.track(q)) for q in below]
            else:
                records.append((p, catalogue.track(path)))
        corrections = {record.path: catalogue.correction_in_force(record.path)
                       for _, record in records if record is not None}
    missing = 0
    for path, record in records:
        if record is None:
            print(f"{printable(path)}: not in the catalogue")
            missing += 1
            continue
        print(format_track(record, corrections.get(record.path)))
    return EXIT_FAILURES if missing else EXIT_OK


def cmd_stats(args: argparse.Namespace, config: Config) -> int:
    with catalogue_of(config) as catalogue:
        stats = catalogue.stats()
    if args.json:
        print(json.dumps(dataclasses.asdict(stats), default=str))
        return EXIT_OK
    print(f"{stats.total} tracks: " + ", ".join(
        f"{n} {status}" for status, n in stats.status_counts.items() if n))
    print(f"{stats.predicted} with a genre"
          + (f" ({stats.corrected} of them the genre you gave)" if stats.corrected else "")
          + (f", {stats.not_music} not music" if stats.not_music else "")
          + f", {stats.ties} ties")
    if stats.albums:
        print(f"{stats.albums} albums" + (f" ({stats.albums_per_track} of them compilations, "
                                          "each track its own genre)"
                                          if stats.albums_per_track else ""))
    counted = sum(count for _, count in stats.genres)
    for genre, count in stats.genres:
        share = count / counted if counted else 0
        print(f"  {printable(genre):<16} {count:>7}  {share:6.1%}  {'#' * round(40 * share)}")
    if stats.confidence:
        c = stats.confidence
        print(f"confidence: min {c.min:.2f}  q1 {c.q1:.2f}  median {c.median:.2f}  "
              f"q3 {c.q3:.2f}  max {c.max:.2f}")
    if stats.failures:
        print("not classified:")
        for status, reason, count in stats.failures[:10]:
            print(f"  {count:>6} {status}: {printable(reason)}")
    return EXIT_OK


def cmd_revert(args: argparse.Namespace, config: Config) -> int:
    from tagger.library.journal import revert
    from tagger.library.lock import WriterLock

    if not args.all and not args.paths:
        raise UsageError("give PATHs or --all", prog="tagger revert")
    paths = None if args.all else existing_paths(args.paths, "tagger revert")
    with WriterLock(config.state_path, config.database_url, "tagger revert") as lock, \
            catalogue_of(config) as catalogue:
        lock.guard(catalogue)
        report = revert(catalogue, paths, roots=config.library.roots, force=args.force,
                        corrections=args.corrections)
    for path, why in report.refused:
        log.error("%s: %s", path, why)
    failed = len(report.refused)
    print(f"restored the original tags of {_files(report.restored)}"
          + (f", {failed} failed" if failed else ""))
    if report.withdrawn:
        print(f"withdrew {report.withdrawn} correction{'s' * (report.withdrawn != 1)} of "
              "yours with them (no longer labels for learning)")
    if report.kept_corrected:
        print(f"kept {_files(len(report.kept_corrected))} you corrected (set-genre, the "
              "review page) as they are: 'tagger revert --corrections' reverts them too")
    return EXIT_FAILURES if failed else EXIT_OK


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _correction_line(result) -> str:
    before = "; ".join(result.previous) or "(no genre)"
    after = "; ".join(result.genres) or "(no genre)"
    what = {"set_genre": f"genre {result.genre}", "accept": f"accepted {result.genre}",
            "not_music": "not music", "undo": "last correction undone"}[result.action.value]
    change = f"{before} -> {after}" if result.written else f"file unchanged ({after})"
    return printable(f"{result.path}: {what}; {change}")


def cmd_set_genre(args: argparse.Namespace, config: Config) -> int:
    from tagger.errors import ReadError, WriteError
    from tagger.library.corrections import CorrectionRefused, apply_correction
    from tagger.library.genres import typed_genre_problem
    from tagger.library.lock import WriterLock
    from tagger.results import CorrectionAction

    action = (CorrectionAction.NOT_MUSIC if args.not_music else
              CorrectionAction.ACCEPT if args.accept else
              CorrectionAction.UNDO if args.undo else CorrectionAction.SET_GENRE)
    prog = "tagger set-genre"
    if action is CorrectionAction.SET_GENRE and not (args.genre or "").strip():
        raise UsageError("give a GENRE (or --not-music, --accept, --undo)", prog=prog)
    if args.genre and (problem := typed_genre_problem(args.genre)):
        raise UsageError(f"GENRE: {problem}", prog=prog)
    if action in (CorrectionAction.NOT_MUSIC, CorrectionAction.UNDO) and args.genre:
        raise UsageError(f"--{action.value.replace('_', '-')} takes no GENRE", prog=prog)
    target = os.path.abspath(os.path.expanduser(args.path))
    failed = 0
    with WriterLock(config.state_path, config.database_url, prog) as lock, \
            catalogue_of(config) as catalogue:
        lock.guard(catalogue)
        if os.path.isdir(target):  # a folder: every catalogued track below it, as revert
            paths = sorted(p for p, (_, _, status) in catalogue.known_files([target]).items()
                           if status != "missing")
            if not paths:
                raise UsageError(f"{target}: no catalogued tracks below it", prog=prog)
        else:
            paths = [target]
        for path in paths:
            try:
                result = apply_correction(config, catalogue, path, action, args.genre,
                                          source="cli")
            except (CorrectionRefused, ReadError) as exc:
                log.error("%s", exc)
                failed += 1
                continue
            except WriteError as exc:
                if exc.path != path:  # the catalogue, not the file: stop
                    raise
                log.error("%s", exc)
                failed += 1
                continue
            print(_correction_line(result))
    return EXIT_FAILURES if failed else EXIT_OK


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


def cmd_list(args: argparse.Namespace, config: Config) -> int:
    from tagger.cli.listing import cmd_list as run

    return run(args, config, catalogue_of)


def cmd_prune(args: argparse.Namespace, config: Config) -> int:
    from tagger.cli.listing import cmd_prune as run

    return run(args, config, catalogue_of)
