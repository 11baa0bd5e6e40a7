"""The daemon's status file: written atomically, every few seconds and on change, beside its
writer lock (``<state_dir>/watch-<hash of the database URL>.json``); ``tagger status``
reads it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

from tagger.config import Config
from tagger.errors import ReadError
from tagger.library.lock import WriterLock
from tagger.library.paths import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE

log = logging.getLogger(__name__)

STATUS_EVERY_S = 2.0  # status file heartbeat (it is also written on every change)


def status_path(config: Config) -> Path:
    """Where the daemon for this catalogue writes its status (beside its writer lock)."""
    digest = hashlib.sha256(config.database_url.encode()).hexdigest()[:12]
    return config.state_path / f"watch-{digest}.json"


def write_json_atomically(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` through a private temp file renamed over it."""
    path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
    with open(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def iso(epoch: float | None) -> str | None:
    """A local ISO 8601 time, to the second (None stays None)."""
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).astimezone().isoformat(
        timespec="seconds")


class LastError(logging.Handler):
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
        self.last = {"time": iso(time.time()), "message": " ".join(message.split())[:500]}


class StatusFile:
    """Writes ``snapshot()`` to ``path``: at once with :meth:`write`, and from a thread
    between :meth:`start` and :meth:`stop` on every change and every few seconds."""

    def __init__(self, path: Path, snapshot: Callable[[], dict]):
        self.path, self.snapshot = path, snapshot
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tagger-status", daemon=True)

    def write(self) -> None:
        try:
            write_json_atomically(self.path, self.snapshot())
        except OSError as exc:
            log.warning("cannot write the status file %s: %s", self.path, exc)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        last, written = None, 0.0
        while not self._stop.is_set():
            time.sleep(0.25)
            try:
                status = self.snapshot()
                key = {k: v for k, v in status.items() if k != "updated"}
                now = time.monotonic()
                if key != last or now - written >= STATUS_EVERY_S:
                    write_json_atomically(self.path, status)
                    last, written = key, now
            except Exception as exc:  # noqa: BLE001 - the status must never stop the daemon
                log.debug("cannot write the status file: %s", exc)


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
    model = status.get("model")
    if model:
        follows = " (follows the adopted model)" if status.get("follows_adoption") else ""
        lines.append(f"daemon's model: {model['name']} ({model['sha256'][:12]}){follows}")
    retagged = status.get("last_retag")
    if retagged:
        lines.append(f"last retag: {retagged['repredicted']} tracks re-predicted, "
                     f"{retagged['tagged']} tagged, {len(retagged['need_scan'])} need a scan")
    return "\n".join(lines)
