"""Command line: parse arguments, load the config once, run a command, map errors to exit codes
in one place (:func:`main`)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from typing import Callable, Sequence

from tagger import __version__
from tagger.cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Parser,
    UsageError,
    add_path_command,
    existing_paths,
    scan_roots,
)
from tagger.cli.learning import cmd_eval, cmd_learn, cmd_train
from tagger.cli.library import (
    cmd_db,
    cmd_list,
    cmd_prune,
    cmd_revert,
    cmd_set_genre,
    cmd_show,
    cmd_stats,
)
from tagger.cli.output import printable
from tagger.cli.retag import cmd_retag
from tagger.cli.reviewing import cmd_review
from tagger.cli.scanning import cmd_classify, cmd_demo, cmd_scan, cmd_status, cmd_watch
from tagger.config import Config, load_config, workers_option
from tagger.errors import ConfigError, TaggerError


def cmd_completion(args: argparse.Namespace, config: Config) -> int:
    from tagger.cli.completion import script

    sys.stdout.write(script(args.shell, build_parser()))
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace, Config], int]] = {
    "classify": cmd_classify,
    "scan": cmd_scan,
    "show": cmd_show,
    "stats": cmd_stats,
    "revert": cmd_revert,
    "set-genre": cmd_set_genre,
    "db": cmd_db,
    "watch": cmd_watch,
    "status": cmd_status,
    "train": cmd_train,
    "eval": cmd_eval,
    "learn": cmd_learn,
    "list": cmd_list,
    "prune": cmd_prune,
    "completion": cmd_completion,
    "demo": cmd_demo,
    "retag": cmd_retag,
    "review": cmd_review,
}

#: the commands that classify: their model is resolved once, here (tagger.service.models)
MODEL_COMMANDS = frozenset({"classify", "scan", "demo", "watch", "retag"})

#: commands that run long, alone or as a service: their log lines carry a timestamp and the
#: logger's name. The others log as "tagger: ..." lines, and those that answer at once (not
#: demo) only warnings and errors unless -v: their output says what they did.
LONG_COMMANDS = frozenset({"scan", "watch", "retag", "review", "train", "eval", "learn"})
QUICK_COMMANDS = frozenset(COMMANDS) - LONG_COMMANDS - {"demo"}


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
  <state_dir>/numba-cache        compiled kernels of the baseline's features (learn, eval)

exit status:
  0 success, 1 some files failed, 2 usage or configuration error, 3 other error (model,
  catalogue, tag writing, another tagger is writing), 130 interrupted, 141 output pipe closed

examples:
  tagger scan ~/Music               classify and tag what is new or changed
  tagger scan --dry-run ~/Music     what would be written; writes nothing
  tagger list --low 0.35            the tracks to look at
  tagger revert ~/Music/Jazz        put back the genres tagger replaced
  tagger set-genre FILE Jazz        correct a genre (a label for learning; revertible)
  tagger review                     hear, judge and correct them in the browser
  eval "$(tagger completion bash)"  Tab completion

documentation: README.md, docs/queries.md, docs/watch.md, docs/training.md,
docs/review.md"""


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # SUPPRESS: a subcommand's parser leaves alone what was given before the command name
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--config", metavar="FILE", default=default, help="tagger.toml to use")
    parser.add_argument("-v", "--verbose", action="store_true", default=default or False
                        if top else argparse.SUPPRESS, help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", default=default or False
                        if top else argparse.SUPPRESS,
                        help="only warnings and errors (and a summary when files failed)")


def _label_options(parser: argparse.ArgumentParser, *, min_tracks: str) -> None:
    """train, eval and learn: which genres the labels keep, and under which names."""
    parser.add_argument("--min-tracks", type=int, default=5, metavar="N",
                        help=f"{min_tracks} (default 5)")
    parser.add_argument("--map", action="append", metavar="SRC=DST",
                        help="rename a genre before use (repeatable; DST empty: drop it)")
    parser.add_argument("--genre-map", metavar="FILE", help="TOML/JSON table of SRC = DST")


