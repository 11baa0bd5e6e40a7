"""What the review page's buttons do: accept, set another genre, not music, undo.

Each goes through the library's corrections API (the same one ``tagger set-genre`` uses:
the genre written with the tag policy and the journal, the correction recorded), under the
writer lock, so the review page never races a running scan or daemon.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from tagger.config import Config
from tagger.errors import TaggerError, WriteError
from tagger.library import tags
from tagger.results import CorrectionAction, CorrectionSource


class Action(str, Enum):
    ACCEPT = "accept"
    SET_GENRE = "set_genre"
    NOT_MUSIC = "not_music"
    UNDO = "undo"


@dataclass(frozen=True)
class ActionOutcome:
    ok: bool
    message: str


def perform(config: Config, path: str, action: Action, genre: str | None = None) -> ActionOutcome:
    """Run one correction on one catalogued file; never raises for a refused or failed one."""
    from tagger.library.catalogue import open_catalogue
    from tagger.library.lock import WriterLock

    try:
        from tagger.library.corrections import apply_correction
    except ImportError:  # until the labels branch lands: the same steps, here
        apply_correction = _interim_apply_correction

    if action is Action.SET_GENRE and not (genre or "").strip():
        return ActionOutcome(False, "no genre given")
    try:
        with WriterLock(config.state_path, config.database_url, "tagger review") as lock, \
                open_catalogue(config.database_url, upgrade=False) as catalogue:
            lock.guard(catalogue)
            result = apply_correction(config, catalogue, path, _contract_action(action),
                                      genre.strip() if genre else None,
                                      source=CorrectionSource.REVIEW)
    except TaggerError as exc:
        return ActionOutcome(False, str(exc))
    return ActionOutcome(True, _describe(action, genre, result))


def _contract_action(action: Action) -> CorrectionAction:
    return CorrectionAction(action.value)


def _interim_apply_correction(config, catalogue, path, action, genre=None, *, source):
    """Stand-in for tagger.library.corrections.apply_correction (labels branch)."""
    record = catalogue.track(path)
    prediction = record.prediction if record else None
    before = tags.read_genres(path)
    if action is CorrectionAction.ACCEPT:
        genre = prediction.genre if prediction else None
    if action is CorrectionAction.UNDO:
        last = catalogue.correction_in_force(path)
        if last is None:
            raise WriteError("no correction to undo", path)
        want = list(last.previous)
    elif action is CorrectionAction.NOT_MUSIC:
        want = []
    else:
        want = [genre]
    planned = tags.write_genres(path, want, None, dry_run=True)
    if planned:
        ids = catalogue.record_tag_changes(path, planned)
        try:
            tags.write_genres(path, want, None)
        except TaggerError:
            catalogue.mark_reverted(ids)
            raise
    catalogue.record_correction(
        path, action, genre, source=source, previous=before,
        predicted=prediction.genre if prediction else None,
        confidence=prediction.confidence if prediction else None,
        model_sha256=prediction.model.sha256 if prediction else None)
    return None


def _describe(action: Action, genre: str | None, result) -> str:
    message = getattr(result, "message", None)
    if message:
        return str(message)
    return {
        Action.ACCEPT: "accepted the prediction",
        Action.SET_GENRE: f"genre set to {genre}",
        Action.NOT_MUSIC: "marked as not music",
        Action.UNDO: "put back the genre tagger replaced",
    }[action]
