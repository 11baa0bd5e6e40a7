"""The engine behind ``tagger scan`` and the daemon: the one process that writes.

Worker processes decode, hash and cut each file into segments (no model there); this
process batches their segments through the classifier, applies the tag policy, writes the
tags and commits the catalogue. ``scan()`` adds the one-shot part: walk the roots, skip what
is unchanged, mark what vanished.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
import time
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Protocol, TextIO

from threadpoolctl import threadpool_limits

from tagger.audio.features import PreparedTrack, prepare_track
from tagger.audio.identity import content_id
from tagger.config import Config, TagsConfig
from tagger.errors import ReadError, TaggerError, TooShortError, WriteError
from tagger.library import tags
from tagger.library.corrections import correction_veto
from tagger.library.discover import FoundFile, WalkReport, walk
from tagger.library.genres import display_genre as library_display_genre
from tagger.library.genres import normalise_genres
from tagger.library.journal import (
    label_genres,
    recover_interrupted_writes,
    same_genres,
    user_genres,
)
from tagger.library.paths import (
    is_inside,
    outside_reason,
    printable_name,
    real_roots,
    special_file_reason,
)
from tagger.results import (
    FailureKind,
    ModelInfo,
    NotWritten,
    TrackResult,
    Vote,
)
from tagger.service.lifetime import (
    die_with_parent,
    kill_workers,
    pool_pids,
    stop_pool,
    use_private_temp,
)

if TYPE_CHECKING:  # workers import this module: keep torch out of them
    from tagger.model.classify import Classifier

log = logging.getLogger(__name__)

#: beyond ``decode.timeout_seconds``, what hashing and cutting one file may take at most
STUCK_MARGIN_S = 30.0


# ---------------------------------------------------------------- tag policy


@dataclass(frozen=True)
class TagDecision:
    genres: tuple[str, ...]  # what to write; empty: write nothing
    not_written: NotWritten | None = None  # why nothing is written (None when something is)
    detail: str = ""  # for people: the figures behind not_written

    @property
    def reason(self) -> str:
        """One line for people: why nothing is written ("" when something is)."""
        if self.not_written is None:
            return ""
        return REASON_TEXT[self.not_written] + (f" ({self.detail})" if self.detail else "")


REASON_TEXT = {
    NotWritten.POLICY_NEVER: "tag writing is off (tags.write = never)",
    NotWritten.BELOW_THRESHOLD: "below threshold",
    NotWritten.TIE_SKIPPED: "tie skipped (tags.on_tie = skip)",
    NotWritten.KEPT_USER_GENRE: "kept the genre already set",
    NotWritten.OUTSIDE_LIBRARY: "not written through a symlink to outside the library",
    NotWritten.NOT_MUSIC: "the user said it is not music (tagger set-genre --not-music)",
}


def display_genre(genre: str, policy: TagsConfig) -> str:
    """The form written into files (``tags.genre_case``; see
    :func:`tagger.library.genres.display_genre`): a genre renamed with capitals in
    ``[genres]`` is kept as given."""
    return library_display_genre(genre, policy.genre_case)


def decide_tags(outcome: Vote, existing: list[str], policy: TagsConfig) -> TagDecision:
    """Apply ``[tags]`` (write, min_confidence, on_tie, genre_case) to one vote."""
    if policy.write == "never":
        return TagDecision((), NotWritten.POLICY_NEVER)
    if outcome.confidence < policy.min_confidence:
        return TagDecision((), NotWritten.BELOW_THRESHOLD,
                           f"{outcome.confidence:.2f} < {policy.min_confidence:g}")
    if outcome.tie and policy.on_tie == "skip":
        return TagDecision((), NotWritten.TIE_SKIPPED, ", ".join(outcome.tied))
    genres = outcome.tied if outcome.tie and policy.on_tie == "all" else (outcome.genre,)
    genres = tuple(display_genre(g, policy) for g in genres)
    if policy.write == "if_empty" and existing:
        if same_genres(existing, genres):
            return TagDecision(())  # the file already says it: nothing to write, nothing kept
        return TagDecision((), NotWritten.KEPT_USER_GENRE, "; ".join(existing))
    return TagDecision(genres)


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
    kind: FailureKind = FailureKind.UNREADABLE  # for failed: whether a rescan retries it


def prepare_file(found: FoundFile, config: Config) -> WorkItem:
    """Worker: identity and segments of one file; every failure becomes a one-line reason."""
    fmt = os.path.splitext(found.path)[1].lower().lstrip(".") or None

    def failed(error: str, kind: FailureKind, status: str = "failed") -> WorkItem:
        return WorkItem(found.path, found.size, found.mtime_ns, fmt, identity, error=error,
                        status=status, kind=kind)

    identity = None
    if not os.access(found.path, os.R_OK) and os.path.exists(found.path):
        # judged here, by the system, not from the decoder's message: a permission problem
        # is fixed by the user without touching the file, so a plain rescan retries it
        return failed(f"{found.path}: permission denied", FailureKind.PERMISSION)
    special = special_file_reason(found.path)
    if special:  # a FIFO would block this worker for good at the first open
        return failed(special, FailureKind.UNREADABLE, status="skipped")
    try:
        identity = content_id(found.path)
    except TaggerError:
        identity = None  # unknown layout: ffmpeg may still decode it, or will say why not
    started = time.monotonic()
    try:
        track = prepare_track(found.path, config)
    except TooShortError as exc:
        return failed(exc.message, FailureKind.UNREADABLE, status="skipped")
    except TaggerError as exc:
        timed_out = time.monotonic() - started >= config.decode.timeout_seconds
        return failed(exc.message, FailureKind.TIMEOUT if timed_out else FailureKind.UNREADABLE)
    except Exception as exc:  # never let one file stop the scan
        return failed(f"unexpected {type(exc).__name__}: {exc}", FailureKind.INTERNAL)
    return WorkItem(found.path, found.size, found.mtime_ns, fmt, identity, track=track)


def _worker_init() -> None:
    die_with_parent()  # a kill -9 of the scan must not leave workers behind
    # Ctrl-C goes to the whole process group: let the main process stop things in order
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The pool is the parallelism: a BLAS thread team per worker only spins against the
    # other workers and the model's threads for the same cores.
    threadpool_limits(1)


def _worker_ready() -> bool:
    return True


# ---------------------------------------------------------------- priority

#: nice value of a low-priority (background) process
LOW_NICE = 10
_IOPRIO_CLASS_IDLE = 3
_IOPRIO_WHO_PROCESS = 1
_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "i686": 289, "armv7l": 314, "ppc64le": 273,
               "riscv64": 30, "s390x": 282}


def lower_priority(level: str) -> list[str]:
    """``service.priority``: "low" puts every thread of this process at nice 10 (never back
    up), under SCHED_BATCH and in the idle I/O class; the decode workers, forked later,
    inherit all three. "normal" changes nothing. Returns what was applied (for the log)."""
    if level != "low":
        return []
    applied = []
    tasks = ([int(t) for t in os.listdir("/proc/self/task")]
             if os.path.isdir("/proc/self/task") else [0])
    for tid in tasks:  # Linux keeps nice and the policy per thread: torch's threads too
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < LOW_NICE:
                os.setpriority(os.PRIO_PROCESS, tid, LOW_NICE)
            applied.append(f"nice {LOW_NICE}")
        except (OSError, AttributeError):
            pass
        try:
            os.sched_setscheduler(tid, os.SCHED_BATCH, os.sched_param(0))
            applied.append("SCHED_BATCH")
        except (OSError, AttributeError):
            pass
        if _set_idle_io(tid):
            applied.append("idle I/O")
    return sorted(set(applied))


def _set_idle_io(tid: int) -> bool:
    # ioprio_set(2) has no wrapper in Python's os module; a plain syscall through libc
    import ctypes
    import platform

    number = _IOPRIO_SET.get(platform.machine())
    if number is None or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(number, _IOPRIO_WHO_PROCESS, tid, _IOPRIO_CLASS_IDLE << 13) == 0
    except (OSError, AttributeError):
        return False


def _worker_context() -> multiprocessing.context.BaseContext:
    """forkserver: workers never inherit torch's threads from the writer process, and the
    server loads and warms the decode stack once, so each worker starts ready."""
    # The server runs `python -c ...`, which puts the current folder first on sys.path: a
    # `tagger/` folder there (a clone in ~/tagger, tagger started from ~) would shadow the
    # installed package in the server and every worker. -P (PYTHONSAFEPATH, Python 3.11+)
    # leaves the current folder out; the variable is read by the server when it starts.
    os.environ["PYTHONSAFEPATH"] = "1"
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
    failure_kinds: Counter = field(default_factory=Counter)  # FailureKind value -> files
    # failed in an earlier run, unchanged since, not retried now (failed for their content)
    left_failed: int = 0
    not_written: Counter = field(default_factory=Counter)  # NotWritten value -> files
    dry_run: bool = False
    interrupted: bool = False
    elapsed_s: float = 0.0

    @property
    def failed(self) -> int:
        """Files that failed in this run."""
        return sum(self.failures.values())

    @property
    def still_failed(self) -> int:
        """Files under the roots whose last attempt failed: this run's and the ones left."""
        return self.failed + self.left_failed

    def lines(self) -> list[str]:
        rate = self.classified / self.elapsed_s if self.elapsed_s else 0.0
        tagged = "would be tagged" if self.dry_run else "tagged"
        out = [
            f"{self.seen} files: {self.classified} classified ({rate:.2f}/s), "
            f"{self.tagged} {tagged}, {self.unchanged} unchanged, {self.failed} failed, "
            f"{self.skipped} skipped, {self.missing} missing, {self.moved} moved",
            f"ties: {self.ties}; below threshold: {self.below_threshold}; "
            f"tags left as they were: {self.kept}",
        ]
        for reason, count in self.failures.most_common(5):
            out.append(f"  failed x{count}: {reason}")
        if self.left_failed:
            out.append(f"still failed: {self.still_failed} files ({self.left_failed} from "
                       "earlier runs, unchanged since: 'tagger scan --retry-failed' tries them "
                       "again, 'tagger list --failed' lists them)")
        if self.interrupted:
            out.append("interrupted: everything finished so far is saved; run again to resume")
        return out

    def as_dict(self) -> dict:
        """The ``scan --json`` summary."""
        return {
            "seen": self.seen, "unchanged": self.unchanged, "classified": self.classified,
            "tagged": self.tagged, "kept": self.kept, "below_threshold": self.below_threshold,
            "ties": self.ties, "moved": self.moved, "skipped": self.skipped,
            "missing": self.missing, "failed": self.failed, "still_failed": self.still_failed,
            "failures": dict(self.failures), "failure_kinds": dict(self.failure_kinds),
            "not_written": dict(self.not_written), "dry_run": self.dry_run,
            "interrupted": self.interrupted, "elapsed_s": round(self.elapsed_s, 3),
        }


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
    """What a caller (the watch daemon, the CLI, a bench) may plug into an engine."""

    # a file that failed to decode: return True to take it back (it is not recorded now,
    # the caller retries it later), False to record the failure
    defer_failure: Callable[[WorkItem], bool] | None = None
    # called with each classified file's path once its result is committed
    recorded: Callable[[str], None] | None = None
    # in a dry run, each file's ``existing -> proposed`` as a dict (path, existing, proposed,
    # genre, confidence, tie, not_written, reason, error); without it a line goes to ``out``
    on_proposal: Callable[[dict], None] | None = None
    tagged_log_level: int = logging.DEBUG  # how loudly each tag written is logged


