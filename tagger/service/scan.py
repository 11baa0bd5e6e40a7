"""The engine behind ``tagger scan`` and the daemon: the one process that writes.

Worker processes decode, hash and cut each file into segments (no model there); this
process batches their segments through the classifier, applies the tag policy, writes the
tags and commits the catalogue. ``scan()`` adds the one-shot part: walk the roots, skip what
is unchanged, mark what vanished.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
import time
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Protocol, TextIO

from threadpoolctl import threadpool_limits

from tagger.audio.features import PreparedTrack, prepare_track
from tagger.audio.identity import content_id
from tagger.config import Config, TagsConfig
from tagger.errors import ReadError, TaggerError, TooShortError, WriteError
from tagger.library import tags
from tagger.library.discover import FoundFile, WalkReport, walk
from tagger.results import ModelInfo, TrackResult, Vote

if TYPE_CHECKING:  # workers import this module: keep torch out of them
    from tagger.model.classify import Classifier

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- tag policy


@dataclass(frozen=True)
class TagDecision:
    genres: tuple[str, ...]  # what to write; empty: write nothing
    reason: str  # why nothing is written ("" when something is)


def decide_tags(outcome: Vote, existing: list[str], policy: TagsConfig) -> TagDecision:
    """Apply ``[tags]`` (write, min_confidence, on_tie) to one vote."""
    if policy.write == "never":
        return TagDecision((), "tag writing is off (tags.write = never)")
    if outcome.confidence < policy.min_confidence:
        return TagDecision((), f"below threshold ({outcome.confidence:.2f} < "
                               f"{policy.min_confidence:g})")
    if outcome.tie and policy.on_tie == "skip":
        return TagDecision((), "tie: " + ", ".join(outcome.tied))
    if policy.write == "if_empty" and existing:
        return TagDecision((), "kept the genre already set")
    genres = outcome.tied if outcome.tie and policy.on_tie == "all" else (outcome.genre,)
    return TagDecision(tuple(genres), "")


# ---------------------------------------------------------------- worker side


@dataclass(frozen=True)
class WorkItem:
    """What a worker hands back for one file."""

    path: str
    size: int
    mtime_ns: int
    format: str | None
    content_id: str | None = None
    track: PreparedTrack | None = None
    error: str | None = None
    status: str = "failed"  # for errors: failed, or skipped (too short)


def prepare_file(found: FoundFile, config: Config) -> WorkItem:
    """Worker: identity and segments of one file; every failure becomes a one-line reason."""
    fmt = os.path.splitext(found.path)[1].lower().lstrip(".") or None
    try:
        identity = content_id(found.path)
    except TaggerError:
        identity = None  # unknown layout: ffmpeg may still decode it, or will say why not
    try:
        track = prepare_track(found.path, config)
    except TooShortError as exc:
        return WorkItem(found.path, found.size, found.mtime_ns, fmt, identity,
                        error=exc.message, status="skipped")
    except TaggerError as exc:
        return WorkItem(found.path, found.size, found.mtime_ns, fmt, identity, error=exc.message)
    except Exception as exc:  # never let one file stop the scan
        return WorkItem(found.path, found.size, found.mtime_ns, fmt, identity,
                        error=f"unexpected {type(exc).__name__}: {exc}")
    return WorkItem(found.path, found.size, found.mtime_ns, fmt, identity, track=track)


def _worker_init() -> None:
    # Ctrl-C goes to the whole process group: let the main process stop things in order
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The pool is the parallelism: a BLAS thread team per worker only spins against the
    # other workers and the model's threads for the same cores.
    threadpool_limits(1)


def _worker_ready() -> bool:
    return True


def _worker_context() -> multiprocessing.context.BaseContext:
    """forkserver: workers never inherit torch's threads from the writer process, and the
    server loads and warms the decode stack once, so each worker starts ready."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tagger.service.forkserver_preload"])
    return context


# ---------------------------------------------------------------- summary and progress


