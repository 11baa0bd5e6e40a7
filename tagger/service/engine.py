"""The local engine: a process pool of workers feeding this process's classifier, and
:func:`make_engine`, which picks it or the Ray engine."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.forkserver
import os
import sys
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Callable, Iterable, Protocol

from tagger.config import Config
from tagger.errors import TaggerError
from tagger.library.discover import FoundFile
from tagger.results import FailureKind, ModelInfo
from tagger.service.lifetime import kill_workers, pool_pids, stop_pool, use_private_temp
from tagger.service.policy import use_calibration
from tagger.service.recorder import EngineHooks, ProgressSink, Recorder, Summary
from tagger.service.workers import WorkItem, prepare_file, worker_context, worker_init, worker_ready

if TYPE_CHECKING:  # torch loads only where a classifier is built
    from tagger.model.classify import Classifier

log = logging.getLogger(__name__)


#: beyond ``decode.timeout_seconds``, what hashing and cutting one file may take at most
STUCK_MARGIN_S = 30.0


# ---------------------------------------------------------------- the engine


class Engine:
    """Processes files end to end; the only object that writes tags and the catalogue."""

    def __init__(self, config: Config, catalogue, *, classifier: Classifier | None = None,
                 workers: int = 0, dry_run: bool = False, hooks: EngineHooks | None = None):
        self.config = config
        self.recorder = Recorder(config, catalogue, dry_run=dry_run, hooks=hooks)
        self.workers = workers or config.scan.workers or os.cpu_count() or 1
        self.dry_run = dry_run
        self._pool: ProcessPoolExecutor | None = None
        if not dry_run:  # a dry run creates nothing, not even the state dir
            use_private_temp(config.state_path)  # before the fork server picks its socket dir
        if classifier is None:
            # The fork server loads and warms the decode stack (about 2 s on one core) while
            # the model loads here; starting it does not wait for it.
            worker_context()  # names the server's preload before it starts
            multiprocessing.forkserver.ensure_running()
            from tagger.model.classify import Classifier

            classifier = Classifier(config)
        self.classifier = classifier
        # the calibrated confidence and the resolved threshold: what the recorder compares
        self.recorder.config = use_calibration(config, catalogue, classifier)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=worker_context(),
                                             initializer=worker_init)
        return self._pool

    @property
    def model_info(self) -> ModelInfo:
        """The model every prediction of this engine is recorded with."""
        return self.classifier.info

    def worker_pids(self) -> list[int]:
        """Process ids of the decode workers running now (none before the first file)."""
        return pool_pids(self._pool) if self._pool is not None else []

    def submit(self, fn: Callable, *args) -> Future:
        """Run ``fn(*args)`` in one of the decode worker processes."""
        return self._executor().submit(fn, *args)

    def start(self) -> None:
        """Start the worker processes now rather than with the first file."""
        pool = self._executor()
        try:
            for ready in [pool.submit(worker_ready) for _ in range(self.workers)]:
                ready.result()
        except BrokenProcessPool:
            self.close()
            raise TaggerError(
                "the decode worker processes die as they start (their error is printed above; "
                f"python is {sys.executable})") from None

    def close(self) -> None:
        if self._pool is not None:
            stop_pool(self._pool)  # bounded: a stuck worker is killed, never waited on
            self._pool = None
        self.recorder.close()

    def process(self, files: Iterable[FoundFile], summary: Summary,
                progress: ProgressSink | None = None,
                should_stop: Callable[[], bool] = lambda: False) -> Summary:
        """Classify, tag and catalogue ``files``; results are committed batch by batch.

        Once ``should_stop()`` is true, the batch being recorded is finished and the rest
        is left pending (the catalogue has every file as pending before it is processed).
        """
        files = iter(files)
        in_flight: deque[tuple[FoundFile, Future, ProcessPoolExecutor]] = deque()
        crashes: Counter = Counter()
        stuck: set[str] = set()
        ready: list[WorkItem] = []
        queued_segments = 0
        # enough files in flight to fill the next inference batch while this one runs
        batch_tracks = -(-self.config.model.batch_segments // self.config.model.segments)
        window = self.workers + 2 * batch_tracks

        def submit(found: FoundFile) -> None:
            pool = self._executor()
            try:
                future = pool.submit(prepare_file, found, self.config)
            except BrokenProcessPool:  # a worker died while the window was being filled
                if pool is self._pool:
                    pool.shutdown(wait=False)
                    self._pool = None
                pool = self._executor()
                future = pool.submit(prepare_file, found, self.config)
            in_flight.append((found, future, pool))

        def refill() -> None:
            while len(in_flight) < window and not should_stop():
                found = next(files, None)
                if found is None:
                    return
                submit(found)

        refill()
        while in_flight:
            if should_stop():
                # Files decoded but not classified, and those still decoding, stay pending
                # in the catalogue: the next run redoes them (decoding is the cheap part).
                summary.interrupted = True
                for _, future, _ in in_flight:
                    future.cancel()
                return summary
            found, future, pool = in_flight.popleft()
            try:
                item = self._result(found, future, pool, stuck)
            except BrokenProcessPool:
                item = self._after_worker_crash(found, pool, crashes, submit, stuck)
                if item is None:
                    continue
            refill()
            if item.track is not None:
                moved_from = self.recorder.moved_from(item)
                if moved_from:
                    self.recorder.record_move(moved_from, item, summary)
                    self._advance(progress)
                    continue
                ready.append(item)
                queued_segments += len(item.track.patches)
            else:
                self.recorder.record_error(item, summary)
                self._advance(progress)
            if queued_segments >= self.config.model.batch_segments or not in_flight:
                self._finish_batch(ready, summary, progress)
                ready, queued_segments = [], 0
        self._finish_batch(ready, summary, progress)
        return summary

    def stuck_after_s(self) -> float:
        """How long one file may hold a worker: the decode timeout, plus hashing and features.
        The oldest file in flight is always running (the pool takes files in order), so a
        wait on it that lasts longer means the worker is stuck (a FIFO swapped in, a hung
        mount): it is killed, and the pool replaced."""
        return self.config.decode.timeout_seconds + STUCK_MARGIN_S

    def _result(self, found: FoundFile, future: Future, pool: ProcessPoolExecutor,
                stuck: set[str]) -> WorkItem:
        try:
            return future.result(timeout=self.stuck_after_s())
        except FuturesTimeout:
            log.error("%s: the decoding worker is stuck (no result in %.0f s): killing it",
                      found.path, self.stuck_after_s())
            stuck.add(found.path)
            kill_workers(pool_pids(pool))
            return future.result(timeout=60)  # BrokenProcessPool, now

    def _after_worker_crash(self, found: FoundFile, pool: ProcessPoolExecutor, crashes: Counter,
                            submit: Callable[[FoundFile], None],
                            stuck: set[str] = frozenset()) -> WorkItem | None:
        """A worker died (killed, out of memory): every file it had in flight fails with it.

        Start a fresh pool and retry each such file once; a file that takes a second worker
        down with it is recorded as failed. Returns that failure, or None when retried.
        """
        if pool is self._pool:  # the broken one: its other futures fail too, and come here
            stop_pool(pool, grace_s=0.5)
            self._pool = None
        crashes[found.path] += 1
        if crashes[found.path] > 1:
            error = ("the decoding worker was stuck on this file twice (killed)"
                     if found.path in stuck else
                     "the decoding worker process died twice on this file")
            kind = FailureKind.TIMEOUT if found.path in stuck else FailureKind.WORKER_DIED
            return WorkItem(found.path, found.size, found.mtime_ns, None, error=error, kind=kind)
        log.warning("a worker process died; retrying %s", found.path)
        submit(found)
        return None

    def _advance(self, progress: ProgressSink | None, count: int = 1) -> None:
        if progress:
            progress.advance(count)

    def _finish_batch(self, items: list[WorkItem], summary: Summary,
                      progress: ProgressSink | None) -> None:
        if not items:
            return
        results = self.classifier.classify_embedded([i.track for i in items])
        for item, (result, embeddings) in zip(items, results):
            self.recorder.record(item, result, summary, embeddings)
        self._advance(progress, len(items))

class ScanEngine(Protocol):
    """The seam ``scan`` and ``watch`` drive: the local pool (:class:`Engine`) or a cluster
    (:class:`tagger.service.cluster.RayEngine`). Each feeds its results to one Recorder."""

    recorder: Recorder

    @property
    def model_info(self) -> ModelInfo: ...

    def start(self) -> None: ...

    def process(self, files: Iterable[FoundFile], summary: Summary,
                progress: ProgressSink | None = None,
                should_stop: Callable[[], bool] = lambda: False) -> Summary: ...

    def close(self) -> None: ...


def make_engine(config: Config, catalogue, *, workers: int = 0, dry_run: bool = False,
                hooks: EngineHooks | None = None,
                classifier: Classifier | None = None) -> ScanEngine:
    """The engine ``cluster.engine`` selects: worker processes here, or a Ray cluster
    (``classifier`` and ``workers`` are the local engine's)."""
    if config.cluster.engine == "ray":
        from tagger.service.cluster import RayEngine

        return RayEngine(config, catalogue, dry_run=dry_run, hooks=hooks)
    return Engine(config, catalogue, classifier=classifier, workers=workers, dry_run=dry_run,
                  hooks=hooks)