def _head_options(parser: argparse.ArgumentParser, *, embedding: str) -> None:
    """train, eval and learn: the head trained on the backbones (``embedding``: the default
    features, as its help says it)."""
    parser.add_argument("--embedding", choices=("penultimate", "pooled", "both", "tags"),
                        help=f"backbone features the head reads (default: {embedding})")
    parser.add_argument("--head", choices=("linear", "mlp"), help="head shape (default: mlp)")
    parser.add_argument("--epochs", type=int, metavar="N")
    parser.add_argument("--seed", type=int, default=0)


def _feature_option(parser: argparse.ArgumentParser, *, auto: bool) -> None:
    """train, eval and learn: which embeddings feed the head (docs/training.md)."""
    choices = ("auto", "musicnn", "audioset", "both") if auto else ("musicnn", "audioset",
                                                                      "both")
    parser.add_argument(
        "--features", choices=choices, default="auto" if auto else "musicnn",
        help="what feeds the head: musicnn's --embedding, the content gate's AudioSet "
             "embedding (EfficientAT, 512 values), or both; "
             + ("auto (default): every set cross-validated on the same folds, musicnn kept "
                "unless another's balanced accuracy by artist is higher" if auto
                else "default musicnn"))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tagger", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"tagger {__version__}")
    _global_options(parser, top=True)
    common = Parser(add_help=False)
    _global_options(common, top=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    parser.set_defaults(_commands=sub.choices)  # main() names the command in usage errors
    _add = sub.add_parser

    def add_parser(name, *, parents=(), **kwargs):
        return _add(name, parents=[common, *parents], **kwargs)

    sub.add_parser = add_parser

    model = Parser(add_help=False)
    model.add_argument("--model", metavar="BUNDLE",
                       help="a bundle from 'tagger train' (or 'musicnn', the shipped genre map); "
                            "overrides model.bundle")

    classify = sub.add_parser("classify", parents=[model],
                              help="classify audio files and print the result")
    classify.add_argument("files", nargs="+", metavar="FILE")
    classify.add_argument("--json", action="store_true", help="one JSON object per file")

    db = Parser(add_help=False)
    db.add_argument("--db", metavar="URL", help="catalogue URL (overrides tagger.toml)")

    proposals = Parser(add_help=False)  # scan and retag: what a run would change, or did
    proposals.add_argument("--dry-run", action="store_true",
                           help="print existing -> proposed genre; change nothing")
    proposals.add_argument("--json", action="store_true",
                           help="print the summary as one JSON object (with --dry-run: and "
                                "every proposal in it)")

    scanning = Parser(add_help=False, parents=[proposals])
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
    add_path_command(
        sub, "scan", paths="folders or files (default: library.roots)",
        parents=[db, model, scanning], help="classify, tag and catalogue a library",
        description="Classify what is new or changed under PATHs (folders or files), write "
                    "the genres, update the catalogue. Unchanged files are skipped; files that "
                    "failed for a transient reason (worker died, timeout, permission) are "
                    "retried, the others when they change or with --retry-failed.")

    demo = sub.add_parser("demo", parents=[db, model, scanning],
                          help="copy the shipped demo clips to FOLDER and scan them")
    demo.add_argument("folder", nargs="?", default="demo-library", metavar="FOLDER",
                      help="where to copy them (default: ./demo-library)")

    from tagger.cli.listing import add_parsers
    from tagger.cli.retag import add_parser as add_retag

    add_parsers(sub, [db])
    add_retag(sub, [db, model, proposals])
    from tagger.cli.reviewing import add_parser as add_review

    add_review(sub, [db])
    completion = sub.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=("bash", "zsh", "fish"))

    add_path_command(sub, "show", paths="files or folders", nargs="+", parents=[db],
                     help="everything known about tracks")

    stats = sub.add_parser("stats", parents=[db], help="genre distribution, confidence, failures")
    stats.add_argument("--json", action="store_true")

    revert = add_path_command(sub, "revert", paths="files or folders", parents=[db],
                              help="restore the tags tagger overwrote")
    revert.add_argument("--all", action="store_true", help="every file tagger ever wrote")
    revert.add_argument("--force", action="store_true",
                        help="also revert files whose genre was edited after tagger wrote it")
    revert.add_argument("--corrections", action="store_true",
                        help="also revert the files you corrected (set-genre, the review "
                             "page), withdrawing those corrections; without it they are kept")

    set_genre = sub.add_parser(
        "set-genre", parents=[db],
        help="correct a track's genre: in the file (journalled, revertible) and the catalogue, "
             "as a label for learning",
        description="Write GENRE into a catalogued file (journalled: 'tagger revert' restores "
                    "the original tags) and record it as a correction: a training label that "
                    "later scans never overwrite. PATH may be a folder: every catalogued track "
                    "below it.")
    set_genre.add_argument("path", metavar="PATH", help="a catalogued file, or a folder")
    set_genre.add_argument("genre", nargs="?", metavar="GENRE",
                           help="the genre (one; 'R&B/Soul' stays one genre)")
    mode = set_genre.add_mutually_exclusive_group()
    mode.add_argument("--not-music", action="store_true",
                      help="no genre fits (speech, noise): no label, and the genre tagger wrote "
                           "is removed (yours is kept)")
    mode.add_argument("--accept", action="store_true",
                      help="the predicted genre is right: keep it as the label")
    mode.add_argument("--undo", action="store_true",
                      help="cancel the track's last correction (its tag write is reverted)")

    dbcmd = sub.add_parser("db", parents=[db], help="catalogue schema: upgrade, current")
    dbcmd.add_argument("db_command", choices=("upgrade", "current"))

    watch = add_path_command(sub, "watch", paths="default: library.roots", parents=[db, model],
                             help="the daemon: reconcile, then tag new and changed files as "
                                  "they arrive (docs/watch.md)")
    watch.add_argument("--workers", type=workers_option, metavar="N",
                       help="decode worker processes")

    status = sub.add_parser("status", parents=[db],
                            help="whether 'tagger watch' runs, its queue, counts, last error "
                                 "(exit 1 when it does not run)")
    status.add_argument("--json", action="store_true")

    learn = Parser(add_help=False)
    learn.add_argument("source", nargs="*", metavar="DATASET",
                       help="folder with one subfolder of audio per genre; with --from-tags: "
                            "library folders to use (default: the whole catalogue)")
    learn.add_argument("--from-tags", action="store_true",
                       help="label catalogued tracks by the genre tags you set ('tagger scan' "
                            "first)")
    _label_options(learn, min_tracks="--from-tags: leave out genres with fewer tracks")
    _head_options(learn, embedding="pooled")
    _feature_option(learn, auto=False)
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
    evaluate.add_argument("--group-by", choices=("artist", "album", "track"),
                          help="keep each artist (album, track) on one side of every split "
                               "(default: artist when the files carry artist or album tags); "
                               "the figures by track are reported beside")
    evaluate.add_argument("--no-baseline", dest="baseline", action="store_false",
                          help="skip the MFCC + logistic regression baseline (it decodes "
                               "each track once; cached)")
    evaluate.add_argument("--reliability", metavar="FILE.png",
                          help="draw the reliability diagram (held-out confidence)")

    learning = add_path_command(
        sub, "learn", paths="library folders to learn from (default: the whole catalogue)",
        parents=[db],
        help="learn a genre head from your library's own genres; compare, calibrate, adopt",
        description="Train a head on the genres you set in your files (and your corrections; "
                    "never the genres tagger wrote), report it against the default genre "
                    "map on the same folds, grouped by artist, calibrate the confidence, "
                    "and with --adopt make it the library's model (docs/training.md).")
    _label_options(learning, min_tracks="leave out genres with fewer labelled tracks")
    learning.add_argument("--folds", type=int, default=5, metavar="K",
                          help="k-fold cross-validation (default 5)")
    learning.add_argument("--group-by", choices=("artist", "album", "track"), default="artist",
                          help="what each split keeps on one side (default: artist, then "
                               "album, then the track, where the tags lack them)")
    learning.add_argument("--baseline", action="store_true",
                          help="also the MFCC + logistic regression baseline (decodes every "
                               "track once; cached)")
    learning.add_argument("--calibration", choices=("isotonic", "temperature"),
                          help="how confidence is calibrated (default: temperature)")
    learning.add_argument("--target-precision", type=float, metavar="P",
                          help="for the auto threshold (default: tags.target_precision)")
    _head_options(learning, embedding="penultimate, what scan caches")
    _feature_option(learning, auto=True)
    learning.add_argument("--adopt", action="store_true",
                          help="write the head under the state directory and make it the "
                               "library's model")
    learning.add_argument("--name", default="library", help="the adopted model's name")
    learning.add_argument("--report", metavar="FILE.json", help="write the figures as JSON")
    learning.add_argument("--plot", "--reliability", dest="plot", metavar="FILE.png",
                          help="draw the reliability diagrams")
    return parser


