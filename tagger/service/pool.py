"""Decode worker processes that hand files back in order, through stuck and crashed workers.

The local engine (:mod:`tagger.service.engine`) decodes a scan's files here, and ``tagger
classify`` its arguments (:func:`decode_in_workers`): a decoder that crashes on a hostile file
takes down one worker, never the process that runs the model and writes.
"""

from __future__ import annotations

import logging
import multiprocessing.forkserver
import os
import sys
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Callable, Generic, Iterable, Iterator, TypeVar

from tagger.audio.features import PreparedTrack, prepare_or_error
from tagger.config import Config
from tagger.errors import ReadError, TaggerError
from tagger.results import FailureKind
from tagger.service.lifetime import kill_workers, pool_pids, stop_pool
from tagger.service.workers import worker_context, worker_init, worker_ready

log = logging.getLogger(__name__)

#: beyond ``decode.timeout_seconds``, what hashing and cutting one file may take at most
STUCK_MARGIN_S = 30.0

Job = TypeVar("Job")
Outcome = TypeVar("Outcome")


def start_fork_server() -> None:
    """Start the workers' fork server now: it loads and warms the decode stack (about 2 s
    on one core) while the caller goes on (loading the model); this does not wait for it."""
    worker_context()  # names the server's preload before it starts
    multiprocessing.forkserver.ensure_running()


def stop_fork_server() -> None:
    """Stop the workers' fork server, if it runs (after its workers; the next worker starts
    it again): an idle daemon gives its memory back."""
    # multiprocessing has no public way to stop it; _stop() is what its own tests use
    # (Python 3.9-3.13)
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    stop = getattr(server, "_stop", None)
    if stop is not None:
        stop()


def worker_count(config: Config, workers: int = 0) -> int:
    """How many decode workers: ``workers``, else ``scan.workers``, else one per core."""
    return workers or config.scan.workers or os.cpu_count() or 1


