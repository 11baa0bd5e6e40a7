"""The worker side of the local engine: identify, decode and cut one file (no model here;
the fork server preloads this module), and the priority a good neighbour runs at."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
import time
from dataclasses import dataclass

from threadpoolctl import threadpool_limits

from tagger.audio.features import PreparedTrack, prepare_track
from tagger.audio.identity import content_id
from tagger.config import Config
from tagger.errors import TaggerError, TooShortError
from tagger.library.discover import FoundFile
from tagger.library.motion import FileInMotion, check_at_rest
from tagger.library.paths import special_file_reason
from tagger.results import FailureKind
from tagger.service.lifetime import die_with_parent

log = logging.getLogger(__name__)


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
    ino: int | None = None  # the inode read (size, mtime_ns and ino: the file a write expects)


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
    try:  # a file still being copied or downloaded is not read now (nor written later)
        st = os.stat(found.path)
        if (st.st_size, st.st_mtime_ns) != (found.size, found.mtime_ns):
            raise FileInMotion("changed since it was found, it may still be arriving; left "
                               "for later", found.path, FailureKind.BUSY)
        check_at_rest(found.path, st, 0.0 if found.settled else config.library.settle_seconds)
    except FileInMotion as exc:
        return failed(exc.message, exc.kind)
    except OSError:
        st = None  # the decoder says what is wrong with it
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
    return WorkItem(found.path, found.size, found.mtime_ns, fmt, identity, track=track,
                    ino=st.st_ino if st is not None else None)


def worker_init() -> None:
    die_with_parent()  # a kill -9 of the scan must not leave workers behind
    # Ctrl-C goes to the whole process group: let the main process stop things in order
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The pool is the parallelism: a BLAS thread team per worker only spins against the
    # other workers and the model's threads for the same cores.
    threadpool_limits(1)


def worker_ready() -> bool:
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


def io_priority_class(tid: int = 0) -> int | None:
    """The I/O scheduling class of thread ``tid`` (0: the calling one) by ioprio_get(2):
    3 is idle (what "low" sets); None where it cannot be read."""
    import ctypes
    import platform

    number = _IOPRIO_SET.get(platform.machine())  # ioprio_get is the next syscall
    if number is None or not sys.platform.startswith("linux"):
        return None
    try:
        value = ctypes.CDLL(None, use_errno=True).syscall(number + 1, _IOPRIO_WHO_PROCESS, tid)
    except (OSError, AttributeError):
        return None
    return None if value < 0 else value >> 13


def worker_context() -> multiprocessing.context.BaseContext:
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
