"""APScheduler (3.x, in-process) runs the daemon's periodic work: the reconcile rescan
(``rescan_interval_minutes`` or ``rescan_cron``; coalesced, one at a time) and the tick that
looks for failed files due for a retry.

The rescan walks the roots in the scheduler's thread (read only) and hands its plan to the
main thread, which applies it (:meth:`Rescans.take_plans`, then :meth:`Rescans.applied`).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import deque
from typing import Callable

from tagger.config import Config
from tagger.errors import ConfigError

log = logging.getLogger(__name__)


def make_trigger(config: Config):
    """The rescan trigger from ``watch.rescan_cron`` or ``watch.rescan_interval_minutes``
    (a bad crontab is a :class:`ConfigError`)."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    watch = config.watch
    if watch.rescan_cron:
        try:
            return CronTrigger.from_crontab(watch.rescan_cron)
        except ValueError as exc:
            raise ConfigError(f"'watch.rescan_cron' is not a crontab expression: {exc}",
                              config.source) from None
    return IntervalTrigger(minutes=watch.rescan_interval_minutes)


class Rescans:
    """The scheduler of one daemon. ``walk()`` plans a rescan (any thread);
    ``should_stop()`` ends a rescan that waits for its plan to be applied."""

    def __init__(self, config: Config, walk: Callable[[], list],
                 should_stop: Callable[[], bool]):
        self.config, self.walk, self.should_stop = config, walk, should_stop
        self.trigger = make_trigger(config)  # fails early on a bad rescan_cron
        self.retry_due = threading.Event()
        self._plans: deque[list] = deque()
        self._lock = threading.Lock()
        self._requested = threading.Event()
        self._running = False
        self._applied = threading.Event()
        self._scheduler = None

    def start(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        watch = self.config.watch
        scheduler = BackgroundScheduler(daemon=True, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        scheduler.add_job(self._rescan, self.trigger, id="rescan", name="reconcile rescan")
        retry_every = min(max(watch.retry_base_seconds / 4, 0.5), 60.0)
        scheduler.add_job(self.retry_due.set, IntervalTrigger(seconds=retry_every), id="retry",
                          name="retry failed files")
        scheduler.start()
        self._scheduler = scheduler
        self.retry_due.set()  # failures left by an earlier run are looked at once now

    def shutdown(self) -> None:
        if self._scheduler is None:
            return
        self._applied.set()
        try:
            self._scheduler.shutdown(wait=False)
        except Exception:  # noqa: BLE001
            pass

    def next_rescan(self) -> str | None:
        """When the next rescan runs (ISO 8601), None before the start."""
        scheduler = self._scheduler
        if scheduler is None:
            return None
        try:
            job = scheduler.get_job("rescan")
        except Exception:  # noqa: BLE001
            return None
        when = getattr(job, "next_run_time", None) if job else None
        return when.isoformat(timespec="seconds") if when else None

    def request(self) -> None:
        """Run the reconcile rescan now (coalesced with one already running)."""
        self._requested.set()
        scheduler = self._scheduler
        if scheduler is not None and not self._running:
            try:
                scheduler.modify_job("rescan", next_run_time=dt.datetime.now(dt.timezone.utc))
            except Exception:  # noqa: BLE001 - shutting down
                pass

    def take_plans(self) -> list[list]:
        """Main thread: the plans walked since the last call."""
        with self._lock:
            plans = list(self._plans)
            self._plans.clear()
        return plans

    def applied(self) -> None:
        """Main thread: the plans taken are applied (the waiting rescan may go on)."""
        self._applied.set()

    def _rescan(self) -> None:
        """Scheduler thread: walk (read only), hand the plan to the main thread, wait for it."""
        self._running = True
        try:
            while not self.should_stop():
                self._requested.clear()
                plan = self.walk()
                self._applied.clear()
                with self._lock:
                    self._plans.append(plan)
                while not self.should_stop() and not self._applied.wait(0.5):
                    pass
                if not self._requested.is_set():
                    break
        except Exception:  # noqa: BLE001
            log.exception("reconcile rescan failed")
        finally:
            self._running = False
