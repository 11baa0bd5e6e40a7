"""What the track page shows, from the catalogue's record of one track."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tagger.config import Config
from tagger.errors import ConfigError
from tagger.library.catalogue import PredictionRecord, TrackRecord
from tagger.model.genres import build_vocabulary

TAGGRAM_ROWS = 8  # genres shown in the taggram, best mean score first
TOP_SCORES = 3  # per segment, under the taggram


@dataclass(frozen=True)
class SegmentView:
    index: int
    start_s: float | None  # in the track
    play_from: float  # in the served window (the player's currentTime)
    play_to: float
    winner: str
    top: tuple[tuple[str, float], ...]  # the best genre scores of the segment


@dataclass(frozen=True)
class Timeline:
    genres: tuple[str, ...]  # taggram rows
    values: tuple[tuple[float, ...], ...]  # values[row][segment]
    segments: tuple[SegmentView, ...]


def genre_matrix(prediction: PredictionRecord, config: Config) -> tuple[tuple[str, ...],
                                                                          np.ndarray]:
    """(genres, scores of shape (segments, genres)): what each segment's vote compared.

    A trained head's genre scores are stored with the segment; the genre map's are the
    maximum of each genre's member tags (tagger.model.genres), recomputed from the stored
    tag scores."""
    segments = prediction.segments
    vocabulary = tuple(prediction.model.vocabulary)
    stored = [seg.genre_scores for seg in segments]  # the raw outputs as the catalogue keeps them
    if vocabulary and all(all(g in s for g in vocabulary) for s in stored):
        return vocabulary, np.array([[s[g] for g in vocabulary] for s in stored], dtype=float)
    keys = tuple(stored[0]) if stored else ()
    try:
        mapped = build_vocabulary(keys, config.genres)
    except ConfigError:
        mapped = None
    if mapped is None or any(tuple(s) != keys for s in stored):
        # scores not recorded (or another genre map): the winners alone
        genres = vocabulary or tuple(dict.fromkeys(seg.genre for seg in segments))
        return genres, np.array([[1.0 if seg.genre == g else 0.0 for g in genres]
                                 for seg in segments], dtype=float).reshape(len(segments),
                                                                           len(genres))
    tag_scores = np.array([[s[k] for k in keys] for s in stored], dtype=float)
    return mapped.genres, mapped.genre_scores(tag_scores)


def timeline(record: TrackRecord, config: Config) -> Timeline | None:
    """The taggram and the segments of the newest prediction, None without one."""
    prediction = record.prediction
    if prediction is None or not prediction.segments:
        return None
    genres, matrix = genre_matrix(prediction, config)
    window = config.model.window_seconds
    duration = record.duration_s
    offset = max(0.0, (duration - window) / 2) if duration else 0.0
    length = config.model.segment_seconds
    views = []
    for i, seg in enumerate(prediction.segments):
        start = (seg.start_s - offset) if seg.start_s is not None else i * length
        start = max(0.0, start)
        row = matrix[i] if len(genres) else np.zeros(0)
        order = np.argsort(-row)[:TOP_SCORES]
        views.append(SegmentView(i, seg.start_s, round(start, 3), round(start + length, 3),
                                 seg.genre, tuple((genres[j], float(row[j])) for j in order)))
    mean = matrix.mean(axis=0) if len(matrix) else np.zeros(len(genres))
    rows = [j for j in np.argsort(-mean)[:TAGGRAM_ROWS]]
    return Timeline(tuple(genres[j] for j in rows),
                    tuple(tuple(float(matrix[i][j]) for i in range(len(matrix))) for j in rows),
                    tuple(views))
