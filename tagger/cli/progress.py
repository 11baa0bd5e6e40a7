"""What a person sees while a scan runs: a start-up line, then progress from the first second.

On a terminal a `rich` bar (files, rate, ETA) on stderr; otherwise plain log lines every
10 s, so journald and redirected output stay readable. Loading the model takes a few seconds:
it is said before it starts, so nothing looks hung.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

from tagger.cli.output import printable

log = logging.getLogger("tagger")

NUMBA_CACHE = "numba-cache"


def use_state_caches(state_dir: Path, *, create: bool = True) -> None:
    """Point numba's cache under the state directory, before librosa is imported anywhere
    (``learn`` and ``eval``'s baseline features; the decode stack does without it). A cache
    dir the user set themselves is left alone. ``create``
    False (a dry run) and no state directory yet: a private temporary cache, removed at exit,
    so that a dry run on a fresh machine leaves nothing behind."""
    if "NUMBA_CACHE_DIR" in os.environ:
        folder = Path(os.environ["NUMBA_CACHE_DIR"])
    else:
        folder = state_dir / NUMBA_CACHE
        if not create and not state_dir.exists():
            folder = Path(tempfile.mkdtemp(prefix="tagger-numba-"))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
        os.environ["NUMBA_CACHE_DIR"] = str(folder)


class ScanDisplay:
    """The scan's voice: phases ("loading", "classifying") and per-file progress. Called
    with the total, it is the engine's progress sink (``tagger.service.recorder.ProgressSink``):
    the service never prints, the CLI decides what a person sees."""

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False,
                 interval_s: float = 10.0, label: str = "classifying"):
        self.stream = stream or sys.stderr
        self.label = label
        self.quiet, self.interval_s = quiet, interval_s
        self.tty = _isatty(self.stream)
        self._progress = None
        self._task = None
        self.total = self.done = 0
        self.started = self.last = self.finished = time.monotonic()

    @property
    def rate(self) -> float | None:
        """Files per second from the first file's start to the last file's end: the model's
        loading and a first run's compiling left out; None before a file is done."""
        return self.done / max(self.finished - self.started, 1e-9) if self.done else None

    def say(self, text: str) -> None:
        if not self.quiet:
            print(f"tagger: {printable(text)}", file=self.stream, flush=True)

    def phase(self, name: str) -> None:
        if name == "loading":
            self.say("loading the model and starting the workers")

    def __call__(self, total: int) -> ScanDisplay:  # scan(progress=...) calls this
        self.total, self.done = total, 0
        self.started = self.last = self.finished = time.monotonic()
        if self.tty and not self.quiet:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn(self.label), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                TimeRemainingColumn(), console=Console(file=self.stream), transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("scan", total=total, rate="")
        return self

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = self.finished = time.monotonic()
        rate = self.done / max(now - self.started, 1e-9)
        if self._progress is not None:
            self._progress.update(self._task, advance=count, rate=f"{rate:.2f} files/s")
        elif not self.quiet and (now - self.last >= self.interval_s or self.done == self.total):
            eta = (self.total - self.done) / rate if rate else 0
            log.info("progress: %d/%d files, %.2f files/s, ETA %s", self.done, self.total,
                     rate, _clock(eta))
            self.last = now

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
