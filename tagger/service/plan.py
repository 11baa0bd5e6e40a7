"""The tag decision as one value: :func:`plan_tags` says what happens to one file's tags for
one vote (its own, or its album's), from one read of the file's tags, the journal and the
user's corrections: the policy (``[tags]`` and the genre tree), the correction in force, the
library's roots, the change the write would make, and the withdrawal of a genre tagger
wrote that the vote no longer backs. The Recorder executes it (a scan, ``retag``, ``watch``,
the album pass); a dry run proposes the same plan instead, so it says what the real run
does."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Sequence

from tagger.config import Config
from tagger.library import tags
from tagger.library.corrections import correction_veto
from tagger.library.journal import genre_owners
from tagger.library.motion import AtRest
from tagger.library.paths import is_inside, outside_reason
from tagger.library.tags import TagChange, TagInfo
from tagger.results import Content, CorrectionAction, NotWritten, Vote
from tagger.service.policy import TagDecision, decide_tags

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TagPlan:
    """What :func:`plan_tags` decided for one file."""

    path: str
    info: TagInfo  # the file's tags as read
    existing: list[str]  # the user's genres in it (a genre tagger wrote is not one)
    labelled: list[str]  # the genres the user set on it (tracks.user_genres)
    decision: TagDecision
    confidence: float | None  # what goes into the confidence field with the genres
    changes: tuple[TagChange, ...] = ()  # what writing decision.genres changes in the file
    withdraw: bool = False  # tagger's own genre, no longer backed, is taken back

    @property
    def writes(self) -> bool:
        return bool(self.changes)


def plan_tags(path: str, outcome: Vote, config: Config, catalogue, roots: Sequence[str], *,
              info: TagInfo | None = None, at_rest: AtRest = AtRest(),
              withdraw_unbacked: bool = False, content: Content | None = None) -> TagPlan:
    """Plan the tags of ``path`` for ``outcome`` (see the module). ``info``: its tags as read
    already (None: read now); ``at_rest``: what a write demands of the file, checked while
    planning; ``withdraw_unbacked`` (retag): a genre only tagger wrote, that the vote no
    longer reaches the policy for, is to be taken back; ``content``: the content gate's
    verdict (:func:`not_music_decision`). Raises ReadError (unreadable tags),
    FileInMotion or WriteError (the file cannot be written now)."""
    if info is None:
        info = tags.read_info(path)
    existing, labelled = genre_owners(catalogue, path, info.genres)
    decision = (not_music_decision(catalogue, config, path, content)
                or decide_tags(outcome, existing, config))
    if decision.genres:
        # the user's correction in force outranks the policy (even tags.write = always)
        veto = correction_veto(catalogue, path, decision.genres)
        decision = decision if veto is None else TagDecision((), *veto)
    if decision.genres and not is_inside(path, roots):
        # library.follow_symlinks: read through a link to outside, never written
        log.info("%s: not writing tags: %s", path, outside_reason(path))
        decision = TagDecision((), NotWritten.OUTSIDE_LIBRARY, os.path.realpath(path))
    confidence = outcome.confidence if decision.confidence is None else decision.confidence
    confidence = confidence if config.tags.write_confidence else None
    changes: tuple[TagChange, ...] = ()
    if decision.genres:
        changes = tuple(tags.write_genres(path, decision.genres, confidence, dry_run=True,
                                          at_rest=at_rest))
    withdraw = (withdraw_unbacked and bool(info.genres) and not existing
                and decision.not_written in (NotWritten.BELOW_THRESHOLD,
                                             NotWritten.TIE_SKIPPED, NotWritten.NOT_MUSIC))
    return TagPlan(path, info, existing, labelled, decision, confidence, changes, withdraw)


def not_music_decision(catalogue, config: Config, path: str,
                       content: Content | None) -> TagDecision | None:
    """The decision for a track that is not music, or None: the user said so (a
    ``not_music`` correction in force), or the content gate did (``content.is_music`` false,
    ``[content] gate`` on) and the user gave it no genre of theirs (a ``set-genre`` or an
    accept overrides the gate)."""
    correction = catalogue.correction_in_force(path) if catalogue is not None else None
    if correction is not None and correction.action is CorrectionAction.NOT_MUSIC:
        return TagDecision((), NotWritten.NOT_MUSIC, "you said so")
    if config.content.gate and content is not None and not content.is_music \
            and correction is None:
        return TagDecision((), NotWritten.NOT_MUSIC, content.describe())
    return None
