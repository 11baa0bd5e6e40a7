"""What the review page's buttons do: accept, set another genre, not music, undo.

Each goes through the library's corrections API (the same one ``tagger set-genre`` uses:
the genre written with the tag policy and the journal, the correction recorded), under the
writer lock, so the review page never races a running scan or daemon.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from tagger.config import Config
from tagger.errors import TaggerError


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
    from tagger.library.corrections import apply_correction
    from tagger.library.lock import WriterLock

    if action is Action.SET_GENRE and not (genre or "").strip():
        return ActionOutcome(False, "no genre given")
    try:
        with WriterLock(config.state_path, config.database_url, "tagger review") as lock, \
                open_catalogue(config.database_url, upgrade=False) as catalogue:
            lock.guard(catalogue)
            result = apply_correction(config, catalogue, path, _contract_action(action),
                                      genre.strip() if genre else None, source="review")
    except TaggerError as exc:
        return ActionOutcome(False, str(exc))
    return ActionOutcome(True, _describe(action, genre, result))


def _contract_action(action: Action):
    from tagger.results import CorrectionAction

    return CorrectionAction(action.value)


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
