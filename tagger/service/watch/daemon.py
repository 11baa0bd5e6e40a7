"""The daemon: one process, one writer, and the main loop that is the only thread writing
tags and the catalogue. The pieces it wires together each live in their own module."""

from __future__ import annotations

import logging
import os
import threading
import time
from operator import attrgetter
from typing import Callable, Iterable

from watchdog.events import FileSystemEvent

from tagger.config import Config
from tagger.errors import ConfigError, TaggerError
from tagger.library.catalogue import CatalogueGoneError, open_catalogue, safe_url
from tagger.library.journal import recover_interrupted_writes
from tagger.library.lock import WriterLock
from tagger.service.engine import ScanEngine
from tagger.service.recorder import Summary
from tagger.service.retag import retag
from tagger.service.watch.adoption import ADOPTION_CHECK_S, AdoptionWatch
from tagger.service.watch.batch import BatchRunner
from tagger.service.watch.events import EventRouter
from tagger.service.watch.observers import Observers, OverflowSpy
from tagger.service.watch.reconcile import Reconciler
from tagger.service.watch.roots import Roots, outermost
from tagger.service.watch.scheduler import Rescans
from tagger.service.watch.settle import SettleQueue
from tagger.service.watch.status import LastError, StatusFile, iso, status_path
from tagger.service.workers import lower_priority

log = logging.getLogger(__name__)

TICK_S = 0.1  # main loop period
ROOT_CHECK_S = 2.0  # how often the roots are checked for being gone or empty


