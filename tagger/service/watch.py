"""``tagger watch``: the background service that keeps a library tagged as it changes.

One process, one writer. A watchdog observer (inotify, or polling for network mounts) feeds
file events to a handler that only filters them (ignore patterns, audio extensions) and
records them in thread-safe structures: a per-path debounce table (path -> last stat, time
of the last event, whether a write is still open), an ordered list of moves, and pending
deletions. The main thread is the only one that writes tags and the catalogue. It loops:

* moves are applied in order with ``Catalogue.move``/``move_prefix``: no new inference;
* deletions wait until their root has been quiet for ``settle_seconds`` and are then marked
  missing, unless the root is gone or looks empty (an unmounted NAS): then the root is
  *paused* (a warning, nothing marked missing) until it comes back, when it is rescanned;
* a file is taken once it is complete: its write was closed (inotify's close-after-write; the
  polling observer has no such event) and its size and mtime_ns were stable for
  ``settle_seconds``, checked again right before. If size and mtime equal the catalogue's
  row, nothing changed (tagger's own tag write, or a mere read): it is dropped. The rest
  goes to :class:`tagger.service.scan.Engine` in batches. A file that fails to decode while young
  (mtime within ``2 x settle_seconds``) goes back to the table instead of being marked failed.

APScheduler (3.x, in-process) runs the periodic reconcile rescan (``rescan_interval_minutes``
or ``rescan_cron``; coalesced, one at a time), which walks the roots off the main thread and
hands the differences to it (it recovers whatever events the kernel dropped; an inotify queue
overflow also triggers one at once), and the retry of failed files with exponential backoff.
On start, tracks whose newest prediction came from other weights or another genre
vocabulary are requeued, and planned tag writes a kill interrupted are reconciled.

The daemon holds the :class:`~tagger.library.lock.WriterLock` for its whole life and writes a small
JSON status file (``<state_dir>/watch-<hash of the database URL>.json``, atomically, every
few seconds and on change) that ``tagger status`` reads.
"""

from __future__ import annotations

import datetime as dt
import errno
import fnmatch
import hashlib
import itertools
import json
import logging
import os
import re
import threading
import time
from collections import deque
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from tagger.config import Config
from tagger.errors import ConfigError, ReadError, TaggerError
from tagger.library import tags
from tagger.library.catalogue import CatalogueGoneError, open_catalogue, safe_url
from tagger.library.discover import (
    OWN_TEMP_PATTERN,
    FoundFile,
    WalkReport,
    is_audio_name,
    is_ignored,
)
from tagger.library.journal import recover_interrupted_writes
from tagger.library.lock import WriterLock
from tagger.library.paths import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE
from tagger.service.scan import (
    EngineHooks,
    ScanEngine,
    Summary,
    WorkItem,
    lower_priority,
    make_engine,
    plan_scan,
)

log = logging.getLogger(__name__)

#: File system types whose changes inotify cannot see (made on another machine).
NETWORK_FS = frozenset({
    "cifs", "smb3", "smbfs", "nfs", "nfs4", "ncpfs", "afs", "ceph", "glusterfs", "9p",
    "davfs", "fuse", "sshfs", "lustre", "gpfs", "beegfs",
})
TICK_S = 0.1  # main loop period
ROOT_CHECK_S = 2.0  # how often the roots are checked for being gone or empty
STATUS_EVERY_S = 2.0  # status file heartbeat (it is also written on every change)
BATCH_MAX = 256  # files handed to the engine at once (moves and deletions wait no longer)
WATCH_MARGIN = 512  # inotify watches left for other programs before auto prefers polling
_INOTIFY_DIR = Path("/proc/sys/fs/inotify")


class WatchError(TaggerError):
    """The daemon cannot watch what it was asked to (exit code 3)."""


# ---------------------------------------------------------------- status file


def status_path(config: Config) -> Path:
    """Where the daemon for this catalogue writes its status (beside its writer lock)."""
    digest = hashlib.sha256(config.database_url.encode()).hexdigest()[:12]
    return config.state_path / f"watch-{digest}.json"


