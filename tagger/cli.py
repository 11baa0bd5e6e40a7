"""Command line: parse arguments, load the config once, run a command, map errors to exit codes.

Exit codes: 0 success; 1 some files failed; 2 usage or configuration error; 3 any other
tagger error (model, catalogue, tag writing); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
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


COMMANDS: dict[str, Callable[[argparse.Namespace, Config], int]] = {
    "classify": cmd_classify,
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
    return parser


def setup_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


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
