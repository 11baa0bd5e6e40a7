"""Reading the catalogue for people: one track, the review queues, the stats."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.orm import (
    selectinload,
)

from tagger.library.catalogue.records import (
    ReviewRow,
    Stats,
    TrackRecord,
    confidence_spread,
    prediction_record,
    tag_write_record,
)
from tagger.library.catalogue.rows import (
    record_from_row,
    under_prefixes,
)
from tagger.library.catalogue.schema import (
    GENRE_COUNTS,
    STATUSES,
    TRACK_GENRES,
    Prediction,
    Track,
)
from tagger.library.catalogue.schema import (
    MODELS as _M,
)
from tagger.library.catalogue.schema import (
    PREDICTIONS as _P,
)
from tagger.library.catalogue.schema import (
    TRACKS as _T,
)
from tagger.results import (
    NotWritten,
)


class Reports:
    """Part of :class:`~tagger.library.catalogue.store.Catalogue` (its transactions: ``_write``,
    ``_read``, ``batch``)."""

    def track(self, path: str) -> TrackRecord | None:
        """Everything known about one file (for ``tagger show``), or None."""
        stmt = (
            select(Track)
            .where(Track.path == path)
            .options(
                selectinload(Track.predictions).joinedload(Prediction.model),
                selectinload(Track.predictions).selectinload(Prediction.candidates),
                selectinload(Track.predictions).selectinload(Prediction.segments),
                selectinload(Track.tag_writes),
            )
            .execution_options(populate_existing=True)
        )
        with self._read() as s:
            t = s.scalars(stmt).first()
            if t is None:
                return None
            album_key = t.album_key
            record = record_from_row(
                TrackRecord,
                t,
                predictions=tuple(prediction_record(p) for p in t.predictions),
                tag_writes=tuple(tag_write_record(w) for w in t.tag_writes),
                album_decision=None,
            )
        if album_key is None:
            return record
        return dataclasses.replace(record, album_decision=self.album(album_key))

    def review(
        self,
        *,
        low: float | None = None,
        ties: bool = False,
        failed: bool = False,
        disagree: bool = False,
        below_threshold: bool = False,
        under: Iterable[str] | None = None,
    ) -> list[ReviewRow]:
        """The review queues, by path: tracks under ``low`` confidence, ties, failed files,
        tracks whose own genre was kept although the model disagrees, tracks whose genre was
        not written for being under ``tags.min_confidence``. Several queues: their union;
        none: all of them (``low`` then unset)."""
        tg = TRACK_GENRES
        conds = []
        if low is not None:
            conds.append(tg.c.confidence < low)
        if ties:
            conds.append(tg.c.tie == sa.true())
        if failed:
            conds.append(_T.c.status == "failed")
        if disagree:
            conds.append(_T.c.not_written == NotWritten.KEPT_USER_GENRE.value)
        if below_threshold:
            conds.append(_T.c.not_written == NotWritten.BELOW_THRESHOLD.value)
        if not conds:
            conds = [
                tg.c.tie == sa.true(),
                _T.c.status == "failed",
                _T.c.not_written.in_(
                    [NotWritten.KEPT_USER_GENRE.value, NotWritten.BELOW_THRESHOLD.value]
                ),
            ]
        stmt = (
            select(
                _T.c.path,
                _T.c.status,
                tg.c.genre,
                tg.c.confidence,
                tg.c.tie,
                tg.c.tied_genres,
                _T.c.not_written,
                _T.c.error,
                _T.c.failure_kind,
            )
            .select_from(_T.outerjoin(tg, tg.c.path == _T.c.path))
            .where(sa.or_(*conds), _T.c.status != "missing")
            .order_by(_T.c.path)
        )
        if under is not None:
            stmt = stmt.where(under_prefixes(_T.c.path, list(under)))
        with self._read() as s:
            return [record_from_row(ReviewRow, r) for r in s.execute(stmt)]

    def stats(self) -> Stats:
        """Catalogue-wide figures for ``tagger stats``."""
        with self._read() as s:
            conn = s.connection()
            counts = dict.fromkeys(STATUSES, 0)
            for status, n in conn.execute(
                select(_T.c.status, func.count()).group_by(_T.c.status)
            ):
                counts[status] = n
            genres = tuple(
                (g, n)
                for g, n in conn.execute(
                    select(GENRE_COUNTS.c.genre, GENRE_COUNTS.c.tracks).order_by(
                        GENRE_COUNTS.c.tracks.desc(), GENRE_COUNTS.c.genre
                    )
                )
            )
            confidences: list[float] = []
            ties = 0
            for conf, tie in conn.execute(select(TRACK_GENRES.c.confidence, TRACK_GENRES.c.tie)):
                confidences.append(float(conf))
                ties += bool(tie)
            n_failed = func.count().label("n")
            failures = tuple(
                (status, error or "", n)
                for status, error, n in conn.execute(
                    select(_T.c.status, _T.c.error, n_failed)
                    .where(_T.c.status.in_(("failed", "skipped")))
                    .group_by(_T.c.status, _T.c.error)
                    .order_by(n_failed.desc(), _T.c.status, _T.c.error)
                )
            )
            n_pred = func.count(_P.c.id).label("n")
            models = tuple(
                (name, sha, n)
                for name, sha, n in conn.execute(
                    select(_M.c.name, _M.c.sha256, n_pred)
                    .select_from(
                        _M.outerjoin(_P, _P.c.model_id == _M.c.id)
                    )
                    .group_by(_M.c.id, _M.c.name, _M.c.sha256)
                    .order_by(n_pred.desc(), _M.c.name)
                )
            )
        return Stats(
            total=sum(counts.values()),
            status_counts=counts,
            predicted=len(confidences),
            genres=genres,
            ties=ties,
            confidence=confidence_spread(confidences),
            failures=failures,
            models=models,
        )