class DecodePool:
    """A pool of decode worker processes, forked from a server that loaded and warmed the
    decode stack once."""

    def __init__(self, config: Config, workers: int = 0):
        self.config = config
        self.workers = worker_count(config, workers)
        self._pool: ProcessPoolExecutor | None = None

    def executor(self) -> ProcessPoolExecutor:
        """The process pool, started with the first call and after :meth:`discard`."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=worker_context(),
                                             initializer=worker_init)
        return self._pool

    def worker_pids(self) -> list[int]:
        """Process ids of the workers running now (none before the first file)."""
        return pool_pids(self._pool) if self._pool is not None else []

    def submit(self, fn: Callable, *args) -> Future:
        """Run ``fn(*args)`` in one of the workers."""
        return self.executor().submit(fn, *args)

    def start(self) -> None:
        """Start the workers now rather than with the first file."""
        pool = self.executor()
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

    def discard(self, pool: ProcessPoolExecutor, grace_s: float | None = None) -> None:
        """Drop a broken pool, if it is still the current one (its other futures fail too,
        and come here): at once, or waiting ``grace_s`` for its workers to go."""
        if pool is self._pool:
            if grace_s is None:
                pool.shutdown(wait=False)
            else:
                stop_pool(pool, grace_s=grace_s)
            self._pool = None

    def stuck_after_s(self) -> float:
        """How long one file may hold a worker: the decode timeout, plus hashing and features.
        The oldest file in flight is always running (the pool takes files in order), so a
        wait on it that lasts longer means the worker is stuck (a FIFO swapped in, a hung
        mount): it is killed, and the pool replaced."""
        return self.config.decode.timeout_seconds + STUCK_MARGIN_S

    def in_order(self, jobs: Iterable[Job], work: Callable[[Job, Config], Outcome], *,
                 name: Callable[[Job], str], died: Callable[[Job, str, FailureKind], Outcome],
                 window: int, should_stop: Callable[[], bool] = lambda: False,
                 ) -> InOrder[Job, Outcome]:
        """``work(job, config)`` of every job in the workers, ``window`` at a time, handed
        back in order as ``(job, outcome)``; see :class:`InOrder`."""
        return InOrder(self, jobs, work, name, died, window, should_stop)


@dataclass
class _Flight(Generic[Job]):
    """One job in flight: where it runs, and what happened to it before."""

    job: Job
    future: Future
    pool: ProcessPoolExecutor
    retried: bool = False  # a worker already died with it once
    stuck: bool = False  # its worker was killed for holding it too long


class InOrder(Generic[Job, Outcome]):
    """The outcomes of one run of :meth:`DecodePool.in_order`, as an iterator, in order.

    A worker that dies (killed, out of memory, a decoder crash) fails every job it had in
    flight: the pool is replaced and each such job retried once, in its place; a job that
    takes a second worker down with it gets ``died(job, reason, kind)`` as its outcome. So
    does a job that holds its worker past :meth:`DecodePool.stuck_after_s` (the worker is
    killed) and then again. Once ``should_stop()`` is true the jobs in flight are cancelled
    and the iteration ends with ``interrupted`` set.
    """

    def __init__(self, pool: DecodePool, jobs, work, name, died, window: int, should_stop):
        self._decode, self._jobs, self._work = pool, iter(jobs), work
        self._name, self._died, self._window, self._should_stop = name, died, window, should_stop
        self._in_flight: deque[_Flight[Job]] = deque()
        self.interrupted = False

    @property
    def pending(self) -> int:
        """Jobs submitted and not handed back yet."""
        return len(self._in_flight)

    @property
    def window(self) -> int:
        """How many jobs are kept in flight; the caller may change it as it goes."""
        return self._window

    @window.setter
    def window(self, size: int) -> None:
        self._window = max(1, size)

    def __iter__(self) -> Iterator[tuple[Job, Outcome]]:
        self._refill()
        while self._in_flight:
            if self._should_stop():
                self.interrupted = True
                for flight in self._in_flight:
                    flight.future.cancel()
                self._in_flight.clear()
                return
            flight = self._in_flight.popleft()
            try:
                outcome = self._result(flight)
            except BrokenProcessPool:
                self._decode.discard(flight.pool, grace_s=0.5)
                if not flight.retried:
                    log.warning("a worker process died; retrying %s", self._name(flight.job))
                    retry = self._submit(flight.job)
                    retry.retried, retry.stuck = True, flight.stuck
                    self._in_flight.appendleft(retry)  # its turn again: the order holds
                    continue
                outcome = (self._died(flight.job, "the decoding worker was stuck on this file "
                                      "twice (killed)", FailureKind.TIMEOUT) if flight.stuck else
                           self._died(flight.job, "the decoding worker process died twice on "
                                      "this file", FailureKind.WORKER_DIED))
            self._refill()
            yield flight.job, outcome

    def _submit(self, job: Job) -> _Flight[Job]:
        pool = self._decode.executor()
        try:
            future = pool.submit(self._work, job, self._decode.config)
        except BrokenProcessPool:  # a worker died while the window was being filled
            self._decode.discard(pool)
            pool = self._decode.executor()
            future = pool.submit(self._work, job, self._decode.config)
        return _Flight(job, future, pool)

    def _refill(self) -> None:
        while len(self._in_flight) < self._window and not self._should_stop():
            job = next(self._jobs, None)
            if job is None:
                return
            self._in_flight.append(self._submit(job))

    def _result(self, flight: _Flight[Job]) -> Outcome:
        limit = self._decode.stuck_after_s()
        try:
            return flight.future.result(timeout=limit)
        except FuturesTimeout:
            log.error("%s: the decoding worker is stuck (no result in %.0f s): killing it",
                      self._name(flight.job), limit)
            flight.stuck = True
            kill_workers(pool_pids(flight.pool))
            return flight.future.result(timeout=60)  # BrokenProcessPool, now


def decode_in_workers(pool: DecodePool, paths: Iterable[str], ahead: int,
                      ) -> Iterator[tuple[str, PreparedTrack | TaggerError]]:
    """Each path decoded and cut by ``pool``'s workers, in order, as ``(path, track or its
    error)``: what :meth:`tagger.model.classify.Classifier.classify_decoded` takes."""
    def died(path: str, reason: str, kind: FailureKind) -> TaggerError:
        return ReadError(reason, path)

    return iter(pool.in_order(paths, prepare_or_error, name=str, died=died,
                              window=max(1, ahead)))
