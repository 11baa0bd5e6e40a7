"""What classifying one file produces; passed from the classifier to the tag writer and the
catalogue."""

from __future__ import annotations

from dataclasses import dataclass, field

from tagger.vote import Vote


@dataclass(frozen=True)
class SegmentResult:
    start_s: float  # where the segment starts in the track, seconds
    genre: str  # the genre this segment voted for
    scores: dict[str, float]  # every raw model output, keyed "msd:<tag>" / "mtt:<tag>"
    genre_scores: dict[str, float] = field(default_factory=dict)  # what the vote compared


@dataclass(frozen=True)
class ModelInfo:
    name: str  # e.g. "musicnn" (MSD_musicnn + MTT_musicnn) or a trained bundle's name
    sha256: str  # identity of the weights (combined over every weight file used)
    vocabulary: tuple[str, ...] = ()  # the genres it votes over


@dataclass(frozen=True)
class TrackResult:
    """One file's classification, or the reason it failed (``error`` set, ``vote`` None)."""

    path: str
    model: ModelInfo
    vote: Vote | None = None
    segments: tuple[SegmentResult, ...] = ()
    descriptors: dict[str, float] = field(default_factory=dict)  # non-genre tags, mean score
    duration_s: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
