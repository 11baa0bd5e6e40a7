"""The catalogue's tables as ORM classes, mirroring ``migrations/versions/*``. Never call
``Base.metadata.create_all()``: the migrations own the schema (the views only exist there)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    mapped_column,
    relationship,
)

from tagger.results import (
    AlbumIdentity,
    CalibrationMethod,
    CorrectionAction,
    CorrectionSource,
    PerTrack,
)

STATUSES = ("pending", "done", "failed", "skipped", "missing", "not_music")
#: a track classified and decided: music (done) or not (not_music, migration 0009_content)
CLASSIFIED = ("done", "not_music")


BUSY_TIMEOUT_MS = 10_000


SCORE_DECIMALS = 6  # raw scores and descriptors are stored rounded to this many decimals


CHUNK = 500  # parameters per IN (...) list; well under SQLite's limit


NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


_Stamp = sa.DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class Track(Base):
    """One file, identified by its absolute path."""

    __tablename__ = "tracks"
    __table_args__ = (
        sa.UniqueConstraint("path"),
        sa.CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")", name="status"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(sa.Text)
    folder: Mapped[str] = mapped_column(sa.Text)
    size: Mapped[int | None] = mapped_column(sa.BigInteger)
    mtime_ns: Mapped[int | None] = mapped_column(sa.BigInteger)
    content_id: Mapped[str | None] = mapped_column(sa.String(128), index=True)
    format: Mapped[str | None] = mapped_column(sa.String(16))
    duration_s: Mapped[float | None] = mapped_column(sa.Float)
    status: Mapped[str] = mapped_column(sa.String(16), index=True, server_default="pending")
    error: Mapped[str | None] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    failure_kind: Mapped[str | None] = mapped_column(sa.String(16))  # FailureKind, when failed
    not_written: Mapped[str | None] = mapped_column(sa.String(24), index=True)  # NotWritten
    first_seen: Mapped[dt.datetime] = mapped_column(_Stamp)
    updated_at: Mapped[dt.datetime] = mapped_column(_Stamp)
    last_scanned: Mapped[dt.datetime | None] = mapped_column(_Stamp)
    artist: Mapped[str | None] = mapped_column(sa.Text)  # as the file says, at the last scan
    album: Mapped[str | None] = mapped_column(sa.Text)
    file_genres: Mapped[str | None] = mapped_column(sa.Text)  # JSON list, normalised
    user_genres: Mapped[str | None] = mapped_column(sa.Text)  # JSON list; NULL: none the user set
    # the album it belongs to (tagger.library.albums; migration 0008_albums), from its tags
    album_key: Mapped[str | None] = mapped_column(sa.Text, index=True)
    album_artist: Mapped[str | None] = mapped_column(sa.Text)
    mb_album_id: Mapped[str | None] = mapped_column(sa.Text)
    compilation: Mapped[bool | None] = mapped_column(sa.Boolean)  # the file's own flag
    # what the content gate heard (ContentKind; migration 0009_content); NULL: it did not run
    content_kind: Mapped[str | None] = mapped_column(sa.String(16))
    content_scores: Mapped[str | None] = mapped_column(sa.Text)  # JSON object: group scores

    predictions: Mapped[list[Prediction]] = relationship(
        back_populates="track",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="(Prediction.created.desc(), Prediction.id.desc())",
    )
    # the journal of the user's original values outlives the row (migration 0004_journal)
    tag_writes: Mapped[list[TagWrite]] = relationship(
        back_populates="track",
        cascade="save-update, merge",
        passive_deletes="all",
        order_by="(TagWrite.written_at, TagWrite.id)",
    )


class Model(Base):
    """A set of model weights, identified by the hash of its files."""

    __tablename__ = "models"
    __table_args__ = (sa.UniqueConstraint("sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    vocabulary: Mapped[str] = mapped_column(sa.Text, server_default="[]")  # JSON list
    created: Mapped[dt.datetime] = mapped_column(_Stamp)


class Prediction(Base):
    """The vote of one model over one track; a newer one for the same pair replaces it."""

    __tablename__ = "predictions"
    __table_args__ = (
        sa.UniqueConstraint("track_id", "model_id"),
        # the review queues' keyset pages (migration 0006_review)
        sa.Index("ix_predictions_confidence_track_id", "confidence", "track_id"),
        sa.Index("ix_predictions_created_track_id", "created", "track_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    track_id: Mapped[int] = mapped_column(sa.ForeignKey("tracks.id", ondelete="CASCADE"))
    model_id: Mapped[int] = mapped_column(
        sa.ForeignKey("models.id", ondelete="CASCADE"), index=True
    )
    genre: Mapped[str] = mapped_column(sa.String(200))
    confidence: Mapped[float] = mapped_column(sa.Float)
    votes: Mapped[int] = mapped_column(sa.Integer)
    segment_count: Mapped[int] = mapped_column(sa.Integer)
    tie: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    tied_genres: Mapped[str | None] = mapped_column(sa.Text)  # "a,b"; NULL when no tie
    descriptors: Mapped[str | None] = mapped_column(sa.Text)  # JSON object; NULL when none
    created: Mapped[dt.datetime] = mapped_column(_Stamp)

    track: Mapped[Track] = relationship(back_populates="predictions")
    model: Mapped[Model] = relationship()
    candidates: Mapped[list[PredictionCandidate]] = relationship(
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="PredictionCandidate.place",
    )
    segments: Mapped[list[PredictionSegment]] = relationship(
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="PredictionSegment.segment_index",
    )


class _PredictionPart:
    """The key columns of a row that is part of one prediction (deleted with it); first, as
    in the migrations."""

    id: Mapped[int] = mapped_column(primary_key=True, sort_order=-1)
    prediction_id: Mapped[int] = mapped_column(
        sa.ForeignKey("predictions.id", ondelete="CASCADE"), index=True, sort_order=-1
    )


class PredictionCandidate(_PredictionPart, Base):
    """A genre that won at least one segment; place 1 is the written genre."""

    __tablename__ = "prediction_candidates"

    place: Mapped[int] = mapped_column(sa.Integer)
    genre: Mapped[str] = mapped_column(sa.String(200))
    votes: Mapped[int] = mapped_column(sa.Integer)
    mean_score: Mapped[float] = mapped_column(sa.Float)


class PredictionSegment(_PredictionPart, Base):
    """One analysed segment: the genre it voted for and every raw model output."""

    __tablename__ = "prediction_segments"

    segment_index: Mapped[int] = mapped_column(sa.Integer)
    start_s: Mapped[float | None] = mapped_column(sa.Float)
    genre: Mapped[str] = mapped_column(sa.String(200))
    scores: Mapped[str | None] = mapped_column(sa.Text)  # JSON object {"msd:rock": 0.71, ...}


class TagWrite(Base):
    """One tag field tagger changed in a file, for ``tagger revert``."""

    __tablename__ = "tag_writes"

    id: Mapped[int] = mapped_column(primary_key=True)
    # NULL once the track's row is gone: the history stays, found by its path
    track_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("tracks.id", ondelete="SET NULL"), index=True
    )
    path: Mapped[str] = mapped_column(sa.Text)  # the track's path, kept current across moves
    field: Mapped[str] = mapped_column(sa.String(64))
    old_value: Mapped[str | None] = mapped_column(sa.Text)  # JSON list; NULL: field was absent
    new_value: Mapped[str | None] = mapped_column(sa.Text)  # JSON list; NULL: field removed
    # JSON object: where the old values sat in the tag (tags.TagChange.old_layout), for a
    # byte-exact revert; NULL: not recorded (written before migration 0007_layout)
    old_layout: Mapped[str | None] = mapped_column(sa.Text)
    written_at: Mapped[dt.datetime] = mapped_column(_Stamp)
    reverted_at: Mapped[dt.datetime | None] = mapped_column(_Stamp)

    track: Mapped[Track] = relationship(back_populates="tag_writes")


def _one_of(column: str, values) -> str:
    return f"{column} IN (" + ", ".join(f"'{v.value}'" for v in values) + ")"


class CorrectionRow(Base):
    """One thing the user said about a track's genre (append-only)."""

    __tablename__ = "corrections"
    __table_args__ = (
        sa.CheckConstraint(_one_of("action", CorrectionAction), name="action"),
        sa.CheckConstraint(_one_of("source", CorrectionSource), name="source"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # NULL once the track's row is gone: the correction stays, found by its path
    track_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("tracks.id", ondelete="SET NULL"), index=True
    )
    path: Mapped[str] = mapped_column(sa.Text, index=True)
    action: Mapped[str] = mapped_column(sa.String(16))  # CorrectionAction
    genre: Mapped[str | None] = mapped_column(sa.String(200))  # normalised; NULL: not_music, undo
    previous: Mapped[str] = mapped_column(sa.Text, server_default="[]")  # JSON list
    predicted_genre: Mapped[str | None] = mapped_column(sa.String(200))
    predicted_confidence: Mapped[float | None] = mapped_column(sa.Float)
    model_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    source: Mapped[str] = mapped_column(sa.String(16))  # CorrectionSource
    created_at: Mapped[dt.datetime] = mapped_column(_Stamp)
    undone_at: Mapped[dt.datetime | None] = mapped_column(_Stamp)  # set by a later undo
    tag_write_ids: Mapped[str | None] = mapped_column(sa.Text)  # JSON list: its tag_writes


class AdoptionRow(Base):
    """A trained model made the library's model; ``retired_at`` NULL while it is current."""

    __tablename__ = "adoptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    sha256: Mapped[str] = mapped_column(sa.String(64))  # of the bundle
    bundle_path: Mapped[str] = mapped_column(sa.Text)  # a file under the state directory
    labels: Mapped[str] = mapped_column(sa.Text, server_default="[]")  # JSON list
    figures: Mapped[str] = mapped_column(sa.Text, server_default="{}")  # JSON object
    adopted_at: Mapped[dt.datetime] = mapped_column(_Stamp)
    retired_at: Mapped[dt.datetime | None] = mapped_column(_Stamp)


class CalibrationRow(Base):
    """A map from one model's confidence to the probability of being right."""

    __tablename__ = "calibrations"
    __table_args__ = (
        sa.CheckConstraint(_one_of("method", CalibrationMethod), name="method"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_sha256: Mapped[str] = mapped_column(sa.String(64), index=True)
    method: Mapped[str] = mapped_column(sa.String(16))  # CalibrationMethod
    parameters: Mapped[str] = mapped_column(sa.Text, server_default="{}")  # JSON object
    ece_before: Mapped[float | None] = mapped_column(sa.Float)
    ece_after: Mapped[float | None] = mapped_column(sa.Float)
    tracks: Mapped[int | None] = mapped_column(sa.Integer)
    target_precision: Mapped[float | None] = mapped_column(sa.Float)
    threshold: Mapped[float | None] = mapped_column(sa.Float)  # NULL: none reaches the target
    precision: Mapped[float | None] = mapped_column(sa.Float)
    coverage: Mapped[float | None] = mapped_column(sa.Float)
    created_at: Mapped[dt.datetime] = mapped_column(_Stamp)


class AlbumRow(Base):
    """One album's decision in ``tags.scope = "album"``: the genre pooled over the segments of
    all its tracks, and what became of it (migration 0008_albums)."""

    __tablename__ = "albums"
    __table_args__ = (
        sa.UniqueConstraint("album_key"),
        sa.CheckConstraint(_one_of("identified_by", AlbumIdentity), name="identified_by"),
        sa.CheckConstraint(_one_of("per_track", PerTrack), name="per_track"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    album_key: Mapped[str] = mapped_column(sa.Text)  # tracks.album_key
    identified_by: Mapped[str] = mapped_column(sa.String(8))  # AlbumIdentity
    album: Mapped[str | None] = mapped_column(sa.Text)  # the album tag, as a track says it
    album_artist: Mapped[str | None] = mapped_column(sa.Text)
    folder: Mapped[str | None] = mapped_column(sa.Text)  # its first track's folder
    model_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    genre: Mapped[str | None] = mapped_column(sa.String(200))  # NULL: no track could vote
    confidence: Mapped[float | None] = mapped_column(sa.Float)
    tie: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    tied_genres: Mapped[str | None] = mapped_column(sa.Text)  # "a,b"; NULL when no tie
    segment_count: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    members: Mapped[int] = mapped_column(sa.Integer, server_default="0")  # its tracks
    voters: Mapped[int] = mapped_column(sa.Integer, server_default="0")  # of them, with scores
    agreeing: Mapped[int] = mapped_column(sa.Integer, server_default="0")  # own vote = genre
    compilation: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    per_track: Mapped[str | None] = mapped_column(sa.String(16))  # PerTrack; NULL: one genre
    # why the album's genre went into no file (below_threshold, tie_skipped, policy_never)
    not_written: Mapped[str | None] = mapped_column(sa.String(24))
    written: Mapped[int] = mapped_column(sa.Integer, server_default="0")  # tracks holding it
    decided_at: Mapped[dt.datetime] = mapped_column(_Stamp)


TRACKS = Track.__table__


ALBUMS = AlbumRow.__table__


CORRECTIONS = CorrectionRow.__table__


ADOPTIONS = AdoptionRow.__table__


CALIBRATIONS = CalibrationRow.__table__


MODELS = Model.__table__


PREDICTIONS = Prediction.__table__


CANDIDATES = PredictionCandidate.__table__


SEGMENTS = PredictionSegment.__table__


TAG_WRITES = TagWrite.__table__


TRACK_GENRES = sa.table(
    "track_genres",
    sa.column("path"),
    sa.column("genre"),
    sa.column("confidence"),
    sa.column("tie"),
    sa.column("tied_genres"),
    sa.column("model"),
)


GENRE_COUNTS = sa.table("genre_counts", sa.column("genre"), sa.column("tracks"))


GENRE_CHECK = sa.table(
    "genre_check",
    sa.column("path"),
    sa.column("artist"),
    sa.column("album"),
    sa.column("user_genre"),
    sa.column("label_source"),
    sa.column("predicted"),
    sa.column("confidence"),
    sa.column("model"),
    sa.column("agrees"),
)
