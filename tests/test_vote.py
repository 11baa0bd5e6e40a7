"""The segment vote, exactly as specified."""

import numpy as np
import pytest

from tagger.model.vote import vote

GENRES = ("jazz", "classical", "rock")


def test_majority_wins_and_confidence_is_mean_over_all_segments():
    scores = np.array([
        [0.9, 0.1, 0.0],
        [0.8, 0.3, 0.1],
        [0.2, 0.7, 0.1],
    ])
    result = vote(GENRES, scores)
    assert result.genre == "jazz" and not result.tie
    assert result.confidence == pytest.approx((0.9 + 0.8 + 0.2) / 3)
    assert [(c.genre, c.votes) for c in result.candidates] == [("jazz", 2), ("classical", 1)]
    assert result.candidates[1].mean_score == pytest.approx((0.1 + 0.3 + 0.7) / 3)
    assert result.segment_winners == ("jazz", "jazz", "classical")


def test_tie_is_reported_and_broken_by_mean_score():
    scores = np.array([
        [0.6, 0.5, 0.0],
        [0.6, 0.5, 0.0],
        [0.1, 0.9, 0.0],
        [0.2, 0.95, 0.0],
    ])
    result = vote(GENRES, scores)
    assert result.tie
    assert set(result.tied) == {"jazz", "classical"}
    # classical mean 0.7125 beats jazz 0.375: it is the genre to write
    assert result.genre == "classical" and result.tied[0] == "classical"
    assert result.confidence == pytest.approx(0.7125)
    assert all(c.votes == 2 for c in result.candidates)


def test_three_way_tie():
    scores = np.eye(3) * 0.5 + 0.1
    result = vote(GENRES, scores)
    assert result.tie and len(result.tied) == 3


def test_single_segment():
    result = vote(GENRES, np.array([[0.1, 0.2, 0.3]]))
    assert result.genre == "rock" and result.confidence == pytest.approx(0.3) and not result.tie


def test_genre_without_votes_is_not_a_candidate():
    result = vote(GENRES, np.array([[0.9, 0.8, 0.1], [0.9, 0.1, 0.8]]))
    assert [c.genre for c in result.candidates] == ["jazz"]


@pytest.mark.parametrize("shape", [(0, 3), (2, 2), (3,)])
def test_bad_shapes_are_rejected(shape):
    with pytest.raises(ValueError):
        vote(GENRES, np.zeros(shape))
