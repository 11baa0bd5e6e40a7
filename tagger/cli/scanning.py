"""Commands that classify: ``classify``, ``scan``, ``demo``, ``watch`` and ``status``."""

from __future__ import annotations

import argparse
import json
import os
import sys

from tagger.cli.common import (
    EXIT_FAILURES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    catalogue_location,
    catalogue_of,
    graceful_stop,
    run_catalogue,
    scan_roots,
)
from tagger.cli.output import (
    format_proposal,
    format_row,
    printable,
    printable_lines,
    result_to_json,
    summary_lines,
)
from tagger.config import Config


def cmd_classify(args: argparse.Namespace, config: Config) -> int:
    from tagger.service.classify import classify_files

    failed = 0
    width = min(48, max(len(printable(p)) for p in args.files))
    if not args.json:
        print(f"{'FILE':<{width}}  {'GENRE':<14} {'CONF':>5} {'VOTES':<6}  NOTES")
    for result in classify_files(config, args.files):  # an error: in its row, said once
        failed += result.error is not None
        if args.json:
            print(json.dumps(result_to_json(result), ensure_ascii=False), flush=True)
        else:
            print(format_row(result, width), flush=True)
    return EXIT_FAILURES if failed else EXIT_OK


def cmd_scan(args: argparse.Namespace, config: Config) -> int:
    from tagger.cli.progress import ScanDisplay
    from tagger.service.scan import scan

    roots = scan_roots(args, config)
    display = ScanDisplay(quiet=args.quiet)
    display.say(f"{'dry run: ' if args.dry_run else ''}scanning {', '.join(roots)}; catalogue "
                f"{catalogue_location(config)}")
    proposals: list[dict] = []
    options = dict(force=args.force, workers=args.workers or 0, retry_failed=args.retry_failed,
                   progress=display, on_phase=display.phase)
    with graceful_stop() as should_stop:
        try:
            with run_catalogue(config, "tagger scan", dry_run=args.dry_run) as catalogue:
                if args.dry_run:
                    options["on_proposal"] = (proposals.append if args.json else
                                              lambda p: print(format_proposal(p), flush=True))
                summary = scan(roots, config, catalogue, dry_run=args.dry_run,
                               should_stop=should_stop, **options)
        finally:
            display.close()
    if args.json:
        out = summary.as_dict()
        if args.dry_run:
            out["proposals"] = proposals
        print(json.dumps(out, ensure_ascii=False))
    elif not args.quiet or summary.failed or summary.interrupted:
        rate = display.rate if summary.classified else None
        print("\n".join(summary_lines(summary, rate)))
    if summary.interrupted:
        return EXIT_INTERRUPTED
    # files still being written are left for the next run: not a failure of the run
    return EXIT_FAILURES if summary.failed > summary.in_motion else EXIT_OK


def cmd_demo(args: argparse.Namespace, config: Config) -> int:
    from tagger.cli.demo import copied_line, copy_demo, demo_report

    folder, copied = copy_demo(args.folder)
    print(copied_line(folder, copied), file=sys.stderr)
    args.paths = [str(folder)]
    code = cmd_scan(args, config)
    if args.json or args.quiet or args.dry_run or code == EXIT_INTERRUPTED:
        return code
    with catalogue_of(config) as catalogue:
        records = [r for p in sorted(catalogue.known_files([str(folder)]))
                   if (r := catalogue.track(p)) is not None and r.status != "missing"]
    options = [*(["--config", args.config] if args.config else []),
               *(["--db", args.db] if args.db else [])]
    print("\n".join(demo_report(records, folder, args.folder, config.tags.genre_case,
                                 options)))
    return code


def cmd_watch(args: argparse.Namespace, config: Config) -> int:
    from tagger.service.watch import Watcher

    # unlike scan, a root that is not there yet (a NAS mounted later) is no error: the
    # daemon waits for it
    roots = [os.path.abspath(p) for p in (args.paths or config.library.roots)]
    if not roots:
        raise UsageError("no PATH given and no 'library.roots' in tagger.toml")
    from tagger.cli.systemd import notify_when_started
    from tagger.service.models import ModelSource

    choice = getattr(args, "model_choice", None)
    follow = choice is None or choice.source in (ModelSource.DEFAULT, ModelSource.ADOPTED)
    watcher = Watcher(roots, config, workers=args.workers or 0, follow_adoption=follow)
    with graceful_stop() as should_stop, notify_when_started(watcher.started):
        watcher.run(should_stop)
    return EXIT_OK


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    from tagger.service.watch import format_status, read_status

    info = read_status(config)
    info["model"] = _model_in_use(config)
    if args.json:
        print(json.dumps(info, ensure_ascii=False))
    else:
        print(printable_lines(format_status(info)))
        print(printable(f"model: {info['model']['describe']}"))
    return EXIT_OK if info["running"] else EXIT_FAILURES


def _model_in_use(config: Config) -> dict:
    """Which model scan, watch and retag use now, and why (tagger.service.models)."""
    from tagger.errors import TaggerError
    from tagger.service.models import resolve_model

    try:
        choice = resolve_model(config)
    except TaggerError as exc:
        return {"source": "error", "bundle": config.model.bundle, "describe": str(exc)}
    return {"source": choice.source.value, "bundle": choice.bundle,
            "describe": choice.describe()}
