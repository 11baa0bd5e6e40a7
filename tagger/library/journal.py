"""The journal of tag writes: what tagger wrote over what, and putting it back.

Every tag change tagger makes is recorded in the catalogue (``tag_writes``, append-only)
*before* the file is written, with the old value. This module is the one place that reads
that history: which genre tagger wrote last (so a genre tagger wrote is never taken for the
user's own), whether the user edited a file since, ``revert``, and the reconciliation of
writes a kill interrupted between the record and the file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from tagger.errors import TaggerError
from tagger.library import tags
from tagger.library.genres import genre_key, normalise_genres
from tagger.library.motion import AtRest, FileState
from tagger.library.paths import is_inside, outside_reason, real_roots

log = logging.getLogger(__name__)


def journalled_write(catalogue, path: str, genres: Sequence[str], confidence: float | None,
                     at_rest: AtRest, *, drop_confidence: bool = False,
                     planned: Sequence | None = None) -> list[int]:
    """Write ``genres`` (and ``confidence``: see :func:`tagger.library.tags.write_genres`)
    into the file, the one way tagger writes a genre, for a scan's vote and a user's
    correction alike: the planned change (``planned``, else planned now) is journalled
    first, so a kill at any instant loses neither the old value nor the file, and marked
    reverted when the write then fails. The journal ids; [] when nothing changes."""
    if planned is None:
        planned = tags.write_genres(path, genres, confidence, dry_run=True, at_rest=at_rest,
                                    drop_confidence=drop_confidence)
    if not planned:
        return []
    with catalogue.batch():
        ids = catalogue.record_tag_changes(path, planned)
    try:
        tags.write_genres(path, genres, confidence, at_rest=at_rest,
                          drop_confidence=drop_confidence)
    except TaggerError:
        with catalogue.batch():
            catalogue.mark_reverted(ids)
        raise
    return ids


def same_genres(a: Iterable[str], b: Iterable[str]) -> bool:
    """Genre lists compared the way people read them (:func:`~tagger.library.genres.
    genre_key`): case, blanks, hyphens, underscores and Unicode normalisation ignored."""
    return [genre_key(g) for g in a] == [genre_key(g) for g in b]


def is_genre_write(change) -> bool:
    """A recorded change that set a genre (not the confidence field, nor the legacy MP4
    ``gnre`` atom that tagger only ever clears)."""
    return (change.new is not None and "CONFIDENCE" not in change.field.upper()
            and change.field != "gnre")


def last_written(changes: Sequence) -> tuple[str, ...] | None:
    """The genre values tagger wrote last among ``changes`` (oldest first), or None."""
    written = [c for c in changes if is_genre_write(c)]
    return tuple(written[-1].new) if written else None


def _corrected(catalogue, path: str, genres: Sequence[str]) -> bool:
    """Whether the user's correction in force (``tagger set-genre``, the review page) names
    exactly these genres: tagger wrote them, but on the user's word."""
    correction = catalogue.correction_in_force(path)
    return (correction is not None and correction.genre is not None
            and same_genres([correction.genre], genres))


def user_genres(catalogue, path: str, existing: list[str]) -> list[str]:
    """The file's genres, or [] when they are just what tagger itself wrote last (a genre
    from an older model or genre map is not one the user set: it may be replaced). A genre
    written for the user's correction in force is the user's."""
    if not existing or catalogue is None:
        return existing
    return _user_genres(catalogue, path, existing, catalogue.tag_changes([path]))


def _user_genres(catalogue, path: str, existing: list[str], changes: Sequence) -> list[str]:
    written = last_written(changes)
    if written is None or not same_genres(written, existing):
        return existing
    return existing if _corrected(catalogue, path, existing) else []


def original_genres(changes: Sequence) -> tuple[str, ...] | None:
    """The genre values a file held before tagger first wrote one (``changes`` oldest first,
    not reverted), or None when it had none: what the user had set, even after tagger
    replaced it (``tags.write = always``)."""
    first = next((c for c in changes if is_genre_write(c)), None)
    if first is None:
        return None
    for change in changes:  # the genre field, or the MP4 legacy gnre atom removed with it
        if (change.written_at == first.written_at and change.old
                and "CONFIDENCE" not in change.field.upper()):
            return tuple(change.old)
    return None


def genre_owners(catalogue, path: str, existing: list[str]) -> tuple[list[str], list[str]]:
    """(:func:`user_genres`, the genres the user set on this file) from one read of the
    journal. The second, for ``tracks.user_genres``, is the file's own genres when they are
    the user's, else those tagger replaced (:func:`original_genres`) while the file still
    holds tagger's; [] when the file has no genre or the user set none."""
    if not existing or catalogue is None:
        return existing, list(existing)
    changes = catalogue.tag_changes([path])
    user = _user_genres(catalogue, path, existing, changes)
    return user, list(user or original_genres(changes) or ())


def written_genres(catalogue, under: Sequence[str] | None = None) -> dict[str, tuple[str, ...]]:
    """For each file (below ``under``), the genre tagger wrote last and did not revert; not
    the files whose last write was the user's correction in force (their genre is the
    user's)."""
    by_path: dict[str, list] = {}
    for change in catalogue.tag_changes(under=under):
        by_path.setdefault(change.path, []).append(change)
    written = {path: genres for path, group in by_path.items()
               if (genres := last_written(group)) is not None}
    corrected: dict[str, str | None] = {}
    for correction in catalogue.corrections():  # oldest first: the last in force wins
        if correction.path in written and correction.in_force:
            corrected[correction.path] = correction.genre
    return {path: genres for path, genres in written.items()
            if not (corrected.get(path) and same_genres([corrected[path]], genres))}