@dataclass
class Summary:
    seen: int = 0
    unchanged: int = 0
    classified: int = 0
    tagged: int = 0
    kept: int = 0  # classified, tags left alone by policy
    below_threshold: int = 0
    ties: int = 0
    moved: int = 0
    skipped: int = 0
    missing: int = 0
    failures: Counter = field(default_factory=Counter)
    interrupted: bool = False
    elapsed_s: float = 0.0

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def lines(self) -> list[str]:
        rate = self.classified / self.elapsed_s if self.elapsed_s else 0.0
        out = [
            f"{self.seen} files: {self.classified} classified ({rate:.2f}/s), "
            f"{self.tagged} tagged, {self.unchanged} unchanged, {self.failed} failed, "
            f"{self.skipped} skipped, {self.missing} missing, {self.moved} moved",
            f"ties: {self.ties}; below threshold: {self.below_threshold}; "
            f"tags left as they were: {self.kept}",
        ]
        for reason, count in self.failures.most_common(5):
            out.append(f"  failed x{count}: {reason}")
        if self.interrupted:
            out.append("interrupted: everything finished so far is saved; run again to resume")
        return out


class Progress:
    """A progress bar with rate and ETA on a terminal; periodic log lines otherwise."""

    def __init__(self, total: int, stream: TextIO | None = None, interval_s: float = 10.0):
        self.total, self.stream, self.interval_s = total, stream or sys.stderr, interval_s
        self.done = 0
        self.start = self.last = time.monotonic()
        self.tty = self.stream.isatty()

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        rate = self.done / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / rate if rate else 0
        if self.tty:
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/"
                              f"{self.total} {rate:.2f} files/s ETA {_clock(eta)} ")
            self.stream.flush()
        elif now - self.last >= self.interval_s or self.done == self.total:
            log.info("progress: %d/%d files, %.2f files/s, ETA %s", self.done, self.total,
                     rate, _clock(eta))
            self.last = now

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# ---------------------------------------------------------------- the writer


@dataclass(frozen=True)
class EngineHooks:
    """What a caller (the watch daemon, a bench) may plug into an engine; all optional."""

    # a file that failed to decode: return True to take it back (it is not recorded now,
    # the caller retries it later), False to record the failure
    defer_failure: Callable[[WorkItem], bool] | None = None
    # called with each classified file's path once its result is committed
    recorded: Callable[[str], None] | None = None


