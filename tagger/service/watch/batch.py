"""Files that settled, through the scan engine: the daemon's only path to the model.

The runner drops what did not change (tagger's own tag write, a read, a touch: the size and
mtime equal the catalogue's row), hands the rest to the engine in batches, and takes back a
file that fails to decode while young (it may still be arriving). It drives the engine only
through its public API (:func:`make_engine`, :class:`EngineHooks`, ``process``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import time
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from tagger.config import Config
from tagger.errors import TaggerError
from tagger.library.discover import FoundFile
from tagger.results import IN_MOTION
from tagger.service.albums import decide_albums
from tagger.service.engine import Engine, ScanEngine, make_engine
from tagger.service.lifetime import use_private_temp
from tagger.service.model_process import ModelProcess
from tagger.service.recorder import EngineHooks, Summary
from tagger.service.watch.roots import Roots
from tagger.service.watch.settle import SettleQueue, Taken
from tagger.service.workers import WorkItem

log = logging.getLogger(__name__)

BATCH_MAX = 256  # files handed to the engine at once (moves and deletions wait no longer)


class BatchCountdown:
    """The engine's progress sink for one batch: how many of its files are not done yet."""

    def __init__(self, total: int = 0):
        self.remaining = total

    def advance(self, count: int = 1) -> None:
        self.remaining = max(0, self.remaining - count)

    def close(self) -> None:
        self.remaining = 0


