"""What the review page's buttons do: accept, set another genre, not music, undo.

Each goes through the library's corrections API (the same one ``tagger set-genre`` uses:
the genre written with the tag policy and the journal, the correction recorded), under the
writer lock, so the review page never races a running scan or daemon.
"""

from __future__ import annotations

from dataclasses import dataclass

from tagger.config import Config
from tagger.errors import TaggerError
from tagger.results import CorrectionAction, CorrectionSource


@dataclass(frozen=True)
class ActionOutcome:
    ok: bool
    message: str


def perform(config: Config, path: str, action: CorrectionAction,
            genre: str | None = None) -> ActionOutcome:
    """Run one correction on one catalogued file; never raises for a refused or failed one."""
    from tagger.library.catalogue import open_catalogue
    from tagger.library.corrections import apply_correction
    from tagger.library.lock import WriterLock

    if action is CorrectionAction.SET_GENRE and not (genre or "").strip():
        return ActionOutcome(False, "no genre given")
    try:
        with WriterLock(config.state_path, config.database_url, "tagger review") as lock, \
                open_catalogue(config.database_url, upgrade=False) as catalogue:
            lock.guard(catalogue)
            result = apply_correction(config, catalogue, path, action,
                                      genre.strip() if genre else None,
                                      source=CorrectionSource.REVIEW)
    except TaggerError as exc:
        return ActionOutcome(False, str(exc))
    return ActionOutcome(True, _describe(action, result))


@dataclass(frozen=True)
class AlbumOutcome:
    written: int  # tracks corrected
    refused: tuple[tuple[str, str], ...]  # (path, why) of each track left as it was


def perform_album(config: Config, paths: list[str], genre: str) -> AlbumOutcome:
    """Set ``genre`` on every track of an album, one correction per track, under one hold
    of the writer lock; a refused or failed track is reported and does not stop the others.
    A track whose own prediction is ``genre`` records an accept (the model was right about
    it, which is what ``tagger learn`` reads), the others the genre set."""
    from tagger.library.catalogue import open_catalogue
    from tagger.library.corrections import apply_correction
    from tagger.library.genres import same_genre
    from tagger.library.lock import WriterLock

    if not genre.strip():
        return AlbumOutcome(0, tuple((p, "no genre given") for p in paths))
    written, refused = 0, []
    try:
        with WriterLock(config.state_path, config.database_url, "tagger review") as lock, \
                open_catalogue(config.database_url, upgrade=False) as catalogue:
            lock.guard(catalogue)
            for path in paths:
                record = catalogue.track(path)
                own = record.prediction.genre if record and record.prediction else None
                action = (CorrectionAction.ACCEPT if own and same_genre(own, genre.strip())
                          else CorrectionAction.SET_GENRE)
                try:
                    apply_correction(config, catalogue, path, action, genre.strip(),
                                     source=CorrectionSource.REVIEW)
                    written += 1
                except TaggerError as exc:
                    refused.append((path, str(exc)))
    except TaggerError as exc:  # the lock or the catalogue: nothing was tried
        return AlbumOutcome(written, tuple(refused) + tuple(
            (p, str(exc)) for p in paths[written + len(refused):]))
    return AlbumOutcome(written, tuple(refused))


def _describe(action: CorrectionAction, result) -> str:
    """One line for the page: what was recorded, and what the file says now."""
    now = "; ".join(result.genres) if result.genres else "no genre"
    done = {
        CorrectionAction.ACCEPT: f"accepted {result.genre}",
        CorrectionAction.SET_GENRE: f"genre set to {result.genre}",
        CorrectionAction.NOT_MUSIC: "marked as not music",
        CorrectionAction.UNDO: "your last correction is undone",
    }[action]
    return f"{done}; the file says {now}" + ("" if result.written else " (unchanged)")
