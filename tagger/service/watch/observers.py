"""Which observer watches each root (inotify or polling), and the watchdog observers.

``auto`` polls roots on network file systems (inotify cannot see changes made on another
machine) and every root when the folders need more inotify watches than the kernel allows;
once inotify runs, the watches it really holds are counted, since a refused add (ENOSPC)
happens in watchdog's threads and never reaches us. They are counted again after folders
change: watchdog can lose the watch of a moved folder (:meth:`Observers.repair`).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from tagger.config import WatchConfig
from tagger.errors import TaggerError

log = logging.getLogger(__name__)

#: File system types whose changes inotify cannot see (made on another machine).
NETWORK_FS = frozenset({
    "cifs", "smb3", "smbfs", "nfs", "nfs4", "ncpfs", "afs", "ceph", "glusterfs", "9p",
    "davfs", "fuse", "sshfs", "lustre", "gpfs", "beegfs",
})
WATCH_MARGIN = 512  # inotify watches left for other programs before auto prefers polling
_INOTIFY_DIR = Path("/proc/sys/fs/inotify")

#: what an observer calls for each event: (root, event, native)
EventSink = Callable[[str, FileSystemEvent, bool], None]

#: the folder events after which the inotify watches are counted again
FOLDER_CHANGES = frozenset({"created", "deleted", "moved"})
#: quiet after the last folder event before the count: watchdog holds an unpaired
#: IN_MOVED_FROM for 0.5 s, and acts on it (removing watches) only then
FOLDERS_QUIET_S = 1.0
FOLDERS_MAX_WAIT_S = 10.0  # counted then even while folders keep changing


class WatchError(TaggerError):
    """The daemon cannot watch what it was asked to (exit code 3)."""


# ---------------------------------------------------------------- mounts


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
    """Whether changes on this file system type may be made where inotify cannot see them."""
    return bool(fstype) and (fstype in NETWORK_FS or fstype.startswith("fuse."))


# ---------------------------------------------------------------- inotify coverage


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


def inotify_fds() -> set[int]:
    """The inotify instances (file descriptors) this process has open now."""
    found = set()
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify":
                found.add(int(fd))
        except (OSError, ValueError):
            continue
    return found


def inotify_watches_held(fds: Iterable[int] | None = None) -> int | None:
    """Inotify watches this process holds now (``/proc/self/fdinfo``), in the instances
    ``fds`` (default: all of them); None when there is no such instance. watchdog adds its
    watches in its own threads and a refused add (ENOSPC: the per-user limit, which other
    programs share) does not reach us: this count is how a partly watched tree is noticed."""
    total, found = 0, False
    for fd in inotify_fds() if fds is None else fds:
        try:
            with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as info:
                total += sum(line.startswith("inotify wd:") for line in info)
            found = True
        except OSError:
            continue
    return total if found else None


def unwatched_folders(roots: list[str], settle_s: float = 10.0,
                      fds: Iterable[int] | None = None) -> tuple[int, int]:
    """(folders under ``roots``, how many of them inotify does not watch), once the observer's
    threads have added what they could (the count stops growing). ``fds``: the inotify
    instances watching ``roots`` (default: all of this process's)."""
    fds = None if fds is None else list(fds)
    wanted = count_dirs(roots, 1 << 30)
    deadline = time.monotonic() + settle_s
    held, still_since = inotify_watches_held(fds) or 0, time.monotonic()
    while held < wanted and time.monotonic() < deadline:
        time.sleep(0.1)
        now_held = inotify_watches_held(fds) or 0
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


# ---------------------------------------------------------------- watchdog


def watch_limit_reached(wanted: int, unwatched: int | None = None) -> str:
    """The one wording for inotify watches refused (ENOSPC), whichever way it shows:
    watchdog raising while it adds the watches (``unwatched`` unknown: it takes back those it
    had), or the count finding folders left out afterwards."""
    which = f"some of the {wanted}" if unwatched is None else f"{unwatched} of {wanted}"
    return f"inotify watch limit reached: {which} folders could not be watched"


class _Handler(FileSystemEventHandler):
    """Runs in the observer's thread: hands each event of one root to the sink, and says
    when a folder under an inotify root was created, deleted or moved."""

    def __init__(self, sink: EventSink, root: str, native: bool,
                 folders_changed: Callable[[str], None]):
        self.sink, self.root, self.native = sink, root, native
        self.folders_changed = folders_changed

    def dispatch(self, event: FileSystemEvent) -> None:
        if self.native and event.is_directory and event.event_type in FOLDER_CHANGES:
            self.folders_changed(self.root)
        try:
            self.sink(self.root, event, self.native)
        except Exception:  # never let one event kill the observer thread
            log.exception("cannot handle %s", event)


class OverflowSpy(logging.Handler):
    """watchdog only logs an inotify queue overflow: notice it, to rescan at once."""

    def __init__(self, callback: Callable[[], None]):
        super().__init__(logging.WARNING)
        self.callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.callback()


class Observers:
    """The watchdog observers of a daemon: at most one per kind (inotify, polling), each
    watching its roots recursively, every event going to ``sink``."""

    def __init__(self, watch: WatchConfig, sink: EventSink):
        self.watch, self.sink = watch, sink
        self.chosen: dict[str, tuple[str, str]] = {}  # root -> (kind, reason)
        self._objs: dict[str, object] = {}  # kind -> watchdog observer
        self._watches: dict[str, tuple[object, object]] = {}  # root -> (observer, watch)
        # the inotify instances the native observer opened; None: it opened none we saw (one
        # watchdog shares), count all of this process's
        self._fds: set[int] | None = None
        self._lock = threading.Lock()  # the folder changes, noted in the observers' threads
        self._changed: dict[str, float] = {}  # inotify root -> its first unchecked change
        self._last_change = 0.0
        self._unwatchable = 0  # folders a fresh watch did not cover either (the limit)

    def is_watched(self, root: str) -> bool:
        """Whether an observer watches ``root`` now."""
        return root in self._watches

    def start(self, roots: list[str]) -> None:
        """Choose (``watch.observer``) and start. ``native`` that cannot cover every folder
        is a :class:`WatchError`; ``auto`` falls back to polling."""
        self.chosen = choose_observers(roots, self.watch.observer)
        native = [r for r, (kind, _) in self.chosen.items() if kind == "native"]
        if native:
            refused = self._start_native(native)
            if refused is not None:
                if self.watch.observer == "native":
                    raise WatchError(f"cannot watch with inotify: {refused} (raise "
                                     "fs.inotify.max_user_watches / max_user_instances, or "
                                     "set watch.observer = \"polling\")")
                for root in native:
                    self.chosen[root] = ("polling", f"auto: {refused}")
        polling = [r for r, (kind, _) in self.chosen.items() if kind == "polling"]
        if polling:
            self._start("polling", polling)
        for root, (kind, reason) in self.chosen.items():
            if kind == "polling":
                log.warning("%s: polling every %g s (%s)", root,
                            self.watch.poll_interval_seconds, reason)
            else:
                log.info("%s: inotify (%s)", root, reason)

    def stop(self) -> None:
        """Stop every observer (bounded wait)."""
        for observer in list(self._objs.values()):
            try:
                observer.stop()
            except Exception:  # noqa: BLE001
                log.debug("observer stop failed", exc_info=True)
        for observer in list(self._objs.values()):
            if observer.is_alive():
                observer.join(timeout=5)

    def rewatch(self, root: str) -> None:
        """Watch a root afresh (it came back: a new folder, or a remounted file system)."""
        kind = self.chosen.get(root, ("native", ""))[0]
        observer = self._objs.get(kind)
        if observer is None:
            return
        old = self._watches.pop(root, None)
        if old is not None:
            try:
                observer.unschedule(old[1])
            except Exception:  # noqa: BLE001 - its emitter may have stopped already
                pass
        before = inotify_fds()
        try:
            watch = observer.schedule(self._handler(root, kind), root, recursive=True)
            self._watches[root] = (observer, watch)
        except OSError as exc:
            log.error("cannot watch %s again: %s", root, exc)
        if kind == "native" and self._fds is not None:
            self._fds = (self._fds | (inotify_fds() - before)) & inotify_fds()

    def repair(self) -> list[str]:
        """Once folders under inotify roots stopped changing for a moment, check that every
        folder is still watched, and watch the roots where they changed afresh if not;
        returns those roots (their events in between were lost: rescan them).

        Why: watchdog 7.1 loses the watch of a folder moved into a folder that appeared just
        before (made there, or moved in from outside the roots). Adding the new folder's
        watches, it meets the moved one under its new path and watches it a second time: the
        kernel hands back the watch it already has (watchdog warns "Callback with id ...
        already exists"). The move's IN_MOVED_FROM then has no IN_MOVED_TO to pair with (that
        was sent before the new folder was watched); watchdog reports the folder deleted and
        removes the old path's watch, which is the one the folder still has: everything in
        it goes unseen (files never tagged, deletions never marked missing)."""
        with self._lock:
            if not self._changed:
                return []
            now = time.monotonic()
            if (now - self._last_change < FOLDERS_QUIET_S
                    and now - min(self._changed.values()) < FOLDERS_MAX_WAIT_S):
                return []
            changed, self._changed = list(self._changed), {}
        native = self._watched("native")
        changed = [r for r in changed if r in native]
        if not changed:
            return []
        wanted, missing = unwatched_folders(native, fds=self._fds)
        if missing <= self._unwatchable:  # none, or what the kernel's limit leaves out
            self._unwatchable = missing
            return []
        log.warning("%d of %d folders lost their inotify watch: watching %s afresh", missing,
                    wanted, ", ".join(changed))
        for root in changed:
            self.rewatch(root)
        wanted, self._unwatchable = unwatched_folders(native, fds=self._fds)
        if self._unwatchable:
            log.warning("%s (raise fs.inotify.max_user_watches, or set watch.observer = "
                        "\"polling\"); the reconcile rescans find their changes",
                        watch_limit_reached(wanted, self._unwatchable))
        return changed

    def _folders_changed(self, root: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._changed.setdefault(root, now)
            self._last_change = now

    def _handler(self, root: str, kind: str) -> _Handler:
        return _Handler(self.sink, root, kind == "native", self._folders_changed)

    def _watched(self, kind: str) -> list[str]:
        """The roots an observer of ``kind`` watches now (and that are there)."""
        return [r for r, (k, _) in self.chosen.items()
                if k == kind and r in self._watches and os.path.isdir(r)]

    def _start_native(self, roots: list[str]) -> str | None:
        """Start inotify on ``roots`` and check that it watches every folder. Returns None,
        or why it cannot (then it is stopped again)."""
        there = [r for r in roots if os.path.isdir(r)]
        try:
            self._start("native", roots)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:  # watchdog raised while adding the watches
                return watch_limit_reached(count_dirs(there, 1 << 30))
            if exc.errno == errno.EMFILE:
                return "inotify instance limit reached"
            return exc.strerror or str(exc)
        # the per-user limit may have run out part way without watchdog raising
        wanted, missing = unwatched_folders(there, fds=self._fds)
        if not missing:
            return None
        observer = self._objs.pop("native", None)
        for root in roots:
            self._watches.pop(root, None)
        if observer is not None:
            observer.stop()
            observer.join(10)
        self._fds = None
        return watch_limit_reached(wanted, missing)

    def _start(self, kind: str, roots: list[str]) -> None:
        if kind == "native":
            from watchdog.observers.inotify import InotifyObserver

            observer = InotifyObserver()
        else:
            from watchdog.observers.polling import PollingObserver

            observer = PollingObserver(timeout=self.watch.poll_interval_seconds)
        before = inotify_fds()
        try:
            for root in roots:
                if os.path.isdir(root):
                    watch = observer.schedule(self._handler(root, kind), root, recursive=True)
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
        if kind == "native":
            self._fds = (inotify_fds() - before) or None
        self._objs[kind] = observer
