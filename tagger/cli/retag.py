"""``tagger retag``: predict every catalogued track again under the current model, from the
cached embeddings (no decode), and apply the tag policy (docs/training.md)."""

from __future__ import annotations

import argparse
import json

from tagger.cli.common import (
    EXIT_FAILURES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    add_path_command,
    catalogue_location,
    graceful_stop,
    run_catalogue,
)
from tagger.config import Config


def add_parser(sub, parents) -> None:
    add_path_command(
        sub, "retag", paths="files or folders (default: all)", parents=parents,
        help="predict the catalogued tracks again under the current model and retag them "
             "(no decode)",
        description="Re-predict every catalogued track (below PATHs: files or folders; "
                    "default: all) from the embeddings its scan cached, under the current "
                    "model (--model, model.bundle, else the adopted one, else the genre map), "
                    "record the predictions and write the genres: a genre tagger wrote may "
                    "be replaced, an untagged file is filled, a genre you set or corrected "
                    "is never touched. Nothing is decoded: tracks without cached embeddings "
                    "are listed as needing a scan.")


def cmd_retag(args: argparse.Namespace, config: Config) -> int:
    import os
    import sys

    from tagger.cli.output import format_proposal, printable, retag_lines
    from tagger.model.classify import Classifier
    from tagger.service.retag import RetagSummary, retag

    paths = [os.path.abspath(os.path.expanduser(p)) for p in args.paths] or None
    proposals: list[dict] = []

    def propose(proposal: dict) -> None:
        if args.json:
            proposals.append(proposal)
        else:
            print(format_proposal(proposal), flush=True)

    if not args.quiet:
        print(printable(f"{'dry run: ' if args.dry_run else ''}retag; catalogue "
                        f"{catalogue_location(config)}"), file=sys.stderr)
    with graceful_stop() as should_stop, \
            run_catalogue(config, "tagger retag", dry_run=args.dry_run) as catalogue:
        if catalogue is None:  # a dry run before the first scan: nothing catalogued to retag
            summary = RetagSummary(dry_run=True)
        else:
            summary = retag(config, catalogue, Classifier(config), paths, dry_run=args.dry_run,
                            on_proposal=propose if args.dry_run else None,
                            should_stop=should_stop)
    if args.json:
        out = summary.as_dict()
        if args.dry_run:
            out["proposals"] = proposals
        print(json.dumps(out, ensure_ascii=False))
    else:
        print("\n".join(retag_lines(summary)))
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILURES if summary.tags.failed else EXIT_OK