class Recorder:
    """The single writer: applies the tag policy, writes tags (journal first) and records
    every outcome in the catalogue. Each engine (local pool, Ray cluster) feeds one."""

    def __init__(self, config: Config, catalogue, *, dry_run: bool = False,
                 out: TextIO | None = None, hooks: EngineHooks | None = None):
        self.config = config
        self.catalogue = catalogue
        self.dry_run = dry_run
        self.out = out or sys.stdout
        self.hooks = hooks or EngineHooks()

    def moved_from(self, item: WorkItem) -> str | None:
        """A catalogued track with the same audio whose old path is gone: a rename."""
        if self.dry_run or not item.content_id:
            return None
        for old in self.catalogue.find_by_content_id(item.content_id):
            if old != item.path and not os.path.exists(old):
                return old
        return None

    def record_move(self, old: str, item: WorkItem, summary: Summary) -> None:
        with self.catalogue.batch():
            self.catalogue.move(old, item.path, size=item.size, mtime_ns=item.mtime_ns)
        summary.moved += 1
        log.info("moved: %s -> %s (no new inference)", old, item.path)

    def record_error(self, item: WorkItem, summary: Summary) -> None:
        """Record a file that could not be classified (unless the caller defers it)."""
        if self.hooks.defer_failure is not None and self.hooks.defer_failure(item):
            return
        if item.status == "skipped":
            summary.skipped += 1
        else:
            summary.failures[item.error] += 1
        log.log(logging.INFO if item.status == "skipped" else logging.ERROR,
                "%s: %s", item.path, item.error)
        if self.dry_run:
            print(f"{item.path}: {item.status}: {item.error}", file=self.out)
            return
        with self.catalogue.batch():
            self.catalogue.record_failure(item.path, item.error, size=item.size,
                                          mtime_ns=item.mtime_ns, status=item.status,
                                          format=item.format, content_id=item.content_id)

    def _dry_run_line(self, item: WorkItem, result: TrackResult, summary: Summary) -> None:
        summary.classified += 1
        try:
            existing = tags.read_genres(item.path)
        except TaggerError as exc:
            print(f"{item.path}: cannot read tags: {exc.message}", file=self.out)
            return
        decision = decide_tags(result.vote, existing, self.config.tags)
        before = "; ".join(existing) or "(no genre)"
        after = "; ".join(decision.genres) if decision.genres else f"unchanged ({decision.reason})"
        print(f"{item.path}: {before} -> {after} [{result.vote.genre} "
              f"{result.vote.confidence:.2f}]", file=self.out)

    def record(self, item: WorkItem, result: TrackResult, summary: Summary) -> None:
        """Decide and write the tags of one classified file, then catalogue its result."""
        if self.dry_run:
            self._dry_run_line(item, result, summary)
            return
        path, outcome = item.path, result.vote
        summary.classified += 1
        summary.ties += outcome.tie
        stat, tag_error = (item.size, item.mtime_ns), None
        try:
            existing = self._user_genres(path, tags.read_genres(path))
            decision = decide_tags(outcome, existing, self.config.tags)
            if decision.genres:
                stat = self._write_tags(path, decision.genres, outcome.confidence, summary)
            elif decision.reason.startswith("below threshold"):
                summary.below_threshold += 1
            else:
                summary.kept += 1
        except (ReadError, WriteError, OSError) as exc:
            tag_error = f"tag write failed: {getattr(exc, 'message', None) or exc}"
        with self.catalogue.batch():
            self.catalogue.record_result(result, size=stat[0], mtime_ns=stat[1],
                                         content_id=item.content_id, format=item.format)
            if tag_error:
                self.catalogue.record_failure(path, tag_error, size=stat[0], mtime_ns=stat[1])
        if tag_error:
            summary.failures[tag_error] += 1
            log.error("%s: %s", path, tag_error)
        else:
            log.debug("%s: %s %.2f%s", path, outcome.genre, outcome.confidence,
                      " (tie)" if outcome.tie else "")
        if self.hooks.recorded is not None:
            self.hooks.recorded(path)

    def _user_genres(self, path: str, existing: list[str]) -> list[str]:
        """The file's genres, or [] when they are just what tagger itself wrote last (a genre
        from an older model or genre map is not one the user set: it may be replaced)."""
        if not existing:
            return existing
        written = [w for w in self.catalogue.tag_changes([path])
                   if w.new is not None and "CONFIDENCE" not in w.field.upper()]
        if written and list(written[-1].new) == existing:
            return []
        return existing

    def _write_tags(self, path: str, genres: tuple[str, ...], confidence: float,
                    summary: Summary) -> tuple[int, int]:
        """Write the genre, recording the old values *before* the file changes.

        The planned change is committed first, so a kill at any instant can lose neither the
        user's old value nor the file; a write that then fails marks its record reverted.
        Returns the file's (size, mtime_ns) afterwards.
        """
        confidence = confidence if self.config.tags.write_confidence else None
        planned = tags.write_genres(path, genres, confidence, dry_run=True)
        if planned:
            with self.catalogue.batch():
                ids = self.catalogue.record_tag_changes(path, planned)
            try:
                tags.write_genres(path, genres, confidence)
            except TaggerError:
                with self.catalogue.batch():
                    self.catalogue.mark_reverted(ids)
                raise
            summary.tagged += 1
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns



# ---------------------------------------------------------------- the engine