class Watcher:
    """The daemon: ``Watcher(roots, config).run(should_stop)`` until ``should_stop()`` or
    :meth:`stop`. ``classifier`` and ``workers`` are for tests and benches; ``recorded`` is
    called with each classified file's path once its result is committed. With
    ``follow_adoption`` (the CLI sets it when no ``--model`` or ``model.bundle`` fixes the
    model) a newly adopted model is loaded and the library retagged with it
    (:mod:`tagger.service.watch.adoption`)."""

    def __init__(self, roots: Iterable[str], config: Config, *, classifier=None,
                 workers: int = 0, recorded: Callable[[str], None] | None = None,
                 follow_adoption: bool = False, adoption_check_s: float = ADOPTION_CHECK_S):
        roots = outermost(roots)  # a root inside another is watched through the outer one
        if not roots:
            raise ConfigError("no folder to watch")
        self.roots = roots
        self.config = config
        self.watch = config.watch
        self.settle = config.watch.settle_seconds
        self.grace = max(60.0, 12 * self.settle)  # a write never seen closed counts as done
        self.classifier = classifier
        self.workers = workers
        self.recorded = recorded
        self.status_file = status_path(config)
        self.started = threading.Event()  # set once watching (after the initial reconcile)
        self.state = "starting"
        self.started_at = time.time()
        self.summary = Summary()
        self.catalogue = None
        self.engine: ScanEngine | None = None

        self._stop = threading.Event()
        self._should_stop: Callable[[], bool] = lambda: False
        self.queue = SettleQueue(self.settle, self.grace)
        self._roots = Roots(self.roots, config.library.ignore)
        self._events = EventRouter(config.library, self.queue)
        self._observers = Observers(self.watch, lambda *event: self.on_event(*event))
        self._reconciler = Reconciler(config, self._roots, self.queue, self._events,
                                      self._observers.rewatch)
        self._batches = BatchRunner(config, self.queue, self._roots, self.summary,
                                    self.stopping)
        self._rescans = Rescans(config, lambda: self._reconciler.plan(self._roots.active()),
                                self.stopping)  # fails early on a bad rescan_cron
        self._roots_checked = 0.0
        self._last_error = LastError()
        self._overflow_spy = OverflowSpy(self._on_overflow)
        self._status_file = StatusFile(self.status_file, self.status)
        self._writer_lock: WriterLock | None = None
        self._adoption = AdoptionWatch(config, adoption_check_s) if follow_adoption else None
        self.retags: list[dict] = []  # the summary of each retag after an adoption
        self.model_info = None  # the engine's model (ModelInfo) once it runs

    # -- public ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the daemon to stop (from any thread): intake stops, the files in the workers
        are finished and committed, then :meth:`run` returns."""
        self._stop.set()

    def stopping(self) -> bool:
        return self._stop.is_set() or self._should_stop()

    @property
    def paused(self) -> dict[str, str]:
        """The paused roots and why (gone or empty while the catalogue knows tracks)."""
        return self._roots.paused

    @property
    def observers(self) -> dict[str, tuple[str, str]]:
        """``{root: (native | polling, reason)}``."""
        return self._observers.chosen

    # the counts (int) its parts keep, read-only here: tracks moved and gone (the reconcile),
    # files found again, unchanged or deferred (the batches)
    moved = property(attrgetter("_reconciler.moved"))
    missing = property(attrgetter("_reconciler.missing"))
    found = property(attrgetter("_batches.found"))
    unchanged = property(attrgetter("_batches.unchanged"))
    deferred = property(attrgetter("_batches.deferred"))

    def is_watched(self, root: str) -> bool:
        """Whether an observer watches ``root`` now (a root not there at the start is
        watched once it appears)."""
        return self._observers.is_watched(os.path.abspath(root))

    def request_rescan(self) -> None:
        """Run the reconcile rescan now (coalesced with one already running)."""
        self._rescans.request()

    def run(self, should_stop: Callable[[], bool] | None = None) -> Summary:
        """Hold the writer lock, reconcile, then watch until asked to stop."""
        if should_stop is not None:
            self._should_stop = should_stop
        self.start()
        try:
            while not self.stopping():
                self._tick()
                self._stop.wait(TICK_S)
            self.state = "stopping"
            log.info("stopping: intake stopped, in-flight work finished")
        finally:
            self.close()
        return self.summary

    def start(self) -> None:
        """What :meth:`run` does before its loop: take the writer lock, start the status
        file, the engine and the observers, reconcile the roots, start the scheduler.
        :meth:`close` undoes it (also when this fails part way)."""
        lock = WriterLock(self.config.state_path, self.config.database_url, "tagger watch")
        lock.acquire()
        self._writer_lock = lock
        logging.getLogger("tagger").addHandler(self._last_error)
        logging.getLogger("apscheduler").setLevel(
            max(logging.WARNING, logging.getLogger("apscheduler").getEffectiveLevel()))
        watchdog_log = logging.getLogger("watchdog.observers.inotify_c")
        watchdog_log.addHandler(self._overflow_spy)
        if watchdog_log.getEffectiveLevel() > logging.WARNING:
            watchdog_log.setLevel(logging.WARNING)
        try:
            self._status_file.write()
            self._status_file.start()
            self._start()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """What :meth:`run` does after its loop: stop the observers and the scheduler, apply
        the moves seen, close the engine and the catalogue, write the final status, release
        the writer lock. Does nothing when not started."""
        lock, self._writer_lock = self._writer_lock, None
        if lock is None:
            return
        try:
            self._shutdown()
        finally:
            self.state = "stopped"
            self._status_file.stop()
            self._status_file.write()
            logging.getLogger("tagger").removeHandler(self._last_error)
            logging.getLogger("watchdog.observers.inotify_c").removeHandler(self._overflow_spy)
            lock.release()

    def status(self) -> dict:
        """The status file's content."""
        kinds = {kind for kind, _ in self.observers.values()}
        observer = ("native (inotify)" if kinds == {"native"} else
                    f"polling every {self.watch.poll_interval_seconds:g} s"
                    if kinds == {"polling"} else "mixed" if kinds else "-")
        summary = self.summary
        state = self.state
        if state in ("scanning", "watching") and self.stopping():
            state = "stopping"
        return {
            "pid": os.getpid(),
            "state": state,
            "started": iso(self.started_at),
            "updated": iso(time.time()),
            "database": safe_url(self.config.database_url),
            "roots": self.roots,
            "observer": observer,
            "observers": {r: {"type": k, "reason": why} for r, (k, why) in self.observers.items()},
            "paused": dict(self.paused),
            "queue": len(self.queue) + self._batches.in_batch,
            "processed": summary.classified,
            "tagged": summary.tagged,
            "failed": summary.failed,
            "skipped": summary.skipped,
            "moved": summary.moved + self.moved,
            "missing": self.missing,
            "found": self.found,
            "unchanged": self.unchanged,
            "deferred": self.deferred,
            "last_error": self._last_error.last,
            "next_rescan": (None if self.state in ("stopping", "stopped")
                            else self._rescans.next_rescan()),
            # the model as the main thread last saw it: this runs in the status file's
            # thread, and asking a Ray engine would start (or restart) it from here
            "model": ({"name": self.model_info.name, "sha256": self.model_info.sha256}
                      if self.model_info is not None else None),
            "follows_adoption": self._adoption is not None,
            "last_retag": self.retags[-1] if self.retags else None,
        }

    # -- start and stop ---------------------------------------------------------------------

    def _start(self) -> None:
        # the daemon yields to the user's own work (service.priority); before the fork server
        # and the model's threads start, which inherit it
        applied = lower_priority(self.config.service.priority)
        if applied:
            log.info("running at low priority: %s", ", ".join(applied))
        self.catalogue = open_catalogue(self.config.database_url)
        self._writer_lock.guard(self.catalogue)
        self._reconciler.catalogue = self.catalogue
        self.engine = self._batches.start_engine(self.catalogue, classifier=self.classifier,
                                                 workers=self.workers, recorded=self.recorded)
        info = self.model_info = self.engine.model_info
        log.info("watching %s with model %s %s; catalogue %s", ", ".join(self.roots),
                 info.name, info.sha256[:12], self.catalogue.url)
        recover_interrupted_writes(self.catalogue, self.roots)
        requeued = self.catalogue.requeue_stale(info.sha256, info.vocabulary)
        if requeued:
            log.info("%d tracks were classified by another model or genre vocabulary: "
                     "requeued", requeued)
        self._roots.note_present()
        self._observers.start(self.roots)
        self.state = "scanning"
        self._reconciler.apply_plan(self._reconciler.plan(self.roots))
        self._rescans.start()
        self.state = "watching"
        self.started.set()
        log.info("watching: %s", self.status()["observer"])

    def _shutdown(self) -> None:
        self._observers.stop()
        self._rescans.shutdown()
        try:
            if self.catalogue is not None:
                moves = self.queue.take_moves()
                if moves:
                    self._reconciler.apply_moves(moves)
        except TaggerError as exc:
            log.error("%s", exc)
        if self.engine is not None:
            self.engine.close()
        if self.catalogue is not None:
            self.catalogue.close()

    # -- events ----------------------------------------------------------------------------

    def on_event(self, root: str, event: FileSystemEvent, native: bool) -> None:
        """What the observers call (in their threads) with each watchdog event under
        ``root`` (``native``: from inotify). Looked up on each event, so a test may wrap it
        (events the kernel dropped)."""
        self._events.on_event(root, event, native)

    def _on_overflow(self) -> None:
        log.warning("events were lost (inotify queue overflow): rescanning now")
        self.request_rescan()

    # -- the adopted model -----------------------------------------------------------------

    def _follow_adoption(self) -> None:
        """Between batches: a new adoption reloads the model and retags from the cache."""
        choice = self._adoption.changed(self.catalogue, self.config)
        if choice is None:
            return
        # the old engine goes first (a Ray engine shares the driver's connection with the
        # next one); a model that does not load brings the old one back
        self.engine.close()
        self._batches.config = choice.config
        try:
            self.engine = self._batches.start_engine(self.catalogue, workers=self.workers,
                                                     recorded=self.recorded)
        except BaseException:
            self._adoption.refuse(choice)
            self._batches.config = self.config
            self.engine = self._batches.start_engine(self.catalogue, classifier=self.classifier,
                                                     workers=self.workers,
                                                     recorded=self.recorded)
            raise
        self.config = choice.config
        self.classifier = None  # a given one runs the old model
        self.model_info = self.engine.model_info
        # the output layers and the head run here, on the cached embeddings (the engine's
        # model runs in a process of its own, or on a cluster)
        from tagger.model.classify import Classifier

        classifier = Classifier(choice.config)
        summary = retag(choice.config, self.catalogue, classifier, self.roots,
                        should_stop=self.stopping)
        log.info("retag under %s: %d tracks re-predicted (%.0f/s, none decoded), %d tagged, "
                 "%d kept, %d need a scan", summary.model.name, summary.repredicted,
                 summary.rate, summary.tags.tagged, summary.tags.kept, len(summary.need_scan))
        self.retags.append(summary.as_dict())

    # -- the main loop ---------------------------------------------------------------------

    def _tick(self) -> None:
        try:
            plans = self._rescans.take_plans()
            for plan in plans:
                self._reconciler.apply_plan(plan, requeue=self.engine.model_info)
            if plans:
                self._rescans.applied()
            now = time.monotonic()
            if now - self._roots_checked >= ROOT_CHECK_S:
                self._roots_checked = now
                self._reconciler.check_roots()
            if self._rescans.retry_due.is_set():
                self._rescans.retry_due.clear()
                self._batches.queue_retries()
            if self._observers.repair():  # watches lost after folders moved: the events too
                self.request_rescan()
            moves = self.queue.take_moves()
            if moves:
                self._reconciler.apply_moves(moves)
            self._reconciler.apply_deletes()
            self._batches.process_ready()
            if len(self.queue) == 0:
                self._batches.release_when_idle(self.watch.idle_release_seconds)
            if self._adoption is not None and self._adoption.due():
                self._follow_adoption()
        except CatalogueGoneError:
            raise  # every later write would be lost: stop, with the error as the reason
        except TaggerError as exc:
            log.error("%s", exc)
            self._stop.wait(1.0)  # e.g. the database is unreachable: do not spin
