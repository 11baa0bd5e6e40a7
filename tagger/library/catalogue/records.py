"""Records the catalogue returns: plain frozen dataclasses, safe to keep after the session
ends, and the functions that build them from rows."""

from __future__ import annotations

import datetime as dt
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tagger.library.catalogue.rows import load_list, record_from_row
from tagger.library.catalogue.schema import (
    Prediction,
)
from tagger.results import (
    AlbumIdentity,
    CalibrationMethod,
    Candidate,
    ContentKind,
    CorrectionAction,
    CorrectionSource,
    FailureKind,
    LabelSource,
    ModelInfo,
    NotWritten,
    PerTrack,
    SegmentResult,
)


@dataclass(frozen=True)
class TagWriteRecord:
    id: int
    path: str
    field: str
    old: tuple[str, ...] | None
    new: tuple[str, ...] | None
    written_at: dt.datetime
    reverted_at: dt.datetime | None
    old_layout: dict | None = None  # where ``old`` sat in the tag (tags.TagChange.old_layout)


@dataclass(frozen=True)
class PredictionRecord:
    id: int
    model: ModelInfo
    genre: str
    confidence: float
    votes: int
    segment_count: int
    tie: bool
    tied: tuple[str, ...]  # as Vote.tied: the top-voted genres, best first (just `genre` if no tie)
    descriptors: dict[str, float]
    created: dt.datetime
    candidates: tuple[Candidate, ...]
    segments: tuple[SegmentResult, ...]  # start_s is None when it was not recorded


@dataclass(frozen=True)
class TrackRecord:
    id: int
    path: str
    folder: str
    size: int | None
    mtime_ns: int | None
    content_id: str | None
    format: str | None
    duration_s: float | None
    status: str
    error: str | None
    attempts: int
    first_seen: dt.datetime
    updated_at: dt.datetime
    last_scanned: dt.datetime | None
    predictions: tuple[PredictionRecord, ...]  # newest first
    tag_writes: tuple[TagWriteRecord, ...]  # oldest first
    failure_kind: FailureKind | None = None
    not_written: NotWritten | None = None
    artist: str | None = None  # as the file said at its last scan
    album: str | None = None
    file_genres: tuple[str, ...] = ()  # the file's genres at its last scan, normalised
    user_genres: tuple[str, ...] = ()  # those of them the user set (not tagger)
    album_key: str | None = None  # its album (tagger.library.albums); None: not read yet
    album_artist: str | None = None
    mb_album_id: str | None = None
    compilation: bool | None = None  # the file's own compilation flag
    album_decision: AlbumRecord | None = None  # its album's, in tags.scope = "album"
    content_kind: ContentKind | None = None  # what the content gate heard; None: not run
    content_scores: dict[str, float] = field(default_factory=dict)  # its AudioSet groups

    @property
    def prediction(self) -> PredictionRecord | None:
        """The newest prediction (the one ``track_genres`` shows), if any."""
        return self.predictions[0] if self.predictions else None


@dataclass(frozen=True)
class AlbumRecord:
    """One album's decision (``albums``): the genre pooled over its tracks' segments, and
    what became of it. ``decided_at`` is set by the catalogue when it is recorded."""

    album_key: str
    identified_by: AlbumIdentity
    album: str | None
    album_artist: str | None
    folder: str | None
    model_sha256: str | None
    genre: str | None  # None: none of its tracks could vote
    confidence: float | None
    tie: bool
    tied: tuple[str, ...]  # the top-voted genres, best first (just ``genre`` if no tie)
    segment_count: int
    members: int
    voters: int  # members whose segments were pooled
    agreeing: int  # voters whose own vote is ``genre``
    compilation: bool
    per_track: PerTrack | None  # why its tracks keep their own decisions; None: one genre
    not_written: NotWritten | None  # why its genre went into no file (album-wide reasons)
    written: int  # members whose file holds what the decision gave them (for per-track:
    # their own genre)
    decided_at: dt.datetime | None = None


@dataclass(frozen=True)
class AlbumTrack:
    """A catalogued track of an album, as the album pass needs it."""

    path: str
    size: int | None
    mtime_ns: int | None
    status: str
    content_id: str | None
    format: str | None
    album_key: str


@dataclass(frozen=True)
class Failure:
    path: str
    status: str  # failed or skipped
    error: str | None
    attempts: int
    last_scanned: dt.datetime | None
    kind: FailureKind | None = None


@dataclass(frozen=True)
class ReviewRow:
    """One track of a review queue (``tagger list``)."""

    path: str
    status: str
    genre: str | None  # the newest prediction, None when there is none
    confidence: float | None
    tie: bool
    tied_genres: str | None
    not_written: NotWritten | None
    error: str | None
    failure_kind: FailureKind | None
    content_kind: ContentKind | None = None  # what the content gate heard; None: not run
    content_scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ConfidenceSpread:
    count: int
    min: float
    q1: float
    median: float
    q3: float
    max: float
    mean: float
    buckets: tuple[tuple[float, float, int], ...]  # (low, high, tracks): ten buckets of 0.1


