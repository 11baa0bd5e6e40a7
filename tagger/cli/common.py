"""What every command shares: exit codes, usage errors, the catalogue, the roots, Ctrl-C.

Exit codes: 0 success; 1 some files failed; 2 usage or configuration error; 3 any other
tagger error (model, catalogue, tag writing); 130 interrupted; 141 the output pipe closed.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import logging
import os
import signal
import sys
from typing import Callable, Iterable, Iterator, Sequence

from tagger.config import Config
from tagger.errors import ConfigError

EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `head` leaves a shell pipeline's writer with

log = logging.getLogger("tagger")


class UsageError(ConfigError):
    """A command-line usage error (exit 2); ``usage`` is the parser's usage line, if any."""

    def __init__(self, message: str, usage: str = "", prog: str = "tagger"):
        super().__init__(message)
        self.usage, self.prog = usage, prog


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The one of ``choices`` closest to a mistyped ``word`` (difflib), if any is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # argparse would exit(2) itself; keep one exit path
        raise UsageError(message, self.format_usage(), self.prog)

    # argparse's one hook for a value outside ``choices`` (a command, a shell): it has no
    # public way to add a suggestion before Python 3.14
    def _check_value(self, action, value):
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError:
            guess = did_you_mean(value, action.choices) if isinstance(value, str) else None
            if guess is None:
                raise
            options = ", ".join(map(repr, action.choices))
            raise argparse.ArgumentError(action, f"invalid choice: {value!r}, did you mean "
                                                 f"{guess!r}? (choose from {options})") from None

    def unknown_options(self, extra: Sequence[str]) -> str:
        """The "unrecognized arguments" message for ``extra``, with a "did you mean" for a
        mistyped option of this parser."""
        options = [o for a in self._actions for o in a.option_strings]
        hints = [f"{word} (did you mean {guess}?)"
                 if word.startswith("--") and (guess := did_you_mean(word.split("=")[0],
                                                                     options))
                 else word for word in extra]
        return f"unrecognized arguments: {' '.join(hints)}"


def add_path_command(sub, name: str, *, paths: str, nargs: str = "*",
                     **kwargs) -> argparse.ArgumentParser:
    """The parser of a command that works on PATHs, files or folders (``args.paths``;
    ``paths`` is their help); the rest as ``sub.add_parser`` takes it."""
    parser = sub.add_parser(name, **kwargs)
    parser.add_argument("paths", nargs=nargs, metavar="PATH", help=paths)
    return parser


def catalogue_of(config: Config):
    from tagger.library.catalogue import open_catalogue

    catalogue = open_catalogue(config.database_url)
    if catalogue.upgraded_from not in (None, catalogue.revision):
        log.info("catalogue upgraded from schema %s to %s", catalogue.upgraded_from,
                 catalogue.revision)
    return catalogue


@contextlib.contextmanager
def run_catalogue(config: Config, command: str, *, dry_run: bool) -> Iterator:
    """The catalogue a scan or retag works on. A real run holds the writer lock (``command``
    names it for whoever finds it taken); a dry run writes nothing at all, not even a new or
    upgraded catalogue: it reads the catalogue when it is current, else gets None."""
    from tagger.library.catalogue import current, head
    from tagger.library.lock import WriterLock

    if dry_run:
        if current(config.database_url) != head():
            yield None
        else:
            with catalogue_of(config) as catalogue:
                yield catalogue
        return
    with WriterLock(config.state_path, config.database_url, command) as lock, \
            catalogue_of(config) as catalogue:
        lock.guard(catalogue)
        yield catalogue


def existing_paths(paths: Sequence[str], prog: str = "tagger") -> list[str]:
    """``paths`` made absolute; a usage error (exit 2) names the first that is not there, or
    is neither a folder nor a file, the same way for every command that takes PATHs."""
    absolute = [os.path.abspath(os.path.expanduser(p)) for p in paths]
    for path in absolute:
        if not os.path.exists(path):
            raise UsageError(f"{path}: does not exist", prog=prog)
        if not (os.path.isdir(path) or os.path.isfile(path)):
            raise UsageError(f"{path}: neither a folder nor a file", prog=prog)
    return absolute


def scan_roots(args: argparse.Namespace, config: Config) -> list[str]:
    """The folders (or single files) to scan: given, or ``library.roots``."""
    roots = args.paths or config.library.roots
    if not roots:
        raise UsageError("no PATH given and no 'library.roots' in tagger.toml")
    return existing_paths(roots)


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


def catalogue_location(config: Config) -> str:
    from tagger.library.catalogue import safe_url

    url = config.database_url
    return url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else safe_url(url)
