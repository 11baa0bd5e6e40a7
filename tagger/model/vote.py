"""The segment vote: each segment votes for its top genre, the most-voted genre wins."""

from __future__ import annotations

import dataclasses
import statistics
from typing import TYPE_CHECKING, Sequence

import numpy as np

from tagger.results import Candidate, Vote

if TYPE_CHECKING:
    from tagger.model.calibration import Calibrator


def vote(genres: Sequence[str], scores: np.ndarray) -> Vote:
    """Run the vote over ``scores`` of shape (segments, genres).

    A segment votes for its highest-scoring genre. The winner has the most votes; its
    confidence is its mean score over every segment. When several genres share the top
    vote count that is a tie: all of them are reported, and the one to write is the one
    with the highest mean score.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] != len(genres):
        raise ValueError(f"scores must be (segments>0, {len(genres)}), got {scores.shape}")
    winners = scores.argmax(axis=1)
    votes = np.bincount(winners, minlength=len(genres))
    means = scores.mean(axis=0)
    voted = [i for i in range(len(genres)) if votes[i] > 0]
    voted.sort(key=lambda i: (-votes[i], -means[i], genres[i]))
    candidates = tuple(Candidate(genres[i], int(votes[i]), float(means[i])) for i in voted)
    top = candidates[0].votes
    tied = tuple(c.genre for c in candidates if c.votes == top)
    best = candidates[0]
    return Vote(
        genre=best.genre,
        confidence=best.mean_score,
        tie=len(tied) > 1,
        tied=tied,
        candidates=candidates,
        segment_winners=tuple(genres[i] for i in winners),
    )


def calibrated(outcome: Vote, calibrator: Calibrator | None) -> Vote:
    """The vote with its confidence calibrated (the raw one kept in ``raw_confidence``)."""
    if calibrator is None:
        return outcome
    raw = outcome.confidence if outcome.raw_confidence is None else outcome.raw_confidence
    return dataclasses.replace(outcome, confidence=calibrator(raw), raw_confidence=raw)


def pooled_vote(genres: Sequence[str], tracks: Sequence[np.ndarray],
                calibrator: Calibrator | None = None) -> Vote:
    """The vote of several tracks together (an album): :func:`vote` over the segments of all
    of them, each track's (segments, genres) scores one after the other, and its confidence
    calibrated as a track's is. A track weighs by its segments (a scan cuts every track into
    ``model.segments``; only tracks shorter than the window have fewer)."""
    return calibrated(vote(genres, np.concatenate([np.asarray(t) for t in tracks])), calibrator)


def album_vote(genres: Sequence[str], tracks: Sequence[np.ndarray],
               calibrator: Calibrator | None = None) -> Vote:
    """An album's vote: the genre (and tie) of :func:`pooled_vote` over all its tracks'
    segments, with the confidence of its typical track: the median of the tracks' own
    (calibrated) confidences, the quantity ``tags.min_confidence`` was set and calibrated on.

    The pooled mean score of the winner would count the tracks that voted otherwise twice
    (once in the vote, again as low scores in the mean: an orchestral score split between
    ambient and classical pools to 0.23 while its tracks are named at a median 0.37); how
    much the tracks agree is the album rule's to weigh (tagger.service.albums). One track
    is its own vote exactly."""
    pooled = pooled_vote(genres, tracks, calibrator)
    own = [calibrated(vote(genres, np.asarray(t)), calibrator) for t in tracks]
    raw = None
    if calibrator is not None:
        raw = statistics.median(o.raw_confidence for o in own)
    return dataclasses.replace(pooled, confidence=statistics.median(o.confidence for o in own),
                               raw_confidence=raw)