@dataclass(frozen=True)
class Stats:
    total: int  # tracks in the catalogue, any status
    status_counts: dict[str, int]  # every status, zeros included
    predicted: int  # tracks with a prediction (rows of track_genres)
    # (genre, tracks), most tracks first: of the predicted tracks, by the user's corrected
    # genre where there is one, else by the prediction's; the not-music ones left out
    genres: tuple[tuple[str, int], ...]
    ties: int
    confidence: ConfidenceSpread | None  # None when nothing is predicted yet
    failures: tuple[tuple[str, str, int], ...]  # (status, reason, tracks), most first
    models: tuple[tuple[str, str, int], ...]  # (name, sha256, predictions), most first
    not_music: int = 0  # predicted tracks the user said are not music
    corrected: int = 0  # predicted tracks counted under the genre the user gave them
    albums: int = 0  # albums decided (tags.scope = album: the albums table)
    albums_per_track: int = 0  # of them, compilations whose tracks keep their own genres


@dataclass(frozen=True)
class LabelRow:
    """One track with a genre the user gave it: a training label (``labelled_tracks``)."""

    path: str
    content_id: str | None
    genre: str  # the label: the correction's genre, else the first of the user's genres
    genres: tuple[str, ...]  # every genre of the label (a correction has one)
    artist: str | None
    album: str | None
    source: LabelSource


@dataclass(frozen=True)
class Correction:
    """One row of ``corrections``."""

    id: int
    path: str
    action: CorrectionAction
    genre: str | None  # None for not_music and undo
    previous: tuple[str, ...]  # the file's genres before
    predicted_genre: str | None
    predicted_confidence: float | None
    model_sha256: str | None
    source: CorrectionSource
    created_at: dt.datetime
    undone_at: dt.datetime | None  # when a later undo cancelled it
    tag_write_ids: tuple[int, ...] = ()  # the tag_writes rows it made (what an undo restores)

    @property
    def in_force(self) -> bool:
        """Whether this correction says the track's genre now (not an undo, not undone)."""
        return self.action is not CorrectionAction.UNDO and self.undone_at is None


@dataclass(frozen=True)
class Adoption:
    """A trained model made the library's model (``adoptions``)."""

    id: int
    name: str
    sha256: str
    bundle_path: str
    labels: tuple[str, ...]
    figures: dict[str, Any]
    adopted_at: dt.datetime
    retired_at: dt.datetime | None  # None while it is the current one


@dataclass(frozen=True)
class Calibration:
    """A confidence map of one model (``calibrations``)."""

    id: int
    model_sha256: str
    method: CalibrationMethod
    parameters: dict[str, Any]
    ece_before: float | None
    ece_after: float | None
    tracks: int | None
    target_precision: float | None
    threshold: float | None  # None when no threshold reaches target_precision
    precision: float | None
    coverage: float | None
    created_at: dt.datetime


class TagChange(Protocol):
    """What :meth:`Catalogue.record_tag_changes` needs from the tag writer's change objects
    (and, when they have one, their ``old_layout``: a JSON-able dict)."""

    field: str
    old: Sequence[str] | None
    new: Sequence[str] | None


def tag_write_record(row: Any) -> TagWriteRecord:
    return record_from_row(
        TagWriteRecord, row, old=load_list(row.old_value), new=load_list(row.new_value)
    )


def prediction_record(p: Prediction) -> PredictionRecord:
    candidates = tuple(Candidate(c.genre, c.votes, c.mean_score) for c in p.candidates)
    if p.tie and candidates:
        top = candidates[0].votes
        tied = tuple(c.genre for c in candidates if c.votes == top)
    else:
        tied = (p.genre,)
    return record_from_row(
        PredictionRecord,
        p,
        model=ModelInfo(
            p.model.name, p.model.sha256, tuple(json.loads(p.model.vocabulary or "[]"))
        ),
        tied=tied,
        candidates=candidates,
        segments=tuple(
            SegmentResult(seg.start_s, seg.genre, {}, json.loads(seg.scores) if seg.scores else {})
            for seg in p.segments
        ),
    )


def confidence_spread(values: list[float]) -> ConfidenceSpread | None:
    if not values:
        return None
    values = sorted(values)
    if len(values) > 1:
        q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    else:
        q1 = median = q3 = values[0]
    buckets = [0] * 10
    for v in values:
        buckets[min(max(int(v * 10), 0), 9)] += 1
    return ConfidenceSpread(
        count=len(values),
        min=values[0],
        q1=q1,
        median=median,
        q3=q3,
        max=values[-1],
        mean=statistics.fmean(values),
        buckets=tuple((i / 10, (i + 1) / 10, n) for i, n in enumerate(buckets)),
    )