class BatchRunner:
    """Takes settled files from ``queue`` and runs them through one engine."""

    def __init__(self, config: Config, queue: SettleQueue, roots: Roots, summary: Summary,
                 should_stop: Callable[[], bool]):
        self.config, self.queue, self.roots, self.summary = config, queue, roots, summary
        self.should_stop = should_stop
        self.young_s = max(2 * config.watch.settle_seconds, 1.0)
        self.catalogue = None  # set when the daemon opens it
        self.engine: ScanEngine | None = None
        self.batch = BatchCountdown()
        self.found = self.unchanged = self.deferred = 0
        self._taken_at = 0.0
        self.last_run = time.monotonic()  # when the engine last had files (or was made)
        self.released = False  # the engine's processes were stopped while idle

    def start_engine(self, catalogue, *, classifier=None, workers: int = 0,
                     recorded: Callable[[str], None] | None = None) -> ScanEngine:
        """Make the engine ``cluster.engine`` selects, writing tags only inside the roots.
        The local engine's model runs in a process of its own (unless ``classifier`` is
        given), which :meth:`release_when_idle` stops."""
        self.catalogue = catalogue
        if classifier is None and self.config.cluster.engine == "local":
            use_private_temp(self.config.state_path)  # before the fork server starts
            classifier = ModelProcess(self.config)
        # a daemon says what it did to each file
        hooks = EngineHooks(defer_failure=self.defer, recorded=recorded,
                            tagged_log_level=logging.INFO)
        self.engine = make_engine(self.config, catalogue, classifier=classifier,
                                  workers=workers, hooks=hooks)
        self.engine.recorder.use_roots(self.roots.roots)
        self.last_run, self.released = time.monotonic(), False
        return self.engine

    def release_when_idle(self, idle_s: float) -> None:
        """Stop the local engine's processes (decode workers, their fork server, the model
        process) once it has had no files for ``idle_s`` (0: never)."""
        if (idle_s <= 0 or self.released or not isinstance(self.engine, Engine)
                or time.monotonic() - self.last_run < idle_s):
            return
        self.engine.release()
        self.released = True
        log.info("idle for %.0f s: the model and the decode workers are stopped (started "
                 "again by the next file)", idle_s)

    @property
    def in_batch(self) -> int:
        """Files of the batch being processed that are not done yet."""
        return self.batch.remaining

    def queue_retries(self) -> None:
        """Put the failed files whose backoff (``retry_base_seconds`` x 2^attempts) is over
        back in the queue, up to ``retry_max_attempts``."""
        base, limit = self.config.watch.retry_base_seconds, self.config.watch.retry_max_attempts
        if limit <= 0:
            return
        now = dt.datetime.now(dt.timezone.utc)
        queued = self.queue.waiting()
        for failure in self.catalogue.failures(max_attempts=limit):
            if failure.path in queued or self.roots.root_of(failure.path) is None:
                continue
            delay = base * 2 ** max(failure.attempts - 1, 0)
            last = failure.last_scanned
            if last is None or (now - last).total_seconds() >= delay:
                log.info("retrying %s (attempt %d of %d)", failure.path, failure.attempts + 1,
                         limit)
                self.queue.touch(failure.path, retry=True,
                                 since=time.monotonic() - self.queue.settle)

    def process_ready(self) -> None:
        """Process one batch of settled files, if any."""
        taken = self.queue.take_ready(BATCH_MAX)
        if not taken:
            return
        try:
            self._process(taken)
        except (TaggerError, KeyboardInterrupt):
            since = time.monotonic()  # not lost: back to the table, tried again later
            for path, _, retry in taken:
                self.queue.touch(path, retry=retry, since=since)
            raise
        except Exception as exc:  # a bug: log it, fail these files (retried with backoff)
            error = f"internal error: {type(exc).__name__}: {exc}"
            log.exception("%s (while processing %d files: they are marked failed)", error,
                          len(taken))
            self._fail_unfinished([p for p, _, _ in taken], error)

    def defer(self, item: WorkItem) -> bool:
        """The engine's ``defer_failure``: a file that failed to decode goes back to the
        table if it may still be arriving (in motion, young when taken, or changed since)."""
        if item.kind in IN_MOTION:  # its writer's close, or the settle time, ends the wait
            self.deferred += 1
            log.info("%s: %s; will look again", item.path, item.error)
            self.queue.touch(item.path)
            return True
        try:
            st = os.stat(item.path)
        except FileNotFoundError:
            return True  # gone meanwhile: its deletion event handles it
        except OSError:
            return False
        # young when taken (decoding may take a while on a busy machine)
        young = self._taken_at - st.st_mtime < self.young_s
        changed = (st.st_size, st.st_mtime_ns) != (item.size, item.mtime_ns)
        if not (young or changed):
            return False
        self.deferred += 1
        log.info("%s: %s; %s, will try again", item.path, item.error,
                 "changed meanwhile" if changed else "still young")
        self.queue.touch(item.path)
        return True

    def _albums(self):
        """Hold the batch's tracks for their albums' decisions (as a scan does), with
        ``tags.scope = "album"``."""
        if self.config.tags.scope != "album":
            return contextlib.nullcontext()
        return self.engine.recorder.holding_albums()

    def _fail_unfinished(self, paths: list[str], error: str) -> None:
        states = self.catalogue.file_states(paths)
        with self.catalogue.batch():
            for path, (size, mtime_ns, status) in states.items():
                if status == "pending":
                    self.catalogue.record_failure(path, error, size=size, mtime_ns=mtime_ns)
                    self.summary.failures[error] += 1

    def _process(self, taken: list[Taken]) -> None:
        states = self.catalogue.file_states(p for p, _, _ in taken)
        todo: list[FoundFile] = []
        found: list[str] = []
        for path, (size, mtime_ns), retry in taken:
            row = states.get(path)
            settled = False
            if row is not None and (row[0], row[1]) == (size, mtime_ns):
                status = row[2]
                settled = status in ("done", "not_music", "skipped")  # read at rest
                if settled or (status == "failed" and not retry):
                    self.unchanged += 1  # our own tag write, a read, a touch: nothing new
                    log.debug("%s: unchanged", path)
                    continue
                if status == "missing":
                    found.append(path)
                    continue
            todo.append(FoundFile(path, size, mtime_ns, settled))
        with self.catalogue.batch():
            if found:
                self.found += self.catalogue.mark_found(found)
                log.info("%d missing tracks are back, unchanged", len(found))
            if todo:
                self.catalogue.mark_pending_many((f.path, f.size, f.mtime_ns, None) for f in todo)
        if todo:
            self._run_engine(todo)

    def _run_engine(self, todo: list[FoundFile]) -> None:
        if self.released:
            log.info("%d file%s to classify: starting the model and the decode workers",
                     len(todo), "" if len(todo) == 1 else "s")
            self.released = False
        self.batch = BatchCountdown(len(todo))
        self._taken_at = time.time()
        log.debug("processing %d files", len(todo))
        try:
            with self._albums() as book:
                self.engine.process(todo, self.summary, self.batch, self.should_stop)
                if book:  # a track joining an album re-decides it (tags.scope = album)
                    decide_albums(self.engine.recorder, book, self.summary,
                                  model=self.engine.model_info,
                                  classifier=self.engine.classifier
                                  if isinstance(self.engine, Engine) else None)
        except BrokenProcessPool as exc:
            log.error("a decode worker died (%s): restarting the workers", exc)
            self.engine.close()
            since = time.monotonic()
            for f in todo:
                self.queue.touch(f.path, since=since)
        finally:
            self.batch.close()
            self.summary.interrupted = False
            self.last_run = time.monotonic()