class Recorder:
    """The single writer: applies the tag policy, writes tags (journal first) and records
    every outcome in the catalogue. Each engine (local pool, Ray cluster) feeds one."""

    def __init__(self, config: Config, catalogue, *, dry_run: bool = False,
                 out: TextIO | None = None, hooks: EngineHooks | None = None):
        self.config = config
        self.catalogue = catalogue
        self.roots = real_roots(config.library.roots)  # tags are written only inside them
        self.dry_run = dry_run
        self.out = out or sys.stdout
        self.hooks = hooks or EngineHooks()

    def use_roots(self, roots: Iterable[str]) -> None:
        """The library roots: tags are written only to files inside them (symlinks resolved)."""
        self.roots = real_roots(roots)

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
            summary.failure_kinds[item.kind.value] += 1
        log.log(logging.INFO if item.status == "skipped" else logging.ERROR,
                "%s: %s", item.path, item.error)
        if self.dry_run:
            self._propose(path=item.path, error=f"{item.status}: {item.error}")
            return
        with self.catalogue.batch():
            self.catalogue.record_failure(item.path, item.error, size=item.size,
                                          mtime_ns=item.mtime_ns, status=item.status,
                                          format=item.format, content_id=item.content_id,
                                          kind=item.kind)

    def _propose(self, **proposal) -> None:
        if self.hooks.on_proposal is not None:
            self.hooks.on_proposal(proposal)
            return
        if proposal.get("error"):
            print(f"{proposal['path']}: {proposal['error']}", file=self.out)
            return
        before = "; ".join(proposal["existing"]) or "(no genre)"
        after = ("; ".join(proposal["proposed"]) if proposal["proposed"]
                 else f"unchanged ({proposal['reason'] or 'already set'})")
        print(f"{proposal['path']}: {before} -> {after} [{proposal['genre']} "
              f"{proposal['confidence']:.2f}]", file=self.out)

    def _count_decision(self, decision: TagDecision, summary: Summary) -> None:
        if decision.not_written is NotWritten.BELOW_THRESHOLD:
            summary.below_threshold += 1
        elif not decision.genres:
            summary.kept += 1
        if decision.not_written is not None:
            summary.not_written[decision.not_written.value] += 1

    def _dry_run_line(self, item: WorkItem, result: TrackResult, summary: Summary) -> None:
        summary.classified += 1
        summary.ties += result.vote.tie
        try:
            existing = user_genres(self.catalogue, item.path, tags.read_genres(item.path))
        except TaggerError as exc:
            summary.failures[f"cannot read tags: {exc.message}"] += 1
            summary.failure_kinds[FailureKind.TAG_WRITE.value] += 1
            self._propose(path=item.path, error=f"cannot read tags: {exc.message}")
            return
        decision = decide_tags(result.vote, existing, self.config.tags)
        if decision.genres:
            decision = self._respect_correction(item.path, decision)
        self._count_decision(decision, summary)
        summary.tagged += bool(decision.genres)
        self._propose(path=item.path, existing=list(existing), proposed=list(decision.genres),
                      genre=result.vote.genre, confidence=round(result.vote.confidence, 4),
                      tie=result.vote.tie,
                      not_written=decision.not_written.value if decision.not_written else None,
                      reason=decision.reason, error=None)

    def record(self, item: WorkItem, result: TrackResult, summary: Summary) -> None:
        """Decide and write the tags of one classified file, then catalogue its result."""
        if self.dry_run:
            self._dry_run_line(item, result, summary)
            return
        path, outcome = item.path, result.vote
        summary.classified += 1
        summary.ties += outcome.tie
        stat, tag_error, decision, info = (item.size, item.mtime_ns), None, None, None
        kind = FailureKind.TAG_WRITE
        try:
            info = tags.read_info(path)  # the one tag read: genres, artist, album
            existing = user_genres(self.catalogue, path, info.genres)
            decision = decide_tags(outcome, existing, self.config.tags)
            if decision.genres:
                decision = self._respect_correction(path, decision)
            if decision.genres and not is_inside(path, self.roots):
                # library.follow_symlinks: read through a link to outside, never written
                log.info("%s: not writing tags: %s", path, outside_reason(path))
                decision = TagDecision((), NotWritten.OUTSIDE_LIBRARY, os.path.realpath(path))
            if decision.genres:
                stat = self._write_tags(path, decision.genres, outcome.confidence, summary)
            self._count_decision(decision, summary)
        except (ReadError, WriteError, OSError) as exc:
            tag_error = f"tag write failed: {getattr(exc, 'message', None) or exc}"
            cause = exc if isinstance(exc, OSError) else exc.__cause__
            if isinstance(cause, OSError) and cause.errno in (errno.EACCES, errno.EPERM):
                kind = FailureKind.PERMISSION
        with self.catalogue.batch():
            self.catalogue.record_result(
                result, size=stat[0], mtime_ns=stat[1], content_id=item.content_id,
                format=item.format, not_written=decision.not_written if decision else None)
            if info is not None:
                held = decision.genres if decision and decision.genres and not tag_error \
                    else info.genres
                self.catalogue.set_track_tags(
                    path, info.artist, info.album, normalise_genres(held),
                    normalise_genres(label_genres(self.catalogue, path, info.genres, existing)))
            if tag_error:
                self.catalogue.record_failure(path, tag_error, size=stat[0], mtime_ns=stat[1],
                                              kind=kind)
        if tag_error:
            summary.failures[tag_error] += 1
            summary.failure_kinds[kind.value] += 1
            log.error("%s: %s", path, tag_error)
        elif decision.genres:
            log.log(self.hooks.tagged_log_level, "%s: tagged %s (%.2f%s)", path,
                    "; ".join(decision.genres), outcome.confidence, ", tie" if outcome.tie else "")
        else:
            log.log(self.hooks.tagged_log_level, "%s: %s %.2f, not written: %s", path,
                    outcome.genre, outcome.confidence,
                    decision.reason or "the file already says it")
        if self.hooks.recorded is not None:
            self.hooks.recorded(path)

    def _respect_correction(self, path: str, decision: TagDecision) -> TagDecision:
        """The user's correction in force outranks the policy (even ``tags.write = always``):
        nothing is written over the genre the user gave, nor into a file they said is not
        music. Asked only when something would be written."""
        veto = correction_veto(self.catalogue, path, decision.genres)
        return decision if veto is None else TagDecision((), *veto)

    def _write_tags(self, path: str, genres: tuple[str, ...], confidence: float,
                    summary: Summary) -> tuple[int, int]:
        """Write the genre, recording the old values *before* the file changes.

        The planned change is committed first, so a kill at any instant can lose neither the
        user's old value nor the file; a write that then fails marks its record reverted.
        Returns the file's (size, mtime_ns) afterwards.
        """
        confidence = confidence if self.config.tags.write_confidence else None
        if not is_inside(path, self.roots):  # checked again at the last moment
            raise WriteError(outside_reason(path), path)
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
        if not dry_run:  # a dry run creates nothing, not even the state dir
            use_private_temp(config.state_path)  # before the fork server picks its socket dir
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
        try:
            for ready in [pool.submit(_worker_ready) for _ in range(self.workers)]:
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


