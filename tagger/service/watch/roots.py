"""The watched roots: which root a path is under, and whether a root is there.

A root that vanishes or looks empty while the catalogue knows tracks under it is most likely
an unmounted NAS, not a deleted library: it is *paused* (nothing marked missing) until it
comes back.
"""

from __future__ import annotations

import logging
import os
from enum import Enum
from typing import Iterable

from tagger.library.discover import is_ignored
from tagger.service.watch.settle import dir_prefix

log = logging.getLogger(__name__)


class RootChange(Enum):
    """What a look at a root found (see :meth:`Roots.check`)."""

    BACK = "back"  # a paused root looks right again: resume and rescan it
    APPEARED = "appeared"  # a root that was not there is there now: watch and scan it
    LOOKS_GONE = "looks gone"  # a root just went missing or empty


def outermost(roots: Iterable[str]) -> list[str]:
    """Absolute roots, in order, without repeats and without roots inside another (those are
    watched through the outer one)."""
    roots = [os.path.abspath(r) for r in roots]
    return [r for r in dict.fromkeys(roots)
            if not any(o != r and r.startswith(dir_prefix(o)) for o in roots)]


class Roots:
    """The roots of one daemon and their state (paused, present, looking right)."""

    def __init__(self, roots: list[str], ignore: tuple[str, ...] | list[str]):
        self.roots, self.ignore = roots, ignore
        self.paused: dict[str, str] = {}  # root -> why
        self._ok_last: dict[str, bool] = {}
        self._present_last: dict[str, bool] = {}

    def __iter__(self):
        return iter(self.roots)

    def active(self) -> list[str]:
        """The roots not paused."""
        return [r for r in self.roots if r not in self.paused]

    def root_of(self, path: str) -> str | None:
        """The root ``path`` is under (or is), None when none."""
        for root in self.roots:
            if path == root or path.startswith(dir_prefix(root)):
                return root
        return None

    def looks_ok(self, root: str) -> bool:
        """The root exists and holds at least one entry that is not ignored."""
        try:
            with os.scandir(root) as entries:
                return any(not is_ignored(e.name, self.ignore) for e in entries)
        except OSError:
            return False

    def note_present(self) -> None:
        """Remember which roots are there now (at start); warn about those that are not."""
        for root in self.roots:
            self._present_last[root] = os.path.isdir(root)
            if not self._present_last[root]:
                log.warning("%s is not there (not mounted yet?): it is watched once it "
                            "appears", root)

    def pause(self, root: str, known: int) -> None:
        """Pause ``root``: gone or empty while the catalogue knows ``known`` tracks under it."""
        reason = (f"{'missing' if not os.path.isdir(root) else 'empty'} while the catalogue "
                  f"knows {known} tracks under it (unmounted?)")
        if root not in self.paused:
            log.warning("%s is %s: paused, nothing is marked missing; waiting for it to "
                        "come back", root, reason)
        self.paused[root] = reason

    def check(self) -> list[tuple[str, RootChange]]:
        """Look at every root; what changed since the last look. A paused root that is back
        is resumed here (logged); the caller watches and rescans it."""
        changes = []
        for root in self.roots:
            ok, present = self.looks_ok(root), os.path.isdir(root)
            was_ok = self._ok_last.get(root, True)
            was_present = self._present_last.get(root, True)
            self._ok_last[root], self._present_last[root] = ok, present
            if root in self.paused:
                if ok:
                    log.warning("%s is back: resuming, rescanning it", root)
                    del self.paused[root]
                    changes.append((root, RootChange.BACK))
            elif present and not was_present:
                log.warning("%s is there now: watching it", root)
                changes.append((root, RootChange.APPEARED))
            elif not ok and was_ok:
                changes.append((root, RootChange.LOOKS_GONE))
        return changes