def edited_since(path: str, changes: Sequence) -> bool:
    """Whether the file's genre is no longer what tagger last wrote (someone edited it)."""
    written = last_written(changes)
    if written is None:
        return False
    try:
        return not same_genres(tags.read_genres(path), written)
    except TaggerError:
        return False  # restore() will report what is wrong with the file


@dataclass
class RevertReport:
    restored: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    #: files left alone for the user's correction in force (revert(corrections=False))
    kept_corrected: list[str] = field(default_factory=list)
    withdrawn: int = 0  # corrections withdrawn with the writes reverted
    #: path -> ((size, mtime_ns), tags) of each file restored, as read right after the
    #: restore (tags None: unreadable then)
    after: dict[str, tuple[tuple[int, int], tags.TagInfo | None]] = field(default_factory=dict)


def revert(catalogue, paths: Sequence[str] | None, *, roots: Sequence[str] = (),
           force: bool = False, corrections: bool = False,
           settle_seconds: float = 0.0) -> RevertReport:
    """Put back the values tagger overwrote, in files (or folders) ``paths``, or everywhere
    (``paths`` None). Oldest first: the user's own values win. A file whose genre was edited
    since tagger wrote it is left alone unless ``force``; so is any path that leads outside
    ``roots`` (without roots: outside the file's own folder), a symlink swapped in included.
    A file with a correction of the user's in force (``tagger set-genre``, the review page)
    is left alone too (``kept_corrected``) unless ``corrections``: then its writes are
    reverted and the corrections they carried withdrawn (no longer labels; see
    tagger.library.corrections). A file in motion (modified within ``settle_seconds`` other
    than by tagger's own catalogued write, or open for writing) is refused, to be reverted
    later.
    """
    if paths is None:
        changes = catalogue.tag_changes()
    else:
        changes = []
        for path in map(os.path.abspath, paths):
            changes += (catalogue.tag_changes(under=path) if os.path.isdir(path)
                        else catalogue.tag_changes([path]))
    by_path: dict[str, list] = {}
    for change in changes:
        by_path.setdefault(change.path, []).append(change)
    inside = real_roots(roots or [p for p in map(os.path.abspath, paths or ())
                                  if os.path.isdir(p)])
    report = RevertReport()
    states = catalogue.file_states(list(by_path))
    for path, group in by_path.items():
        if not is_inside(path, inside or real_roots([os.path.dirname(path)])):
            report.refused.append((path, f"not reverting: {outside_reason(path)}"))
            continue
        if not corrections and catalogue.correction_in_force(path) is not None:
            report.kept_corrected.append(path)
            continue
        if not force and edited_since(path, group):
            report.refused.append((path, "its genre was changed after tagger wrote it; not "
                                         "reverting (--force reverts anyway)"))
            continue
        known = states.get(path)
        at_rest = AtRest(settle_seconds, settled=None if known is None or known[0] is None
                         else FileState(known[0], known[1]))
        try:
            tags.restore(path, group, at_rest=at_rest)
        except TaggerError as exc:
            report.refused.append((path, exc.message))
            continue
        with catalogue.batch():
            catalogue.mark_reverted(c.id for c in group)
            report.withdrawn += catalogue.withdraw_corrections(path, (c.id for c in group))
            st = os.stat(path)
            info = _read_back(path)
            if catalogue.update_stat(path, st.st_size, st.st_mtime_ns) and info is not None:
                # what the file holds again is the user's: every tagger write is reverted
                held = normalise_genres(info.genres)
                catalogue.set_track_tags(path, info.artist, info.album, held, held)
        report.restored += 1
        report.after[path] = ((st.st_size, st.st_mtime_ns), info)
    return report


def _read_back(path: str) -> tags.TagInfo | None:
    """The tags of a file just reverted; None (logged) when it cannot be read now."""
    try:
        return tags.read_info(path)
    except TaggerError as exc:  # restored a moment ago; unreadable now: leave the row alone
        log.warning("%s: reverted, but its genres cannot be read back: %s", path, exc.message)
        return None


def recover_interrupted_writes(catalogue, roots: Iterable[str]) -> int:
    """Tag writes are recorded before the file is written: a kill in between leaves a record
    of a change that never happened. For pending tracks whose newest recorded write is newer
    than their last result, look at the file: if it does not carry the recorded genre, mark
    that write reverted (as a failed write is). Returns how many writes were reconciled."""
    prefixes = [os.path.join(os.path.abspath(r), "") for r in roots]
    pending = [p for p in catalogue.pending_paths() if any(p.startswith(x) for x in prefixes)]
    if not pending:
        return 0
    by_path: dict[str, list] = {}
    for change in catalogue.tag_changes(pending):
        by_path.setdefault(change.path, []).append(change)
    fixed = 0
    for path, changes in by_path.items():
        record = catalogue.track(path)
        newest = max(c.written_at for c in changes)
        if record is None or (record.last_scanned and record.last_scanned >= newest):
            continue
        group = [c for c in changes if c.written_at == newest]
        written = last_written(group)
        try:
            current = tags.read_genres(path)
        except TaggerError:
            continue  # gone or unreadable: the scan will say
        if written is not None and same_genres(written, current):
            continue  # the write landed; only its result was not recorded
        with catalogue.batch():
            catalogue.mark_reverted(c.id for c in group)
        fixed += len(group)
        log.info("%s: a tag write interrupted before it happened is marked reverted", path)
    return fixed