# ---------------------------------------------------------------- interrupted tag writes


# ---------------------------------------------------------------- one-shot scan


def plan_scan(roots: list[str], config: Config, catalogue, *, force: bool,
              report: WalkReport, retry_failed: bool = False,
              left_failed: list[str] | None = None) -> tuple[list[FoundFile], list[str], int, int]:
    """Walk the roots and compare with the catalogue.

    Returns (files to process, paths gone missing, files seen, files unchanged). A file that
    failed before is processed again when it changed, when its failure was transient (the
    worker died, a timeout, a permission problem) or with ``retry_failed``; the unchanged
    failed files left alone are appended to ``left_failed`` when given. A root that is missing
    or suddenly empty while the catalogue knows files under it marks nothing missing.
    """
    files = [r for r in roots if os.path.isfile(r)]  # a file given by name is scanned as such
    roots = [r for r in roots if r not in files]
    found = list(walk(roots, config.library, report))
    for path in files:
        st = os.stat(path)
        found.append(FoundFile(os.path.abspath(path), st.st_size, st.st_mtime_ns))
    known = catalogue.known_files(roots) if catalogue is not None else {}
    if catalogue is not None and files:
        known.update(catalogue.file_states(os.path.abspath(p) for p in files))
    kinds: dict[str, FailureKind | None] | None = None
    todo, unchanged = [], 0
    for f in found:
        previous = known.get(f.path)
        same = (previous is not None and previous[2] in ("done", "skipped", "failed")
                and previous[0] == f.size and previous[1] == f.mtime_ns)
        if same and previous[2] == "failed" and not force:
            if kinds is None:
                kinds = {x.path: x.kind for x in catalogue.failures()}
            kind = kinds.get(f.path)
            if retry_failed or kind is None or kind.transient:
                todo.append(f)
                continue
            if left_failed is not None:
                left_failed.append(f.path)
        if same and not force:
            unchanged += 1
        else:
            todo.append(f)
    seen = {f.path for f in found} | {p for p, _ in report.skipped_links}
    seen |= {printable_name(p) for p in report.skipped_names}
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


