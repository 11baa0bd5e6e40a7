"""Reading the catalogue for people: one track, the review queues, the stats."""

from __future__ import annotations

import dataclasses
from collections import Counter
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
    first_json_element,
    judged,
    record_from_row,
    under_prefixes,
)
from tagger.library.catalogue.schema import (
    ALBUMS as _AL,
)
from tagger.library.catalogue.schema import (
    CORRECTIONS as _C,
)
from tagger.library.catalogue.schema import (
    MODELS as _M,
)
from tagger.library.catalogue.schema import (
    PREDICTIONS as _P,
)
from tagger.library.catalogue.schema import (
    STATUSES,
    TRACK_GENRES,
    Prediction,
    Track,
)
from tagger.library.catalogue.schema import (
    TRACKS as _T,
)
from tagger.library.genres import genre_key
from tagger.results import (
    CorrectionAction,
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
        not_music: bool = False,
        under: Iterable[str] | None = None,
    ) -> list[ReviewRow]:
        """The review queues, by path: tracks under ``low`` confidence, ties, failed files,
        tracks whose genre the user set is not the prediction (the first of the file's own
        genres, as the ``genre_check`` view and the review page compare them; written or
        not), tracks whose genre was not written for being under ``tags.min_confidence``.
        Several queues: their union; none: all of them (``low`` then unset). Tracks the
        user judged already (a correction in force) are in none of them but the failed.
        Tracks that are not music (status ``not_music``) are in no genre queue; ``not_music``
        lists them (the content gate's and the user's alike), and is never implied."""
        tg = TRACK_GENRES
        user = first_json_element(_T.c.user_genres, self.engine.dialect.name)
        queues = {
            "low": tg.c.confidence < low if low is not None else None,
            "ties": tg.c.tie == sa.true(),
            "disagree": sa.and_(tg.c.genre.is_not(None), user.is_not(None),
                                func.lower(user) != func.lower(tg.c.genre)),
            "below_threshold": _T.c.not_written == NotWritten.BELOW_THRESHOLD.value,
        }
        asked = {"low": low is not None, "ties": ties, "disagree": disagree,
                 "below_threshold": below_threshold}
        if not (failed or not_music or any(asked.values())):  # all of them but low
            asked = {**dict.fromkeys(queues, True), "low": False}
            failed = True
        conds = [q for name, q in queues.items() if asked[name]]
        conds = [sa.and_(sa.or_(*conds), ~judged(_T.c.id), _T.c.status != "not_music")
                 ] if conds else []
        if failed:
            conds.append(_T.c.status == "failed")
        if not_music:
            conds.append(_T.c.status == "not_music")
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
                _T.c.content_kind,
                _T.c.content_scores,
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
        """Catalogue-wide figures for ``tagger stats`` and the review page. A track's genre
        is the user's where they corrected it (set-genre, accept), else the newest
        prediction's; a track that is not music (status ``not_music``: the content gate or
        the user said so) is under no genre, nor in the confidences and ties
        (``not_music``)."""
        with self._read() as s:
            conn = s.connection()
            counts = dict.fromkeys(STATUSES, 0)
            for status, n in conn.execute(
                select(_T.c.status, func.count()).group_by(_T.c.status)
            ):
                counts[status] = n
            in_force: dict[str, tuple[str, str | None]] = {}  # path -> (action, genre)
            for path, action, genre in conn.execute(
                select(_T.c.path, _C.c.action, _C.c.genre)
                .join(_T, _T.c.id == _C.c.track_id)
                .where(_C.c.action != CorrectionAction.UNDO.value, _C.c.undone_at.is_(None))
                .order_by(_C.c.id)
            ):
                in_force[path] = (action, genre)  # the newest wins
            confidences: list[float] = []
            ties = not_music = corrected = 0
            by_genre: Counter[str] = Counter()  # casefolded
            spelled: dict[str, str] = {}  # the vocabulary's spelling, else the user's
            for path, genre, conf, tie, status in conn.execute(
                select(TRACK_GENRES.c.path, TRACK_GENRES.c.genre, TRACK_GENRES.c.confidence,
                       TRACK_GENRES.c.tie, _T.c.status)
                .join(_T, _T.c.path == TRACK_GENRES.c.path)
            ):
                action, given = in_force.get(path, (None, None))
                if action == CorrectionAction.NOT_MUSIC.value or status == "not_music":
                    not_music += 1
                    continue
                confidences.append(float(conf))
                ties += bool(tie)
                if given:
                    corrected += 1
                    spelled.setdefault(genre_key(given), given)
                    genre = given
                else:
                    spelled[genre_key(genre)] = genre
                by_genre[genre_key(genre)] += 1
            genres = tuple(sorted(((spelled[k], n) for k, n in by_genre.items()),
                                  key=lambda item: (-item[1], item[0])))
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
            albums, albums_per_track = conn.execute(
                select(func.count(), func.count(_AL.c.per_track)).select_from(_AL)).one()
        return Stats(
            total=sum(counts.values()),
            status_counts=counts,
            predicted=len(confidences),
            genres=genres,
            ties=ties,
            confidence=confidence_spread(confidences),
            failures=failures,
            models=models,
            not_music=not_music,
            corrected=corrected,
            albums=albums,
            albums_per_track=albums_per_track,
        )
