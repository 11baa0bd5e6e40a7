"""What classifying one file produces (the vote, segments, model identity); passed from the
classifier to the tag writer and the catalogue. Plain data: nothing in tagger is imported here."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


@dataclass(frozen=True)
class Candidate:
    """A genre that won at least one segment."""

    genre: str
    votes: int
    mean_score: float  # mean of this genre's score over *all* segments


@dataclass(frozen=True)
class Vote:
    """Outcome of the vote over one track's segments."""

    genre: str  # the genre to write: most votes, a tie broken by mean score
    confidence: float  # mean score of `genre` over all segments
    tie: bool  # two or more genres share the top vote count
    tied: tuple[str, ...]  # those genres, best mean score first (just `genre` when no tie)
    candidates: tuple[Candidate, ...]  # every genre with a vote, most votes first
    segment_winners: tuple[str, ...]  # the genre each segment voted for, in time order
    # the mean score before calibration (tagger.model.calibration); None: not calibrated,
    # `confidence` is the raw mean score
    raw_confidence: float | None = None


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


class ContentKind(str, Enum):
    """What a track is, as the content gate hears it (:mod:`tagger.model.content`):
    ``tracks.content_kind``. Only music is given a genre."""

    MUSIC = "music"
    SPEECH = "speech"  # speech, narration, an audiobook, a podcast
    ANIMAL = "animal"  # birdsong, a whale, a dog
    OTHER = "other"  # other sounds: nature, things, machines, noise, silence


@dataclass(frozen=True)
class Content:
    """The content gate's verdict on one track: its kind and the AudioSet group scores it
    came from (``{"music": 0.84, "speech": 0.01, "animal": 0.0, "other": 0.02}``)."""

    kind: ContentKind
    scores: dict[str, float]

    @property
    def is_music(self) -> bool:
        return self.kind is ContentKind.MUSIC

    def describe(self) -> str:
        """``speech 0.83, music 0.04``: its kind's score, then music's."""
        if self.is_music:
            return f"music {self.scores.get('music', 0.0):.2f}"
        return (f"{self.kind.value} {self.scores.get(self.kind.value, 0.0):.2f}, "
                f"music {self.scores.get('music', 0.0):.2f}")


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
    content: Content | None = None  # the content gate's verdict; None: the gate did not run

    @property
    def ok(self) -> bool:
        return self.error is None


class FailureKind(str, Enum):
    """Why a file has status ``failed``: stored in ``tracks.failure_kind``.

    Transient kinds are retried by a plain rescan; the others (the file's content) only when
    the file changes or with ``tagger scan --retry-failed``.
    """

    WORKER_DIED = "worker_died"  # the decoding worker process died on it (twice)
    TIMEOUT = "timeout"  # the decoder ran past decode.timeout_seconds
    PERMISSION = "permission"  # the file or its folder could not be read or written
    UNREADABLE = "unreadable"  # not audio, truncated, empty, no audio stream, ...
    TAG_WRITE = "tag_write"  # classified, but its tags could not be written
    INTERNAL = "internal"  # a bug in tagger
    BUSY = "busy"  # still being written (modified within the settle time, or open for writing)
    CHANGED = "changed"  # changed between its read and the tag write; the write was abandoned

    @property
    def transient(self) -> bool:
        return self in TRANSIENT_FAILURES


#: a file in motion (a copy or download still running): not an error, only "later"
IN_MOTION = frozenset({FailureKind.BUSY, FailureKind.CHANGED})
TRANSIENT_FAILURES = frozenset({FailureKind.WORKER_DIED, FailureKind.TIMEOUT,
                                FailureKind.PERMISSION}) | IN_MOTION


class NotWritten(str, Enum):
    """Why a classified track's prediction was not written into its tags:
    ``tracks.not_written`` (NULL when it was written, or the file already said the same)."""

    BELOW_THRESHOLD = "below_threshold"  # confidence under tags.min_confidence
    KEPT_USER_GENRE = "kept_user_genre"  # tags.write = if_empty and the file has a genre
    TIE_SKIPPED = "tie_skipped"  # a tie with tags.on_tie = skip
    POLICY_NEVER = "policy_never"  # tags.write = never
    OUTSIDE_LIBRARY = "outside_library"  # read through a symlink to outside the roots
    # not music: the content gate says so (speech, animal, other sounds), or the user's
    # correction in force does (tagger set-genre --not-music); the track's status is not_music
    NOT_MUSIC = "not_music"
    NOT_ALLOWED = "not_allowed"  # neither the genre nor a parent is in tags.allowed_genres


class CorrectionAction(str, Enum):
    """What a user correction does: ``corrections.action``."""

    SET_GENRE = "set_genre"  # the user names the track's genre
    ACCEPT = "accept"  # the user confirms the predicted genre
    NOT_MUSIC = "not_music"  # speech, noise, ...: no genre at all, and not a training label
    UNDO = "undo"  # cancels the track's newest correction still in force


class CorrectionSource(str, Enum):
    """Where a correction came from: ``corrections.source``."""

    CLI = "cli"  # tagger set-genre
    REVIEW = "review"  # the review page


class LabelSource(str, Enum):
    """Where a training label comes from (``Catalogue.labelled_tracks``)."""

    TAG = "tag"  # a genre the user put in the file (never one tagger wrote)
    CORRECTION = "correction"  # the newest correction in force


class CalibrationMethod(str, Enum):
    """How a calibration maps raw confidence to probability: ``calibrations.method``."""

    ISOTONIC = "isotonic"
    TEMPERATURE = "temperature"


class AlbumIdentity(str, Enum):
    """How a track's album was told (``tracks.album_key``'s prefix, ``albums.identified_by``),
    in the order beets and Picard ask."""

    MBID = "mbid"  # the MusicBrainz album (release) id in its tags
    TAGS = "tags"  # its album artist (else artist) and album tags
    FOLDER = "folder"  # no album tag: its folder is the album


class PerTrack(str, Enum):
    """Why an album's tracks keep their own decisions instead of the album's genre
    (``albums.per_track``): a compilation, said by its tags or by its tracks' votes."""

    VARIOUS_ARTISTS = "various_artists"  # its album artist is "Various Artists", "VA", ...
    COMPILATION_TAG = "compilation_tag"  # TCMP / cpil / COMPILATION=1 on a track
    VOTES_DISAGREE = "votes_disagree"  # the album's genre is few of its tracks' own genre
