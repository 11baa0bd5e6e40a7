"""Decode workers that die: a job that crashes its process on some files, as a decoder bug
would, and a thread that kills a running worker, as the OOM killer would."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Callable

from tagger.audio.features import prepare_or_error
from tagger.config import Config


def prepare_or_crash(path: str, config: Config):
    """prepare_or_error, except that a file named ``crash*`` kills the worker outright."""
    if os.path.basename(path).startswith("crash"):
        os._exit(70)  # no exception, no cleanup: a segfault looks the same to the pool
    return prepare_or_error(path, config)


def kill_a_worker_soon(worker_pids: Callable[[], list[int]]) -> tuple[threading.Thread, list]:
    """A started thread that SIGKILLs the first worker ``worker_pids()`` names (looking for
    60 s at most), and the list it appends that pid to."""
    killed: list[int] = []

    def kill() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            processes = worker_pids()
            if processes:
                os.kill(processes[0], signal.SIGKILL)
                killed.append(processes[0])
            time.sleep(0.05)

    thread = threading.Thread(target=kill)
    thread.start()
    return thread, killed
