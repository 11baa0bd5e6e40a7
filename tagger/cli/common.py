"""What every command shares: exit codes, usage errors, the catalogue, the roots, Ctrl-C.

Exit codes: 0 success; 1 some files failed; 2 usage or configuration error; 3 any other
tagger error (model, catalogue, tag writing); 130 interrupted; 141 the output pipe closed.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from typing import Callable, Iterator

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


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # argparse would exit(2) itself; keep one exit path
        raise UsageError(message, self.format_usage(), self.prog)


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


def scan_roots(args: argparse.Namespace, config: Config) -> list[str]:
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


def catalogue_location(config: Config) -> str:
    from tagger.library.catalogue import safe_url

    url = config.database_url
    return url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else safe_url(url)
