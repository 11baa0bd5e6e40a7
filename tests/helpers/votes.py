"""Comparing two classifications of one track."""

from __future__ import annotations


def assert_same_vote(full, cached, tolerance=2e-3):
    """The same vote, segment winners and scores, within the cache's half precision."""
    assert cached.vote.genre == full.vote.genre
    assert cached.vote.tie == full.vote.tie and cached.vote.tied == full.vote.tied
    assert cached.vote.segment_winners == full.vote.segment_winners
    assert abs(cached.vote.confidence - full.vote.confidence) < tolerance
    assert [(c.genre, c.votes) for c in cached.vote.candidates] == \
        [(c.genre, c.votes) for c in full.vote.candidates]
    for a, b in zip(full.vote.candidates, cached.vote.candidates):
        assert abs(a.mean_score - b.mean_score) < tolerance
    assert len(cached.segments) == len(full.segments)
    for a, b in zip(full.segments, cached.segments):
        assert a.start_s == b.start_s and a.genre == b.genre
        assert max(abs(a.genre_scores[g] - b.genre_scores[g]) for g in a.genre_scores) < tolerance
    assert cached.descriptors.keys() == full.descriptors.keys()
    assert cached.duration_s == full.duration_s
