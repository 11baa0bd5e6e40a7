"""The catalogue side of file system changes that need no model: moves, deletions, paused
roots, and the reconcile walk that recovers whatever events were lost.

Walking (:meth:`Reconciler.plan`) is read only and may run in any thread; applying writes the
catalogue and runs in the daemon's main thread only.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable

from tagger.config import Config
from tagger.library import tags
from tagger.library.discover import WalkReport
from tagger.results import ModelInfo
from tagger.service.scan import plan_scan
from tagger.service.watch.events import EventRouter
from tagger.service.watch.roots import RootChange, Roots
from tagger.service.watch.settle import Move, SettleQueue, dir_prefix

log = logging.getLogger(__name__)

#: one root's walk: (root, files to process, paths missing, files seen, folders with temp files)
RootPlan = tuple


class Reconciler:
    """Applies moves, deletions and reconcile walks to the catalogue; pauses and resumes
    roots. ``rewatch(root)`` is called when a root comes back or appears."""

    def __init__(self, config: Config, roots: Roots, queue: SettleQueue, events: EventRouter,
                 rewatch: Callable[[str], None]):
        self.config, self.roots, self.queue, self.rewatch = config, roots, queue, rewatch
        self.events = events  # which names are wanted, for folders walked here
        self.settle = config.watch.settle_seconds
        self.catalogue = None  # set when the daemon opens it
        self.moved = self.missing = 0

    def plan(self, roots: list[str]) -> list[RootPlan]:
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

    def apply_plan(self, plan: list[RootPlan], requeue: ModelInfo | None = None) -> None:
        """Apply a reconcile walk's findings. ``requeue``: the engine's model, when rows
        found again may have been classified by another model or genre map."""
        if requeue is not None:
            if self.catalogue.requeue_stale(requeue.sha256, requeue.vocabulary):
                for path in self.catalogue.pending_paths():
                    if self.roots.root_of(path) and path not in self.queue:
                        self.queue.touch(path, since=time.monotonic() - self.settle)
        now, wall = time.monotonic(), time.time()
        for root, todo, missing, seen, temp_dirs in plan:
            if root in self.roots.paused:
                continue
            if not seen and not self.roots.looks_ok(root):
                self.pause_if_known(root)
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
                self.queue.touch(f.path, stat=(f.size, f.mtime_ns),
                                 since=now - self.settle if old else now)
            if todo or gone:
                log.info("%s: reconciled: %d to process, %d missing", root, len(todo),
                         len(gone))

    def check_roots(self) -> None:
        """Resume the roots that came back, watch those that appeared, pause those that
        vanished while the catalogue knows tracks under them."""
        for root, change in self.roots.check():
            if change is RootChange.LOOKS_GONE:
                self.pause_if_known(root)
            else:  # a remount or a new folder: the old watch (if any) is dead
                self.rewatch(root)
                self.apply_plan(self.plan([root]))

    def pause_if_known(self, root: str) -> bool:
        """Pause ``root`` if the catalogue knows tracks under it; whether it was paused."""
        known = sum(1 for _, _, status in self.catalogue.known_files([root]).values()
                    if status != "missing")
        if not known:
            return False
        self.roots.pause(root, known)
        self.queue.drop_under(root)
        return True

    def apply_moves(self, moves: list[Move]) -> None:
        """Move catalogue rows (no new inference); walk folders that came from elsewhere."""
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
        events = self.events
        for directory in walk_dirs:
            root = self.roots.root_of(directory)
            if root is None:
                continue
            since = time.monotonic()
            for dirpath, dirnames, filenames in os.walk(directory):
                dirnames[:] = [d for d in dirnames
                               if events.wanted_dir(root, os.path.join(dirpath, d))]
                for name in filenames:
                    path = os.path.join(dirpath, name)
                    if events.wanted(root, path):
                        self.queue.touch(path, since=since)

    def apply_deletes(self) -> None:
        """Mark missing what was deleted, once its root was quiet (a root that looks gone
        is paused instead)."""
        for root, items in self.queue.take_deletes(self.roots.root_of).items():
            if root in self.roots.paused:
                continue
            if not self.roots.looks_ok(root) and self.pause_if_known(root):
                continue
            files = [p for p, (_, is_dir) in items.items()
                     if not is_dir and not os.path.lexists(p)]
            dirs = [p for p, (_, is_dir) in items.items() if is_dir and not os.path.isdir(p)]
            tops: list[str] = []  # nested folders are covered by their parent
            for d in sorted(dirs):
                if not (tops and d.startswith(dir_prefix(tops[-1]))):
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