class Engine:
    """Processes files end to end; the only object that writes tags and the catalogue."""

    def __init__(self, config: Config, catalogue, *, classifier: Classifier | None = None,
                 workers: int = 0, dry_run: bool = False, out: TextIO | None = None,
                 hooks: EngineHooks | None = None):
        self.config = config
        self.recorder = Recorder(config, catalogue, dry_run=dry_run, out=out, hooks=hooks)
        self.workers = workers or config.scan.workers or os.cpu_count() or 1
        self.dry_run = dry_run
        self._pool: ProcessPoolExecutor | None = None
        if classifier is None:
            # The fork server loads and warms the decode stack (about 2 s on one core) while
            # the model loads here; starting it does not wait for it.
            _worker_context()  # names the server's preload before it starts
            multiprocessing.forkserver.ensure_running()
            from tagger.model.classify import Classifier

            classifier = Classifier(config)
        self.classifier = classifier

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=_worker_context(),
                                             initializer=_worker_init)
        return self._pool

    @property
    def model_info(self) -> ModelInfo:
        """The model every prediction of this engine is recorded with."""
        return self.classifier.info

    def worker_pids(self) -> list[int]:
        """Process ids of the decode workers running now (none before the first file)."""
        return list(getattr(self._pool, "_processes", None) or {})

    def submit(self, fn: Callable, *args) -> Future:
        """Run ``fn(*args)`` in one of the decode worker processes."""
        return self._executor().submit(fn, *args)

    def start(self) -> None:
        """Start the worker processes now rather than with the first file."""
        pool = self._executor()
        for ready in [pool.submit(_worker_ready) for _ in range(self.workers)]:
            ready.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def process(self, files: Iterable[FoundFile], summary: Summary,
                progress: Progress | None = None,
                should_stop: Callable[[], bool] = lambda: False) -> Summary:
        """Classify, tag and catalogue ``files``; results are committed batch by batch.

        Once ``should_stop()`` is true, the batch being recorded is finished and the rest
        is left pending (the catalogue has every file as pending before it is processed).
        """
        files = iter(files)
        in_flight: deque[tuple[FoundFile, Future, ProcessPoolExecutor]] = deque()
        crashes: Counter = Counter()
        ready: list[WorkItem] = []
        queued_segments = 0
        # enough files in flight to fill the next inference batch while this one runs
        batch_tracks = -(-self.config.model.batch_segments // self.config.model.segments)
        window = self.workers + 2 * batch_tracks

        def submit(found: FoundFile) -> None:
            pool = self._executor()
            in_flight.append((found, pool.submit(prepare_file, found, self.config), pool))

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
                item = future.result()
            except BrokenProcessPool:
                item = self._after_worker_crash(found, pool, crashes, submit)
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

    def _after_worker_crash(self, found: FoundFile, pool: ProcessPoolExecutor, crashes: Counter,
                            submit: Callable[[FoundFile], None]) -> WorkItem | None:
        """A worker died (killed, out of memory): every file it had in flight fails with it.

        Start a fresh pool and retry each such file once; a file that takes a second worker
        down with it is recorded as failed. Returns that failure, or None when retried.
        """
        if pool is self._pool:  # the broken one: its other futures fail too, and come here
            pool.shutdown(wait=False)
            self._pool = None
        crashes[found.path] += 1
        if crashes[found.path] > 1:
            return WorkItem(found.path, found.size, found.mtime_ns, None,
                            error="the decoding worker process died twice on this file")
        log.warning("a worker process died; retrying %s", found.path)
        submit(found)
        return None

    def _advance(self, progress: Progress | None, count: int = 1) -> None:
        if progress:
            progress.advance(count)

    def _finish_batch(self, items: list[WorkItem], summary: Summary,
                      progress: Progress | None) -> None:
        if not items:
            return
        results = self.classifier.classify_prepared([i.track for i in items])
        for item, result in zip(items, results):
            self.recorder.record(item, result, summary)
        self._advance(progress, len(items))

class ScanEngine(Protocol):
    """The seam ``scan`` and ``watch`` drive: the local pool (:class:`Engine`) or a cluster
    (:class:`tagger.service.cluster.RayEngine`). Each feeds its results to one Recorder."""

    recorder: Recorder

    @property
    def model_info(self) -> ModelInfo: ...

    def start(self) -> None: ...

    def process(self, files: Iterable[FoundFile], summary: Summary,
                progress: Progress | None = None,
                should_stop: Callable[[], bool] = lambda: False) -> Summary: ...

    def close(self) -> None: ...


def make_engine(config: Config, catalogue, *, workers: int = 0, dry_run: bool = False,
                out: TextIO | None = None, hooks: EngineHooks | None = None,
                classifier: Classifier | None = None) -> ScanEngine:
    """The engine ``cluster.engine`` selects: worker processes here, or a Ray cluster
    (``classifier`` and ``workers`` are the local engine's)."""
    if config.cluster.engine == "ray":
        from tagger.service.cluster import RayEngine

        return RayEngine(config, catalogue, dry_run=dry_run, out=out, hooks=hooks)
    return Engine(config, catalogue, classifier=classifier, workers=workers, dry_run=dry_run,
                  out=out, hooks=hooks)


# ---------------------------------------------------------------- one-shot scan


def plan_scan(roots: list[str], config: Config, catalogue, *, force: bool,
              report: WalkReport) -> tuple[list[FoundFile], list[str], int, int]:
    """Walk the roots and compare with the catalogue.

    Returns (files to process, paths gone missing, files seen, files unchanged). A root that
    is missing or suddenly empty while the catalogue knows files under it marks nothing missing.
    """
    found = list(walk(roots, config.library, report))
    known = catalogue.known_files(roots) if catalogue is not None else {}
    todo, unchanged = [], 0
    for f in found:
        previous = known.get(f.path)
        if (not force and previous is not None and previous[2] in ("done", "skipped", "failed")
                and previous[0] == f.size and previous[1] == f.mtime_ns):
            unchanged += 1
        else:
            todo.append(f)
    seen = {f.path for f in found}
    missing = []
    for root in roots:
        prefix = os.path.join(os.path.abspath(root), "")
        gone = [p for p, (_, _, status) in known.items()
                if p.startswith(prefix) and p not in seen and status != "missing"]
        if not gone:
            continue
        if not os.path.isdir(root) or not any(p.startswith(prefix) for p in seen):
            log.warning("%s is missing or empty but the catalogue knows %d files under it: "
                        "not marking them missing (unmounted?)", root, len(gone))
            continue
        missing.extend(gone)
    return todo, missing, len(found), unchanged


def scan(roots: list[str], config: Config, catalogue, *, force: bool = False,
         dry_run: bool = False, workers: int = 0, out: TextIO | None = None,
         engine: ScanEngine | None = None,
         should_stop: Callable[[], bool] = lambda: False) -> Summary:
    """One pass over the library: classify what is new or changed, tag it, catalogue it.

    When ``should_stop()`` turns true, the batch being recorded is finished and committed,
    the files not classified yet stay pending for the next run, and the summary says it was
    interrupted.
    """
    started = time.monotonic()
    report = WalkReport()
    todo, missing, seen, unchanged = plan_scan(roots, config, catalogue, force=force,
                                               report=report)
    for problem in report.unreadable_dirs:
        log.warning("cannot read folder %s", problem)
    for name in report.skipped_names:
        log.warning("skipped a name that is not valid UTF-8: %r", name)
    summary = Summary(seen=seen, unchanged=unchanged)
    if not dry_run:
        for directory in report.temp_dirs:
            tags.sweep_stale_temp_files(directory)
        if missing:
            with catalogue.batch():
                summary.missing = catalogue.mark_missing(missing)
        with catalogue.batch():
            catalogue.mark_pending_many((f.path, f.size, f.mtime_ns, None) for f in todo)
    log.info("%d files found: %d to classify, %d unchanged, %d missing", seen, len(todo),
             unchanged, len(missing))
    if not todo:  # an unchanged library: no model to load, no workers to start
        summary.elapsed_s = time.monotonic() - started
        return summary
    progress = Progress(len(todo))
    own_engine = engine is None
    engine = engine or make_engine(config, catalogue, workers=workers, dry_run=dry_run, out=out)
    try:
        engine.process(todo, summary, progress, should_stop)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        progress.close()
        if own_engine:
            engine.close()
        summary.elapsed_s = time.monotonic() - started
    return summary