def write_json_atomically(path: Path, data: dict) -> None:
    path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
    with open(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_status(config: Config) -> dict:
    """What ``tagger status`` shows: ``running`` (the daemon holds the writer lock), ``holder``
    (whoever holds it, e.g. a ``tagger scan``), ``path`` and ``status`` (the file's content,
    None when there is none)."""
    path = status_path(config)
    holder = WriterLock(config.state_path, config.database_url, "tagger status").holder()
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        status = None
    except (OSError, ValueError) as exc:
        raise ReadError(f"cannot read the daemon's status file: {exc}", path) from None
    running = bool(holder and "tagger watch" in holder and (
        status is None or f"pid {status.get('pid')} " in holder + " "))
    return {"running": running, "holder": holder, "path": str(path), "status": status}


def format_status(info: dict) -> str:
    """``tagger status`` for people."""
    status = info["status"]
    lines = []
    if info["running"]:
        lines.append(f"tagger watch is running ({info['holder']})")
    elif info["holder"]:
        lines.append(f"tagger watch is not running; the catalogue is being written by "
                     f"{info['holder']}")
    else:
        lines.append("tagger watch is not running")
    if status is None:
        lines.append(f"no status file at {info['path']}")
        return "\n".join(lines)
    if not info["running"]:
        how = ("it stopped cleanly" if status.get("state") == "stopped"
               else f"it did not stop cleanly (last state: {status.get('state')})")
        lines.append(f"last status {status.get('updated')} from pid {status.get('pid')}: {how}")
    lines.append(f"state: {status.get('state')}, since {status.get('started')}")
    lines.append(f"catalogue: {status.get('database')}")
    lines.append(f"observer: {status.get('observer')}")
    for root, obs in (status.get("observers") or {}).items():
        lines.append(f"  {root}: {obs['type']} ({obs['reason']})")
    for root, reason in (status.get("paused") or {}).items():
        lines.append(f"  PAUSED {root}: {reason}")
    lines.append(f"queue: {status.get('queue')}")
    lines.append(
        f"processed: {status.get('processed')} ({status.get('tagged')} tagged), "
        f"failed: {status.get('failed')}, skipped: {status.get('skipped')}, "
        f"moved: {status.get('moved')}, missing: {status.get('missing')}")
    last = status.get("last_error")
    lines.append(f"last error: {last['time']} {last['message']}" if last else "last error: none")
    lines.append(f"next rescan: {status.get('next_rescan') or '-'}")
    return "\n".join(lines)


# ---------------------------------------------------------------- observer choice


def _unescape_mount(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def read_mounts(text: str | None = None) -> list[tuple[str, str]]:
    """``(mount point, file system type)`` from ``/proc/self/mountinfo`` (or ``/proc/mounts``
    format), in table order."""
    if text is None:
        for source in ("/proc/self/mountinfo", "/proc/mounts"):
            try:
                text = Path(source).read_text(encoding="utf-8", errors="replace")
                break
            except OSError:
                continue
        else:
            return []
    mounts = []
    for line in text.splitlines():
        if " - " in line:  # mountinfo: id parent maj:min root MOUNTPOINT options... - TYPE ...
            left, right = line.split(" - ", 1)
            fields, rest = left.split(), right.split()
            if len(fields) < 5 or not rest:
                continue
            mounts.append((_unescape_mount(fields[4]), rest[0]))
        else:  # mounts: source MOUNTPOINT TYPE options
            fields = line.split()
            if len(fields) >= 3:
                mounts.append((_unescape_mount(fields[1]), fields[2]))
    return mounts


def filesystem_type(path: str, mounts: list[tuple[str, str]]) -> str | None:
    """The type of the file system ``path`` lives on (the longest, latest matching mount)."""
    real = os.path.realpath(path)
    best: tuple[str, str] | None = None
    for point, fstype in mounts:
        if real == point or real.startswith(point.rstrip("/") + "/"):
            if best is None or len(point) >= len(best[0]):
                best = (point, fstype)
    return best[1] if best else None


def is_network_fs(fstype: str | None) -> bool:
    return bool(fstype) and (fstype in NETWORK_FS or fstype.startswith("fuse."))


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def count_dirs(roots: Iterable[str], limit: int) -> int:
    """Folders under ``roots`` (each needs one inotify watch); stops counting past ``limit``."""
    n = 0
    for root in roots:
        for _ in os.walk(root):
            n += 1
            if n > limit:
                return n
    return n


def inotify_watches_held() -> int | None:
    """Inotify watches this process holds now (``/proc/self/fdinfo``), None when it has no
    inotify instance. watchdog adds its watches in its own threads and a refused add
    (ENOSPC: the per-user limit, which other programs share) does not reach us: this count is
    how a partly watched tree is noticed."""
    total, found = 0, False
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as info:
                total += sum(line.startswith("inotify wd:") for line in info)
            found = True
        except OSError:
            continue
    return total if found else None


def unwatched_folders(roots: list[str], settle_s: float = 10.0) -> tuple[int, int]:
    """(folders under ``roots``, how many of them inotify does not watch), once the observer's
    threads have added what they could (the count stops growing)."""
    wanted = count_dirs(roots, 1 << 30)
    deadline = time.monotonic() + settle_s
    held, still_since = inotify_watches_held() or 0, time.monotonic()
    while held < wanted and time.monotonic() < deadline:
        time.sleep(0.1)
        now_held = inotify_watches_held() or 0
        if now_held != held:
            held, still_since = now_held, time.monotonic()
        elif held and time.monotonic() - still_since >= 1.0:
            break  # stopped growing: that is all the kernel gave
    return wanted, max(0, wanted - held)


def choose_observers(roots: list[str], mode: str, mounts: list[tuple[str, str]] | None = None,
                     max_watches: int | None = None) -> dict[str, tuple[str, str]]:
    """``{root: (native | polling, reason)}`` by ``watch.observer``: ``auto`` polls roots on
    network file systems, and every root when the folders need more inotify watches than
    ``fs.inotify.max_user_watches`` allows."""
    if mode in ("native", "polling"):
        return {r: (mode, f"watch.observer = {mode}") for r in roots}
    mounts = read_mounts() if mounts is None else mounts
    chosen: dict[str, tuple[str, str]] = {}
    for root in roots:
        fstype = filesystem_type(root, mounts)
        if is_network_fs(fstype):
            chosen[root] = ("polling", f"auto: on a network file system ({fstype})")
        else:
            chosen[root] = ("native", f"auto: inotify on {fstype or 'a local file system'}")
    native = [r for r, (kind, _) in chosen.items() if kind == "native"]
    if max_watches is None:
        max_watches = _read_int(_INOTIFY_DIR / "max_user_watches")
    if native and max_watches:
        dirs = count_dirs(native, max_watches)
        if dirs + WATCH_MARGIN > max_watches:
            for root in native:
                chosen[root] = ("polling", f"auto: {dirs} folders need more inotify watches "
                                           f"than fs.inotify.max_user_watches ({max_watches})")
    return chosen


# ---------------------------------------------------------------- engine progress


class _BatchProgress:
    """What Engine.process reports progress to: counts down the files in the current batch."""

    def __init__(self, watcher: "Watcher"):
        self.watcher = watcher

    def advance(self, count: int = 1) -> None:
        self.watcher._in_batch = max(0, self.watcher._in_batch - count)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- events


@dataclass
class _Entry:
    """A path waiting to settle."""

    stat: tuple[int, int] | None = None  # (size, mtime_ns) at the last event or check
    since: float = 0.0  # monotonic time of the last event or stat change
    writing: bool = False  # written to and not closed since (inotify only)
    retry: bool = False  # a failed file due for another attempt

    def due(self, now: float, settle: float, grace: float) -> bool:
        quiet = now - self.since
        return quiet >= settle and (not self.writing or quiet >= grace)


class _Handler(FileSystemEventHandler):
    """Runs in the observer's thread: filters, then hands the event to the watcher."""

    def __init__(self, watcher: "Watcher", root: str, native: bool):
        self.watcher, self.root, self.native = watcher, root, native

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            self.watcher._on_event(self.root, event, self.native)
        except Exception:  # never let one event kill the observer thread
            log.exception("cannot handle %s", event)


class _OverflowSpy(logging.Handler):
    """watchdog only logs an inotify queue overflow: notice it, to rescan at once."""

    def __init__(self, callback: Callable[[], None]):
        super().__init__(logging.WARNING)
        self.callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.callback()


class _LastError(logging.Handler):
    """Keeps the newest ERROR logged by tagger, for the status file."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.last: dict | None = None
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001
            message = str(record.msg)
        self.count += 1
        self.last = {"time": _iso(time.time()), "message": " ".join(message.split())[:500]}


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).astimezone().isoformat(
        timespec="seconds")


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _prefix(directory: str) -> str:
    return os.path.join(directory, "")


# ---------------------------------------------------------------- the daemon


class Watcher:
    """The daemon: ``Watcher(roots, config).run(should_stop)`` until ``should_stop()`` or
    :meth:`stop`. ``classifier`` and ``workers`` are for tests and benches; ``recorded`` is
    called with each classified file's path once its result is committed."""

    def __init__(self, roots: Iterable[str], config: Config, *, classifier=None,
                 workers: int = 0, recorded: Callable[[str], None] | None = None):
        roots = [os.path.abspath(r) for r in roots]
        if not roots:
            raise ConfigError("no folder to watch")
        # a root inside another is watched through the outer one
        self.roots = [r for r in dict.fromkeys(roots)
                      if not any(o != r and r.startswith(_prefix(o)) for o in roots)]
        self.config = config
        self.watch = config.watch
        self.settle = config.watch.settle_seconds
        self.grace = max(60.0, 12 * self.settle)  # a write never seen closed counts as done
        self.young_s = max(2 * self.settle, 1.0)
        self.classifier = classifier
        self.workers = workers
        self.recorded = recorded
        self.status_file = status_path(config)
        self._trigger = self._make_trigger()  # fails early on a bad rescan_cron

        self._lock = threading.Lock()
        self._pending: dict[str, _Entry] = {}
        self._moves: deque[tuple[str | None, str, bool]] = deque()
        self._deletes: dict[str, tuple[float, bool]] = {}
        self._plans: deque[list] = deque()
        self._stop = threading.Event()
        self._should_stop: Callable[[], bool] = lambda: False
        self._rescan_requested = threading.Event()
        self._rescan_running = False
        self._plan_applied = threading.Event()
        self._retry_due = threading.Event()
        self.started = threading.Event()  # set once watching (after the initial reconcile)

        self.state = "starting"
        self.started_at = time.time()
        self.summary = Summary()
        self.moved = self.missing = self.found = self.unchanged = self.deferred = 0
        self.paused: dict[str, str] = {}
        self.observers: dict[str, tuple[str, str]] = {}
        self._root_ok_last: dict[str, bool] = {}
        self._root_present_last: dict[str, bool] = {}
        self._in_batch = 0
        self._roots_checked = 0.0
        self._taken_at = 0.0
        self._status_stop = False
        self._last_error = _LastError()
        self._observer_objs: dict[str, object] = {}  # kind -> watchdog observer
        self._watches: dict[str, tuple[object, object]] = {}  # root -> (observer, watch)
        self._scheduler = None
        self.catalogue = None
        self._writer_lock: WriterLock | None = None
        self.engine: ScanEngine | None = None

    # -- public ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the daemon to stop (from any thread): intake stops, the files in the workers
        are finished and committed, then :meth:`run` returns."""
        self._stop.set()

    def stopping(self) -> bool:
        return self._stop.is_set() or self._should_stop()

    def run(self, should_stop: Callable[[], bool] | None = None) -> Summary:
        """Hold the writer lock, reconcile, then watch until asked to stop."""
        if should_stop is not None:
            self._should_stop = should_stop
        lock = WriterLock(self.config.state_path, self.config.database_url, "tagger watch")
        lock.acquire()
        self._writer_lock = lock
        tagger_log = logging.getLogger("tagger")
        tagger_log.addHandler(self._last_error)
        spy = _OverflowSpy(self._on_overflow)
        logging.getLogger("apscheduler").setLevel(
            max(logging.WARNING, logging.getLogger("apscheduler").getEffectiveLevel()))
        watchdog_log = logging.getLogger("watchdog.observers.inotify_c")
        watchdog_log.addHandler(spy)
        if watchdog_log.getEffectiveLevel() > logging.WARNING:
            watchdog_log.setLevel(logging.WARNING)
        status_thread = threading.Thread(target=self._status_loop, name="tagger-status",
                                         daemon=True)
        try:
            self._write_status()
            status_thread.start()
            self._start()
            while not self.stopping():
                self._tick()
                self._stop.wait(TICK_S)
            self.state = "stopping"
            log.info("stopping: intake stopped, in-flight work finished")
        finally:
            self._shutdown()
            self.state = "stopped"
            self._status_stop = True
            if status_thread.is_alive():
                status_thread.join(timeout=5)
            self._write_status()
            tagger_log.removeHandler(self._last_error)
            watchdog_log.removeHandler(spy)
            lock.release()
        return self.summary

    def status(self) -> dict:
        """The status file's content."""
        with self._lock:
            queue = len(self._pending) + len(self._deletes) + len(self._moves)
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
            "started": _iso(self.started_at),
            "updated": _iso(time.time()),
            "database": safe_url(self.config.database_url),
            "roots": self.roots,
            "observer": observer,
            "observers": {r: {"type": k, "reason": why} for r, (k, why) in self.observers.items()},
            "paused": dict(self.paused),
            "queue": queue + self._in_batch,
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
            "next_rescan": self._next_rescan(),
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
        # a daemon says what it did to each file
        hooks = EngineHooks(defer_failure=self._defer, recorded=self.recorded,
                            tagged_log_level=logging.INFO)
        self.engine = make_engine(self.config, self.catalogue, classifier=self.classifier,
                                  workers=self.workers, hooks=hooks)
        self.engine.recorder.use_roots(self.roots)
        info = self.engine.model_info
        log.info("watching %s with model %s %s; catalogue %s", ", ".join(self.roots),
                 info.name, info.sha256[:12], self.catalogue.url)
        recover_interrupted_writes(self.catalogue, self.roots)
        requeued = self.catalogue.requeue_stale(info.sha256, info.vocabulary)
        if requeued:
            log.info("%d tracks were classified by another model or genre vocabulary: "
                     "requeued", requeued)
        for root in self.roots:
            self._root_present_last[root] = os.path.isdir(root)
            if not self._root_present_last[root]:
                log.warning("%s is not there (not mounted yet?): it is watched once it "
                            "appears", root)
        self._start_observers()
        self.state = "scanning"
        self._apply_plan(self._plan(self.roots))
        self._start_scheduler()
        self.state = "watching"
        self.started.set()
        log.info("watching: %s", self.status()["observer"])

    def _shutdown(self) -> None:
        for observer in list(self._observer_objs.values()):
            try:
                observer.stop()
            except Exception:  # noqa: BLE001
                log.debug("observer stop failed", exc_info=True)
        for observer in list(self._observer_objs.values()):
            if observer.is_alive():
                observer.join(timeout=5)
        if self._scheduler is not None:
            self._plan_applied.set()
            try:
                self._scheduler.shutdown(wait=False)
            except Exception:  # noqa: BLE001
                pass
        try:
            if self.catalogue is not None:
                moves = self._take_moves()
                if moves:
                    self._apply_moves(moves)
        except TaggerError as exc:
            log.error("%s", exc)
        if self.engine is not None:
            self.engine.close()
        if self.catalogue is not None:
            self.catalogue.close()

    # -- observers -------------------------------------------------------------------------

    def _start_observers(self) -> None:
        self.observers = choose_observers(self.roots, self.watch.observer)
        native = [r for r, (kind, _) in self.observers.items() if kind == "native"]
        if native:
            try:
                self._start_observer("native", native)
                self._check_coverage(native)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                if exc.errno in (errno.ENOSPC, errno.EMFILE) and "limit" not in reason:
                    reason = {errno.ENOSPC: "inotify watch limit reached",
                              errno.EMFILE: "inotify instance limit reached"}[exc.errno]
                if self.watch.observer == "native":
                    raise WatchError(f"cannot watch with inotify: {reason} (raise "
                                     "fs.inotify.max_user_watches / max_user_instances, or "
                                     "set watch.observer = \"polling\")") from None
                for root in native:
                    self.observers[root] = ("polling", f"auto: {reason}")
        polling = [r for r, (kind, _) in self.observers.items() if kind == "polling"]
        if polling:
            self._start_observer("polling", polling)
        for root, (kind, reason) in self.observers.items():
            if kind == "polling":
                log.warning("%s: polling every %g s (%s)", root,
                            self.watch.poll_interval_seconds, reason)
            else:
                log.info("%s: inotify (%s)", root, reason)

    def _check_coverage(self, native: list[str]) -> None:
        """Every folder must really be watched: fewer watches than folders means the
        per-user inotify limit ran out (ENOSPC) part way; raised as such, so ``native`` stops
        with the documented error and ``auto`` polls those roots instead."""
        wanted, missing = unwatched_folders([r for r in native if os.path.isdir(r)])
        if not missing:
            return
        observer = self._observer_objs.pop("native", None)
        for root in native:
            self._watches.pop(root, None)
        if observer is not None:
            observer.stop()
            observer.join(10)
        raise OSError(errno.ENOSPC, f"inotify watch limit reached: {missing} of {wanted} "
                                    "folders could not be watched")

    def _start_observer(self, kind: str, roots: list[str]) -> None:
        if kind == "native":
            from watchdog.observers.inotify import InotifyObserver

            observer = InotifyObserver()
        else:
            from watchdog.observers.polling import PollingObserver

            observer = PollingObserver(timeout=self.watch.poll_interval_seconds)
        try:
            for root in roots:
                if os.path.isdir(root):
                    watch = observer.schedule(_Handler(self, root, kind == "native"), root,
                                              recursive=True)
                    self._watches[root] = (observer, watch)
            observer.start()
        except BaseException:
            for root in roots:
                self._watches.pop(root, None)
            try:
                observer.stop()
            except Exception:  # noqa: BLE001
                pass
            raise
        self._observer_objs[kind] = observer

    def _rewatch(self, root: str) -> None:
        """Watch a root afresh (it came back: a new folder, or a remounted file system)."""
        kind = self.observers.get(root, ("native", ""))[0]
        observer = self._observer_objs.get(kind)
        if observer is None:
            return
        old = self._watches.pop(root, None)
        if old is not None:
            try:
                observer.unschedule(old[1])
            except Exception:  # noqa: BLE001 - its emitter may have stopped already
                pass
        try:
            watch = observer.schedule(_Handler(self, root, kind == "native"), root,
                                      recursive=True)
            self._watches[root] = (observer, watch)
        except OSError as exc:
            log.error("cannot watch %s again: %s", root, exc)

    # -- scheduler -------------------------------------------------------------------------

    def _make_trigger(self):
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        if self.watch.rescan_cron:
            try:
                return CronTrigger.from_crontab(self.watch.rescan_cron)
            except ValueError as exc:
                raise ConfigError(f"'watch.rescan_cron' is not a crontab expression: {exc}",
                                  self.config.source) from None
        return IntervalTrigger(minutes=self.watch.rescan_interval_minutes)

    def _start_scheduler(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        scheduler = BackgroundScheduler(daemon=True, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        scheduler.add_job(self._scheduled_rescan, self._trigger, id="rescan",
                          name="reconcile rescan")
        retry_every = min(max(self.watch.retry_base_seconds / 4, 0.5), 60.0)
        scheduler.add_job(self._retry_due.set, IntervalTrigger(seconds=retry_every), id="retry",
                          name="retry failed files")
        scheduler.start()
        self._scheduler = scheduler
        self._retry_due.set()  # failures left by an earlier run are looked at once now

    def _next_rescan(self) -> str | None:
        scheduler = self._scheduler
        if scheduler is None or self.state in ("stopping", "stopped"):
            return None
        try:
            job = scheduler.get_job("rescan")
        except Exception:  # noqa: BLE001
            return None
        when = getattr(job, "next_run_time", None) if job else None
        return when.isoformat(timespec="seconds") if when else None

    def _on_overflow(self) -> None:
        log.warning("events were lost (inotify queue overflow): rescanning now")
        self.request_rescan()

    def request_rescan(self) -> None:
        """Run the reconcile rescan now (coalesced with one already running)."""
        self._rescan_requested.set()
        scheduler = self._scheduler
        if scheduler is not None and not self._rescan_running:
            try:
                scheduler.modify_job("rescan", next_run_time=dt.datetime.now(dt.timezone.utc))
            except Exception:  # noqa: BLE001 - shutting down
                pass

    def _scheduled_rescan(self) -> None:
        """Scheduler thread: walk (read only), hand the plan to the main thread, wait for it."""
        self._rescan_running = True
        try:
            while not self.stopping():
                self._rescan_requested.clear()
                active = [r for r in self.roots if r not in self.paused]
                plan = self._plan(active)
                self._plan_applied.clear()
                with self._lock:
                    self._plans.append(plan)
                while not self.stopping() and not self._plan_applied.wait(0.5):
                    pass
                if not self._rescan_requested.is_set():
                    break
        except Exception:  # noqa: BLE001
            log.exception("reconcile rescan failed")
        finally:
            self._rescan_running = False

    # -- events (observer threads) ----------------------------------------------------------

    def _wanted_dir(self, root: str, path: str) -> bool:
        if path == root:
            return True
        if not path.startswith(_prefix(root)):
            return False
        ignore = self.config.library.ignore
        return not any(is_ignored(part, ignore) or fnmatch.fnmatchcase(part, OWN_TEMP_PATTERN)
                       for part in path[len(_prefix(root)):].split(os.sep))

    def _wanted(self, root: str, path: str) -> bool:
        return (self._wanted_dir(root, path) and path != root
                and is_audio_name(os.path.basename(path), self.config.library.extensions))

    def _on_event(self, root: str, event: FileSystemEvent, native: bool) -> None:
        kind = event.event_type
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path) if event.dest_path else ""
        if event.is_directory:
            if kind == "moved" and not event.is_synthetic:  # (its subfolders: covered)
                self._dir_moved(root, src, dest)
            elif kind == "deleted":
                self._deleted(root, src, is_dir=True)
            return
        if kind in ("opened", "closed_no_write"):  # reads never matter
            return
        if kind == "moved":
            if not event.is_synthetic:  # files of a moved folder: the folder's move covers them
                self._file_moved(root, src, dest)
        elif kind == "deleted":
            self._deleted(root, src, is_dir=False)
        elif kind in ("created", "modified", "closed", "attrib"):
            if self._wanted(root, src):
                self._touch(src, writing=native and kind == "modified",
                            closed=kind == "closed")

    def _touch(self, path: str, *, writing: bool = False, closed: bool = False,
               retry: bool = False, since: float | None = None,
               stat: tuple[int, int] | None = None) -> None:
        stat = stat or _stat(path)
        now = time.monotonic() if since is None else since
        with self._lock:
            entry = self._pending.get(path)
            if entry is None:
                entry = self._pending[path] = _Entry()
            entry.stat, entry.since = stat, now
            if writing:
                entry.writing = True
            if closed:
                entry.writing = False
            entry.retry = entry.retry or retry
            self._deletes.pop(path, None)

    def _file_moved(self, root: str, src: str, dest: str) -> None:
        src_ok, dest_ok = self._wanted(root, src), self._wanted(root, dest)
        if not (src_ok or dest_ok):
            return
        stat, now = _stat(dest), time.monotonic()
        with self._lock:
            entry = self._pending.pop(src, None)
            if dest_ok:
                self._deletes.pop(dest, None)
                if entry is None:
                    # from an ignored name (tagger's own temp file, a .part download): a new or
                    # changed file, complete; or a plain rename: checked against the catalogue
                    entry = _Entry()
                entry.stat, entry.since = stat, now
                self._pending[dest] = entry
                if src_ok:
                    self._moves.append((src, dest, False))
            else:  # renamed to an ignored name: gone from the library
                self._deletes[src] = (now, False)

    def _dir_moved(self, root: str, src: str, dest: str) -> None:
        src_ok, dest_ok = self._wanted_dir(root, src), self._wanted_dir(root, dest)
        now = time.monotonic()
        old, new = _prefix(src), _prefix(dest)
        with self._lock:
            if src_ok and dest_ok:
                for table in (self._pending, self._deletes):
                    for path in [p for p in table if p.startswith(old)]:
                        table[new + path[len(old):]] = table.pop(path)
                self._moves.append((src, dest, True))
            elif dest_ok:  # from an ignored or unwatched name: its files are new here
                self._moves.append((None, dest, True))
            elif src_ok:
                for path in [p for p in self._pending if p.startswith(old)]:
                    del self._pending[path]
                self._deletes[src] = (now, True)

    def _deleted(self, root: str, path: str, *, is_dir: bool) -> None:
        if not (self._wanted_dir(root, path) if is_dir else self._wanted(root, path)):
            return
        now = time.monotonic()
        with self._lock:
            if is_dir:
                old = _prefix(path)
                for p in [p for p in self._pending if p.startswith(old)]:
                    del self._pending[p]
            else:
                self._pending.pop(path, None)
            self._deletes[path] = (now, is_dir)

    # -- the main loop ---------------------------------------------------------------------

    def _tick(self) -> None:
        try:
            with self._lock:
                plans = list(self._plans)
                self._plans.clear()
            for plan in plans:
                self._apply_plan(plan, requeue=True)
            if plans:
                self._plan_applied.set()
            now = time.monotonic()
            if now - self._roots_checked >= ROOT_CHECK_S:
                self._roots_checked = now
                self._check_roots()
            if self._retry_due.is_set():
                self._retry_due.clear()
                self._queue_retries()
            moves = self._take_moves()
            if moves:
                self._apply_moves(moves)
            self._apply_deletes(time.monotonic())
            self._process_ready()
        except CatalogueGoneError:
            raise  # every later write would be lost: stop, with the error as the reason
        except TaggerError as exc:
            log.error("%s", exc)
            self._stop.wait(1.0)  # e.g. the database is unreachable: do not spin

    def _take_moves(self) -> list[tuple[str | None, str, bool]]:
        with self._lock:
            moves = list(self._moves)
            self._moves.clear()
        return moves

    def _apply_moves(self, moves: list[tuple[str | None, str, bool]]) -> None:
        walk_dirs = []
        with self.catalogue.batch():
            for src, dest, is_dir in moves:
                if src is None:
                    walk_dirs.append(dest)
                elif is_dir:
                    n = self.catalogue.move_prefix(src, dest)
                    if n:
                        self.moved += n
                        log.info("moved folder %s -> %s: %d tracks (no new inference)",
                                 src, dest, n)
                elif self.catalogue.move(src, dest):
                    self.moved += 1
                    log.info("moved: %s -> %s (no new inference)", src, dest)
        for directory in walk_dirs:
            root = self._root_of(directory)
            if root is None:
                continue
            since = time.monotonic()
            for dirpath, dirnames, filenames in os.walk(directory):
                dirnames[:] = [d for d in dirnames
                               if self._wanted_dir(root, os.path.join(dirpath, d))]
                for name in filenames:
                    path = os.path.join(dirpath, name)
                    if self._wanted(root, path):
                        self._touch(path, since=since)

    def _root_of(self, path: str) -> str | None:
        for root in self.roots:
            if path == root or path.startswith(_prefix(root)):
                return root
        return None

    def _root_looks_ok(self, root: str) -> bool:
        """The root exists and holds at least one entry that is not ignored."""
        ignore = self.config.library.ignore
        try:
            with os.scandir(root) as entries:
                return any(not is_ignored(e.name, ignore) for e in entries)
        except OSError:
            return False

    def _known_under(self, root: str) -> int:
        return sum(1 for _, _, status in self.catalogue.known_files([root]).values()
                   if status != "missing")

    def _pause(self, root: str, known: int) -> None:
        reason = (f"{'missing' if not os.path.isdir(root) else 'empty'} while the catalogue "
                  f"knows {known} tracks under it (unmounted?)")
        if root not in self.paused:
            log.warning("%s is %s: paused, nothing is marked missing; waiting for it to "
                        "come back", root, reason)
        self.paused[root] = reason
        old = _prefix(root)
        with self._lock:
            for table in (self._pending, self._deletes):
                for path in [p for p in table if p == root or p.startswith(old)]:
                    del table[path]

    def _check_roots(self) -> None:
        for root in self.roots:
            ok, present = self._root_looks_ok(root), os.path.isdir(root)
            was_ok = self._root_ok_last.get(root, True)
            was_present = self._root_present_last.get(root, True)
            self._root_ok_last[root], self._root_present_last[root] = ok, present
            if root in self.paused:
                if ok:
                    log.warning("%s is back: resuming, rescanning it", root)
                    del self.paused[root]
                    self._rewatch(root)  # a remount or a new folder: the old watch is dead
                    self._apply_plan(self._plan([root]))
            elif present and not was_present:
                log.warning("%s is there now: watching it", root)
                self._rewatch(root)
                self._apply_plan(self._plan([root]))
            elif not ok and was_ok:
                known = self._known_under(root)
                if known:
                    self._pause(root, known)

    def _plan(self, roots: list[str]) -> list[tuple]:
        """Walk ``roots`` and compare with the catalogue (read only: any thread)."""
        plan = []
        for root in roots:
            report = WalkReport()
            todo, missing, seen, _ = plan_scan([root], self.config, self.catalogue,
                                               force=False, report=report)
            for problem in report.unreadable_dirs:
                log.warning("cannot read folder %s", problem)
            plan.append((root, todo, missing, seen, report.temp_dirs))
        return plan

    def _apply_plan(self, plan: list[tuple], requeue: bool = False) -> None:
        """Main thread: apply a reconcile walk's findings."""
        if requeue:  # the model or genre map may differ from that of rows found again
            info = self.engine.model_info
            if self.catalogue.requeue_stale(info.sha256, info.vocabulary):
                for path in self.catalogue.pending_paths():
                    if self._root_of(path) and path not in self._pending:
                        self._touch(path, since=time.monotonic() - self.settle)
        now, wall = time.monotonic(), time.time()
        for root, todo, missing, seen, temp_dirs in plan:
            if root in self.paused:
                continue
            if not seen and not self._root_looks_ok(root):
                known = self._known_under(root)
                if known:
                    self._pause(root, known)
                continue
            for directory in temp_dirs:
                tags.sweep_stale_temp_files(directory)
            gone = [p for p in missing if not os.path.lexists(p)]
            if gone:
                with self.catalogue.batch():
                    n = self.catalogue.mark_missing(gone)
                self.missing += n
                log.info("%s: %d tracks missing", root, n)
            for f in todo:
                old = wall - f.mtime_ns / 1e9 >= self.settle
                self._touch(f.path, stat=(f.size, f.mtime_ns),
                            since=now - self.settle if old else now)
            if todo or gone:
                log.info("%s: reconciled: %d to process, %d missing", root, len(todo),
                         len(gone))

    def _apply_deletes(self, now: float) -> None:
        with self._lock:
            if not self._deletes:
                return
            by_root: dict[str, dict[str, tuple[float, bool]]] = {}
            for path, value in self._deletes.items():
                root = self._root_of(path)
                if root is not None:
                    by_root.setdefault(root, {})[path] = value
            due = {}
            for root, items in by_root.items():
                # deletions wait until the root is quiet: a whole root emptied at once (an
                # unmount, rm -r) is then seen as empty, not as thousands of missing files
                if now - max(t for t, _ in items.values()) >= self.settle:
                    due[root] = items
                    for path in items:
                        del self._deletes[path]
            for path in [p for p in self._deletes if self._root_of(p) is None]:
                del self._deletes[path]
        for root, items in due.items():
            if root in self.paused:
                continue
            if not self._root_looks_ok(root):
                known = self._known_under(root)
                if known:
                    self._pause(root, known)
                    continue
            files = [p for p, (_, is_dir) in items.items()
                     if not is_dir and not os.path.lexists(p)]
            dirs = [p for p, (_, is_dir) in items.items() if is_dir and not os.path.isdir(p)]
            tops: list[str] = []  # nested folders are covered by their parent
            for d in sorted(dirs):
                if not (tops and d.startswith(_prefix(tops[-1]))):
                    tops.append(d)
            for start in range(0, len(tops), 200):  # an OR per folder: keep queries small
                known = self.catalogue.known_files(tops[start:start + 200])
                files += [p for p, (_, _, status) in known.items()
                          if status != "missing" and not os.path.lexists(p)]
            if files:
                with self.catalogue.batch():
                    n = self.catalogue.mark_missing(files)
                self.missing += n
                if n:
                    log.info("%d tracks deleted: marked missing (%s%s)", n, files[0],
                             ", ..." if len(files) > 1 else "")

    def _queue_retries(self) -> None:
        base, limit = self.watch.retry_base_seconds, self.watch.retry_max_attempts
        if limit <= 0:
            return
        now = dt.datetime.now(dt.timezone.utc)
        with self._lock:
            queued = set(self._pending)
        for failure in self.catalogue.failures(max_attempts=limit):
            if failure.path in queued or self._root_of(failure.path) is None:
                continue
            delay = base * 2 ** max(failure.attempts - 1, 0)
            last = failure.last_scanned
            if last is None or (now - last).total_seconds() >= delay:
                log.info("retrying %s (attempt %d of %d)", failure.path, failure.attempts + 1,
                         limit)
                self._touch(failure.path, retry=True, since=time.monotonic() - self.settle)

    def _take_ready(self) -> list[tuple[str, tuple[int, int], bool]]:
        now = time.monotonic()
        with self._lock:
            due = list(itertools.islice(
                ((p, e, e.since, e.stat) for p, e in self._pending.items()
                 if e.due(now, self.settle, self.grace)), BATCH_MAX))
        ready, changed, gone = [], [], []
        for path, entry, since, stat in due:
            current = _stat(path)
            if current is None:
                gone.append((path, entry, since))
            elif current != stat:
                changed.append((path, entry, since, current))
            else:
                ready.append((path, entry, since, current))
        taken = []
        with self._lock:
            for path, entry, since in gone:  # vanished: its deletion event says what to do
                if self._pending.get(path) is entry and entry.since == since:
                    del self._pending[path]
            for path, entry, since, current in changed:  # still changing: settle again
                if self._pending.get(path) is entry and entry.since == since:
                    entry.stat, entry.since = current, now
            for path, entry, since, current in ready:
                if self._pending.get(path) is entry and entry.since == since:
                    del self._pending[path]
                    taken.append((path, current, entry.retry))
        return taken

    def _process_ready(self) -> None:
        taken = self._take_ready()
        if not taken:
            return
        try:
            self._process(taken)
        except (TaggerError, KeyboardInterrupt):
            since = time.monotonic()  # not lost: back to the table, tried again later
            for path, _, retry in taken:
                self._touch(path, retry=retry, since=since)
            raise
        except Exception as exc:  # a bug: log it, fail these files (retried with backoff)
            error = f"internal error: {type(exc).__name__}: {exc}"
            log.exception("%s (while processing %d files: they are marked failed)", error,
                          len(taken))
            self._fail_unfinished([p for p, _, _ in taken], error)

    def _fail_unfinished(self, paths: list[str], error: str) -> None:
        states = self.catalogue.file_states(paths)
        with self.catalogue.batch():
            for path, (size, mtime_ns, status) in states.items():
                if status == "pending":
                    self.catalogue.record_failure(path, error, size=size, mtime_ns=mtime_ns)
                    self.summary.failures[error] += 1

    def _process(self, taken: list[tuple[str, tuple[int, int], bool]]) -> None:
        states = self.catalogue.file_states(p for p, _, _ in taken)
        todo: list[FoundFile] = []
        found: list[str] = []
        for path, (size, mtime_ns), retry in taken:
            row = states.get(path)
            if row is not None and (row[0], row[1]) == (size, mtime_ns):
                status = row[2]
                if status in ("done", "skipped") or (status == "failed" and not retry):
                    self.unchanged += 1  # our own tag write, a read, a touch: nothing new
                    log.debug("%s: unchanged", path)
                    continue
                if status == "missing":
                    found.append(path)
                    continue
            todo.append(FoundFile(path, size, mtime_ns))
        with self.catalogue.batch():
            if found:
                self.found += self.catalogue.mark_found(found)
                log.info("%d missing tracks are back, unchanged", len(found))
            if todo:
                self.catalogue.mark_pending_many((f.path, f.size, f.mtime_ns, None) for f in todo)
        if todo:
            self._run_engine(todo)

    def _run_engine(self, todo: list[FoundFile]) -> None:
        self._in_batch = len(todo)
        self._taken_at = time.time()
        log.debug("processing %d files", len(todo))
        try:
            self.engine.process(todo, self.summary, _BatchProgress(self), self.stopping)
        except BrokenProcessPool as exc:
            log.error("a decode worker died (%s): restarting the workers", exc)
            self.engine.close()
            since = time.monotonic()
            for f in todo:
                self._touch(f.path, since=since)
        finally:
            self._in_batch = 0
            self.summary.interrupted = False

    def _defer(self, item: WorkItem) -> bool:
        """A file that failed to decode: back to the table if it may still be arriving."""
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
        self._touch(item.path)
        return True

    # -- status ----------------------------------------------------------------------------

    def _write_status(self) -> None:
        try:
            write_json_atomically(self.status_file, self.status())
        except OSError as exc:
            log.warning("cannot write the status file %s: %s", self.status_file, exc)

    def _status_loop(self) -> None:
        last, written = None, 0.0
        while not self._status_stop:
            time.sleep(0.25)
            try:
                status = self.status()
                key = {k: v for k, v in status.items() if k != "updated"}
                now = time.monotonic()
                if key != last or now - written >= STATUS_EVERY_S:
                    write_json_atomically(self.status_file, status)
                    last, written = key, now
            except Exception as exc:  # noqa: BLE001 - the status must never stop the daemon
                log.debug("cannot write the status file: %s", exc)