class _PrintableFormatter(logging.Formatter):
    """Log messages with what a file controls (names, tags) made :func:`printable`: one line
    each, no terminal escape; a traceback after them keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


class _JournalFormatter(_PrintableFormatter):
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


class _PlainFormatter(_PrintableFormatter):
    """A short command's log lines, as its other messages: ``tagger: [level: ]message``."""

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"tagger: {level}{super().format(record)}"


def setup_logging(level: str, *, timestamps: bool = True) -> None:
    handler = _StderrHandler()
    handler.setFormatter(_JournalFormatter("%(name)s: %(message)s") if _stderr_is_journal()
                         else _PrintableFormatter("%(asctime)s %(levelname)s %(name)s: "
                                                  "%(message)s")
                         if timestamps else _PlainFormatter("%(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.root.level))


def _log_level(args: argparse.Namespace, config: Config) -> str:
    if args.verbose:
        return "debug"
    if args.quiet or (args.command in QUICK_COMMANDS and config.log_level == "info"):
        return "warning"
    return config.log_level


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
                top = build_parser()
                raise UsageError(top.unknown_options(extra), top.format_usage())
            command.error(command.unknown_options(extra))
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
        # a path that is not there is said at once, before the model's libraries load
        if args.command == "classify":
            existing_paths(args.files, "tagger classify")
        elif args.command == "scan":
            scan_roots(args, config)
        if args.command in MODEL_COMMANDS:  # --model, model.bundle, the adopted one, default
            from tagger.service.models import resolve_model

            args.model_choice = resolve_model(config, explicit=bool(getattr(args, "model", None)))
            config = args.model_choice.config
        cluster = {k: v for k in ("engine", "address") if (v := getattr(args, k, None))}
        if cluster:
            config = dataclasses.replace(config, cluster=dataclasses.replace(config.cluster,
                                                                             **cluster))
        setup_logging(_log_level(args, config),
                      timestamps=args.verbose or args.command in LONG_COMMANDS)
        from tagger.cli.progress import use_state_caches

        # before anything imports librosa (and numba)
        use_state_caches(config.state_path, create=not getattr(args, "dry_run", False))
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
        print(printable(f"{exc.prog}: error: {exc.message}"), file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(printable(f"tagger: error: {exc}"), file=sys.stderr)
        return EXIT_USAGE
    except TaggerError as exc:
        print(printable(f"tagger: error: {exc}"), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("tagger: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def main_entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
