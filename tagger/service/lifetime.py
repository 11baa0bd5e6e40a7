"""Worker processes never outlive the scan: each dies with its parent, none is waited on
without a bound, and multiprocessing's temp folders live in the state directory."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import shutil
import signal
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
#: sun_path holds 107 bytes; multiprocessing adds "/pymp-XXXXXXXX/listener-XXXXXXXX"
_MAX_TEMP_DIR = 107 - 33


def die_with_parent() -> None:
    """Linux: the kernel sends this process SIGKILL when its parent dies (kill -9 included),
    so no fork server or worker is left behind, blocked on a pipe nobody reads. Also exits
    at once when the parent is already gone (it died before the call)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the liveness check below still helps
        pass
    if os.getppid() == 1:
        os._exit(1)


def use_private_temp(state_dir: Path) -> None:
    """multiprocessing keeps its sockets in a ``pymp-*`` folder under the temp dir, which a
    kill -9 leaves behind in /tmp: make it ``<state>/tmp/<pid>/pymp-*`` (this process's folder
    is chosen once, at its first use), and remove the folders of processes that are gone."""
    import multiprocessing.util

    base = Path(state_dir) / "tmp"
    previous = tempfile.tempdir
    try:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        for folder in base.iterdir():
            if folder.name.isdigit() and not _alive(int(folder.name)):
                shutil.rmtree(folder, ignore_errors=True)
        mine = base / str(os.getpid())
        if len(os.fsencode(mine)) > _MAX_TEMP_DIR:  # the socket path would not fit
            return
        mine.mkdir(mode=0o700, exist_ok=True)
        # (left at exit: multiprocessing removes its pymp folder itself, the empty <pid>
        # folder goes with the next start's sweep)
        tempfile.tempdir = str(mine)
        multiprocessing.util.get_temp_dir()  # chosen now, kept for this process's life
    except OSError as exc:
        log.debug("keeping the default temp dir: %s", exc)
    finally:
        tempfile.tempdir = previous


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pool_pids(pool: ProcessPoolExecutor) -> list[int]:
    # concurrent.futures has no public list of its workers before 3.14
    # (ProcessPoolExecutor.kill_workers); the mapping is stable across 3.11-3.13.
    return [p.pid for p in dict(getattr(pool, "_processes", None) or {}).values()
            if p.pid is not None]


def kill_workers(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def stop_pool(pool: ProcessPoolExecutor, grace_s: float = 5.0) -> None:
    """Shut the pool down, waiting at most ``grace_s`` for its workers: a worker stuck in a
    system call (a FIFO, a hung network mount) is killed rather than waited on for ever."""
    pids = pool_pids(pool)
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    stuck = [p for p in pids if _alive(p)]
    if stuck:
        log.warning("killing %d decode worker(s) that did not stop", len(stuck))
        kill_workers(stuck)