def record_skipped(catalogue, report: WalkReport, summary: Summary) -> None:
    """Give what a walk did not take a catalogue row with its reason: links leading outside
    the library and non-files are ``skipped``; names that are not valid UTF-8 are ``failed``
    (under a printable form of the name: they cannot be tagged)."""
    if not (report.skipped_links or report.skipped_names):
        return
    with catalogue.batch():
        for path, reason in report.skipped_links:
            catalogue.record_failure(path, reason, status="skipped")
            summary.skipped += 1
        for path in report.skipped_names:
            reason = "the file name is not valid UTF-8; rename it to have it tagged"
            catalogue.record_failure(printable_name(path), reason)
            summary.failures[reason] += 1
            summary.failure_kinds[FailureKind.UNREADABLE.value] += 1


def scan(roots: list[str], config: Config, catalogue, *, force: bool = False,
         dry_run: bool = False, workers: int = 0, out: TextIO | None = None,
         engine: ScanEngine | None = None,
         should_stop: Callable[[], bool] = lambda: False, retry_failed: bool = False,
         progress: Callable[[int], Progress] | None = None,
         on_proposal: Callable[[dict], None] | None = None,
         on_phase: Callable[[str], None] | None = None) -> Summary:
    """One pass over the library: classify what is new or changed, tag it, catalogue it.

    When ``should_stop()`` turns true, the batch being recorded is finished and committed,
    the files not classified yet stay pending for the next run, and the summary says it was
    interrupted. ``progress(total)`` makes the object told of each finished file (default:
    :class:`Progress`); ``on_phase`` hears what is starting ("loading", "classifying") for
    a display; ``on_proposal``: see :class:`EngineHooks`.
    """
    started = time.monotonic()
    report = WalkReport()
    left_failed: list[str] = []
    todo, missing, seen, unchanged = plan_scan(roots, config, catalogue, force=force,
                                               report=report, retry_failed=retry_failed,
                                               left_failed=left_failed)
    for problem in report.unreadable_dirs:
        log.warning("cannot read folder %s", problem)
    for name in report.skipped_names:
        log.warning("skipped a name that is not valid UTF-8: %r", name)
    for path, reason in report.skipped_links:
        log.warning("skipped %s: %s", path, reason)
    summary = Summary(seen=seen, unchanged=unchanged, left_failed=len(left_failed),
                      dry_run=dry_run)
    if not dry_run:
        record_skipped(catalogue, report, summary)
        recover_interrupted_writes(catalogue, roots)
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
    own_engine = engine is None
    if own_engine:
        if on_phase:
            on_phase("loading")
        engine = make_engine(config, catalogue, workers=workers, dry_run=dry_run, out=out,
                             hooks=EngineHooks(on_proposal=on_proposal))
        engine.start()  # a pool that cannot start is one clear error, not one per file
    progress = (progress or Progress)(len(todo))
    engine.recorder.use_roots(roots)
    try:
        if on_phase:
            on_phase("classifying")
        engine.process(todo, summary, progress, should_stop)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        progress.close()
        if own_engine:
            engine.close()
        summary.elapsed_s = time.monotonic() - started
    return summary
