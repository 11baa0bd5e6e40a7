"""The tag policy: what a vote may write into a file (``[tags]``), and the calibrated
confidence and threshold each engine resolves once."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from tagger.config import AUTO, DEFAULT_MIN_CONFIDENCE, Config, TagsConfig
from tagger.genre_tree import GenreTree, fold, genre_tree
from tagger.library.genres import display_genre as library_display_genre
from tagger.library.journal import same_genres
from tagger.results import NotWritten, Vote

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- tag policy


@dataclass(frozen=True)
class TagDecision:
    genres: tuple[str, ...]  # what to write; empty: write nothing
    not_written: NotWritten | None = None  # why nothing is written (None when something is)
    detail: str = ""  # for people: the figures behind not_written
    # the confidence of what is written, when it is not the vote's (a parent backed off to)
    confidence: float | None = None

    @property
    def reason(self) -> str:
        """One line for people: why nothing is written ("" when something is)."""
        if self.not_written is None:
            return ""
        return REASON_TEXT[self.not_written] + (f" ({self.detail})" if self.detail else "")


REASON_TEXT = {
    NotWritten.POLICY_NEVER: "tag writing is off (tags.write = never)",
    NotWritten.BELOW_THRESHOLD: "below threshold",
    NotWritten.TIE_SKIPPED: "tie skipped (tags.on_tie = skip)",
    NotWritten.KEPT_USER_GENRE: "kept the genre already set",
    NotWritten.OUTSIDE_LIBRARY: "not written through a symlink to outside the library",
    NotWritten.NOT_MUSIC: "not music",
    NotWritten.NOT_ALLOWED: "not in tags.allowed_genres, nor a parent of it",
}


def display_genre(genre: str, policy: TagsConfig) -> str:
    """The form written into files (``tags.genre_case``; see
    :func:`tagger.library.genres.display_genre`): a genre renamed with capitals in
    ``[genres]`` is kept as given."""
    return library_display_genre(genre, policy.genre_case)


def decide_tags(outcome: Vote, existing: list[str], config: Config) -> TagDecision:
    """Apply ``[tags]`` (write, min_confidence, on_tie, the genre tree's options,
    genre_case) to one vote over the genres the file holds (``existing``, the user's)."""
    policy = config.tags
    if policy.write == "never":
        return TagDecision((), NotWritten.POLICY_NEVER)
    tree = genre_tree(config.genres.rename)
    confidence = None
    split = (outcome.confidence < policy.min_confidence
             or (outcome.tie and policy.on_tie == "skip"))
    if split and policy.backoff_to_parent:
        parent = family_vote(outcome, tree)
        if parent is not None and parent.confidence >= policy.min_confidence:
            outcome, confidence = parent, parent.confidence
    if outcome.confidence < policy.min_confidence:
        return TagDecision((), NotWritten.BELOW_THRESHOLD,
                           f"{outcome.confidence:.2f} < {policy.min_confidence:g}")
    if outcome.tie and policy.on_tie == "skip":
        return TagDecision((), NotWritten.TIE_SKIPPED, ", ".join(outcome.tied))
    voted = outcome.tied if outcome.tie and policy.on_tie == "all" else (outcome.genre,)
    genres = _with_tree(voted, tree, policy)
    if not genres:
        return TagDecision((), NotWritten.NOT_ALLOWED, "; ".join(voted))
    genres = tuple(display_genre(g, policy) for g in genres)
    if policy.write == "if_empty" and existing:
        if same_genres(existing, genres):
            return TagDecision(())  # the file already says it: nothing to write, nothing kept
        return TagDecision((), NotWritten.KEPT_USER_GENRE, "; ".join(existing))
    return TagDecision(genres, confidence=confidence)


def _with_tree(voted: tuple[str, ...], tree: GenreTree, policy: TagsConfig) -> tuple[str, ...]:
    """The genres to write for ``voted``: each (or, outside ``tags.allowed_genres``, its
    nearest allowed ancestor), followed by its ancestors with ``tags.with_parents``; each
    genre once."""
    allowed = {tree.key(g) or fold(g) for g in policy.allowed_genres}
    chosen: dict[str, str] = {}
    for genre in voted:
        line = [genre, *tree.ancestors(genre)]
        if allowed:
            line = [g for g in line if (tree.key(g) or fold(g)) in allowed]
        for g in line if policy.with_parents else line[:1]:
            chosen.setdefault(fold(g), g)
    return tuple(chosen.values())


def family_vote(outcome: Vote, tree: GenreTree) -> Vote | None:
    """The vote one level up the genre tree, when the children split it: every genre's
    segment votes go to its parent (a genre with none to itself), the family with most votes
    wins. None unless that family holds two or more voted genres and no other family has as
    many votes. A segment's top genre is in its top family (a family's score is its best
    member's, as a genre's is its best tag's), so the votes add up exactly; the parent's
    confidence is its best member's mean score, a lower bound of the family's mean best
    score (with a calibration only the winner's calibrated confidence is known: it is used
    when the winner is in the family)."""
    families: dict[str, list] = {}
    for candidate in outcome.candidates:
        families.setdefault(tree.parent(candidate.genre) or candidate.genre,
                            []).append(candidate)
    votes = sorted(((sum(c.votes for c in members), parent)
                    for parent, members in families.items()), reverse=True)
    top, parent = votes[0]
    members = families[parent]
    if len(members) < 2 or (len(votes) > 1 and votes[1][0] == top):
        return None
    if outcome.raw_confidence is None:
        confidence = max(c.mean_score for c in members)
    elif any(c.genre == outcome.genre for c in members):
        confidence = outcome.confidence
    else:
        return None
    return replace(outcome, genre=parent, confidence=confidence, tie=False, tied=(parent,))


# ---------------------------------------------------------------- calibration


def resolve_calibration(config: Config, catalogue, model_sha256: str,
                        fallback=None) -> tuple[object | None, Config]:
    """(calibrator, config): the calibration ``tagger learn`` recorded for the model (else
    ``fallback``: a bundle's own card), and the config with ``tags.min_confidence`` as a
    number ("auto": that calibration's threshold; without one, the fixed default, said once:
    each engine resolves it once)."""
    from tagger.model.calibration import Calibrator

    record = catalogue.calibration_for(model_sha256) if catalogue is not None else None
    calibrator = fallback
    if record is not None:
        calibrator = Calibrator(record.method.value, dict(record.parameters))
    tags_config = config.tags
    if tags_config.min_confidence != AUTO:
        return calibrator, config
    threshold = record.threshold if record is not None else None
    if threshold is None:
        why = ("no calibration for this model yet (run 'tagger learn')" if record is None
               else "no threshold reaches tags.target_precision on the labelled tracks")
        log.warning("tags.min_confidence = \"auto\": %s; using %g", why,
                    DEFAULT_MIN_CONFIDENCE)
        threshold = DEFAULT_MIN_CONFIDENCE
    return calibrator, replace(config, tags=replace(tags_config, min_confidence=float(threshold)))


def resolve_threshold(config: Config, catalogue) -> Config:
    """``config`` with ``tags.min_confidence`` a number as a scan would resolve it now (the
    calibration of the model :func:`tagger.service.models.resolve_model` picks), without
    loading that model: for what reads the catalogue and classifies nothing (``tagger
    review``). A model that cannot be resolved (an adopted bundle gone) is said once, and the
    fixed default used."""
    if config.tags.min_confidence != AUTO:
        return config
    from tagger.errors import TaggerError
    from tagger.model.classify import head_sha256
    from tagger.service.models import resolve_model

    try:
        sha256 = head_sha256(resolve_model(config, catalogue=catalogue).config)
    except TaggerError as exc:
        log.warning("tags.min_confidence = \"auto\": cannot tell which model is in use (%s)",
                    exc)
        sha256 = ""
    return resolve_calibration(config, catalogue, sha256)[1]


def use_calibration(config: Config, catalogue, classifier) -> Config:
    """:func:`resolve_calibration` for a local classifier: it gets the calibrator."""
    classifier.calibrator, config = resolve_calibration(
        config, catalogue, classifier.info.sha256, classifier.head_calibrator)
    return config
