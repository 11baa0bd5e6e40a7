"""The review queues as pages: which tracks to look at, filtered, sorted, a page at a time
(the review page reads them through :class:`Queues`, a part of the Catalogue).

Pagination is by keyset (the last row's sort value and id), so page 500 costs what page 1
does on a 100 000-track catalogue (bench/review_pages.py prints the figures).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from enum import Enum

import sqlalchemy as sa
from sqlalchemy import select

from tagger.library.catalogue.rows import first_json_element, judged, record_from_row, utc
from tagger.library.catalogue.schema import CORRECTIONS, MODELS, PREDICTIONS, TRACKS
from tagger.results import FailureKind, NotWritten

PAGE_SIZE = 50
_ID_RANGE = range(-(2 ** 63), 2 ** 63)  # what a catalogue id can be (64-bit integers)


class Queue(str, Enum):
    LOW = "low"  # confidence under the threshold
    TIES = "ties"
    DISAGREE = "disagree"  # the user's own genre is not the prediction
    FAILED = "failed"
    RECENT = "recent"  # recently tagged
    NOT_MUSIC = "not_music"  # not music (the content gate or the user said so): no genre
    ALL = "all"


#: the queues of tracks waiting for the user's judgement: one they judged already (a
#: correction in force) is in none of them
TO_JUDGE = frozenset({Queue.LOW, Queue.TIES, Queue.DISAGREE})
#: the queues of genres: a track that is not music is in none of them
GENRE_QUEUES = TO_JUDGE | {Queue.RECENT}


class Sort(str, Enum):
    CONFIDENCE = "confidence"  # lowest first
    PATH = "path"
    RECENT = "recent"  # newest prediction first


@dataclass(frozen=True)
class QueueRow:
    id: int
    path: str
    folder: str
    status: str
    genre: str | None
    confidence: float | None
    tie: bool
    tied_genres: str | None
    error: str | None
    predicted_at: dt.datetime | None
    not_written: NotWritten | None = None
    failure_kind: FailureKind | None = None
    user_genre: str | None = None


@dataclass(frozen=True)
class QueuePage:
    rows: list[QueueRow]
    next_cursor: str | None  # give it as ``after`` for the next page; None on the last one
    filters: dict = field(default_factory=dict)


def _newer_exists(p) -> sa.Exists:
    """Whether a newer prediction of the same track exists (the ``track_genres`` rule)."""
    newer = PREDICTIONS.alias("newer")
    return (
        select(sa.literal(1))
        .where(newer.c.track_id == p.c.track_id,
               sa.or_(newer.c.created > p.c.created,
                      sa.and_(newer.c.created == p.c.created, newer.c.id > p.c.id)))
        .exists()
    )


def _user_genre(t, dialect: str):
    """The genre the user gave a track, as ``genre_check.user_genre``: the newest correction
    in force, else the first of the file's own genres (tracks.user_genres)."""
    c, named = CORRECTIONS.alias("c"), CORRECTIONS.alias("named")
    newest = (select(c.c.id).where(c.c.track_id == t.c.id, c.c.action != "undo",
                                   c.c.undone_at.is_(None))
              .order_by(c.c.id.desc()).limit(1).correlate(t).scalar_subquery())
    corrected = select(named.c.genre).where(named.c.id == newest).scalar_subquery()
    return sa.case((newest.is_not(None), corrected),
                   else_=first_json_element(t.c.user_genres, dialect))


def queue_page(engine: sa.Engine, queue: Queue, *, low: float, folder: str | None = None,
               genre: str | None = None, status: str | None = None,
               sort: Sort = Sort.CONFIDENCE, after: str | None = None,
               limit: int = PAGE_SIZE) -> QueuePage:
    """One page of ``queue``: ``low`` is the confidence under which a track is doubtful;
    ``folder`` keeps the tracks below a folder, ``genre`` those predicted as it, ``status``
    those in that status; ``after`` is the previous page's ``next_cursor``. The queues
    :data:`TO_JUDGE` leave out the tracks the user judged already.

    Two plans, each walking an index in the page's order so that a page reads about its own
    rows: by confidence or recency, from ``predictions`` (indexes of migration 0006_review;
    tracks without a prediction have neither, so those sorts list the predicted ones, except
    in the failed queue); by path, from ``tracks`` (its unique path index).
    """
    t, p = TRACKS, PREDICTIONS.alias("p")
    dialect = engine.dialect.name
    user = _user_genre(t, dialect)
    columns = [t.c.id, t.c.path, t.c.folder, t.c.status, p.c.genre, p.c.confidence, p.c.tie,
               p.c.tied_genres, t.c.error, p.c.created.label("predicted_at"), t.c.not_written,
               t.c.failure_kind]
    if queue is Queue.DISAGREE:
        columns.append(user.label("user_genre"))
    by_prediction = sort is not Sort.PATH and queue is not Queue.FAILED
    if by_prediction:
        stmt = select(*columns).select_from(p.join(t, t.c.id == p.c.track_id)).where(
            ~_newer_exists(p))
    else:
        joined = t.outerjoin(p, sa.and_(p.c.track_id == t.c.id, ~_newer_exists(p)))
        stmt = select(*columns).select_from(joined)
    stmt = stmt.where(t.c.status != "missing")
    if queue is Queue.LOW:
        # by path, "+ 0" keeps SQLite off the confidence index: walking the path index and
        # stopping after a page beats collecting every low track and sorting them all
        confidence = p.c.confidence if by_prediction else p.c.confidence + 0.0
        stmt = stmt.where(confidence < low)
    elif queue is Queue.TIES:
        stmt = stmt.where(p.c.tie == sa.true())
    elif queue is Queue.FAILED:
        stmt = stmt.where(t.c.status == "failed")
    elif queue is Queue.RECENT:
        stmt = stmt.where(p.c.id.is_not(None))
    elif queue is Queue.DISAGREE:  # the genre_check view's agrees = 0, row by row
        stmt = stmt.where(p.c.id.is_not(None), user.is_not(None),
                          sa.func.lower(user) != sa.func.lower(p.c.genre))
    elif queue is Queue.NOT_MUSIC:
        stmt = stmt.where(t.c.status == "not_music")
    if queue in GENRE_QUEUES:
        stmt = stmt.where(t.c.status != "not_music")
    if queue in TO_JUDGE:
        stmt = stmt.where(~judged(t.c.id))
    if folder:
        prefix = folder.rstrip("/") + "/"
        stmt = stmt.where(sa.func.substr(t.c.path, 1, len(prefix)) == prefix)
    if genre:
        stmt = stmt.where(p.c.genre == genre)
    if status:
        stmt = stmt.where(t.c.status == status)
    if sort is Sort.PATH:
        keys, descending = (t.c.path,), False
    elif by_prediction:
        keys = (p.c.confidence, p.c.track_id) if sort is Sort.CONFIDENCE else (
            p.c.created, p.c.track_id)
        descending = sort is Sort.RECENT
    else:  # the failed queue by confidence or recency: a small set, sorted as it is
        key = (sa.func.coalesce(p.c.confidence, -1.0) if sort is Sort.CONFIDENCE else
               sa.func.coalesce(p.c.created, t.c.first_seen, type_=t.c.first_seen.type))
        keys, descending = (key, t.c.id), sort is Sort.RECENT
    stmt = stmt.add_columns(*(k.label(f"k{i}") for i, k in enumerate(keys)))
    if after:
        values = _parse_cursor(after, sort, len(keys))
        row_value = sa.tuple_(*keys) if len(keys) > 1 else keys[0]
        bound = sa.tuple_(*(sa.literal(v, type_=k.type) for v, k in zip(values, keys))) \
            if len(keys) > 1 else sa.literal(values[0], type_=keys[0].type)
        stmt = stmt.where(row_value < bound if descending else row_value > bound)
    stmt = stmt.order_by(*(k.desc() if descending else k for k in keys))
    with engine.connect() as conn:
        # one row more than a page: whether a next page exists, without counting
        fetched = conn.execute(stmt.limit(limit + 1)).fetchall()
    rows = [record_from_row(QueueRow, r, user_genre=getattr(r, "user_genre", None))
            for r in fetched[:limit]]
    next_cursor = None
    if len(fetched) > limit:
        last = fetched[limit - 1]
        next_cursor = json.dumps([_jsonable(getattr(last, f"k{i}")) for i in range(len(keys))])
    return QueuePage(rows, next_cursor)


def _jsonable(value):
    return utc(value).isoformat() if isinstance(value, dt.datetime) else value


def _parse_cursor(text: str, sort: Sort, count: int) -> list:
    """The values of a page cursor (as :func:`queue_page` made it); ValueError for anything
    else, however hostile (an id past 64 bits, a non-finite number, a deep nesting)."""
    try:
        values = json.loads(text)
        if not isinstance(values, list) or len(values) != count:
            raise ValueError
        if count > 1:
            if type(values[-1]) is not int or values[-1] not in _ID_RANGE:
                raise ValueError  # the id
        if sort is Sort.CONFIDENCE:
            values[0] = float(values[0])
            if not math.isfinite(values[0]):
                raise ValueError
        elif not isinstance(values[0], str):  # a time or a path, as text
            raise ValueError
        elif sort is Sort.RECENT:
            values[0] = dt.datetime.fromisoformat(values[0])
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise ValueError("bad page cursor") from None
    return values


class Queues:
    """The review page's reads (a mixin of :class:`~tagger.library.catalogue.Catalogue`)."""

    engine: sa.Engine

    def queue_page(self, queue: Queue, **options) -> QueuePage:
        """One page of ``queue`` (:func:`queue_page`, with its keyword ``options``)."""
        return queue_page(self.engine, queue, **options)

    def track_location(self, track_id: int) -> tuple[str, int | None] | None:
        """The catalogued path of a track id and its mtime_ns; None for no such track, or a
        missing one."""
        if track_id not in _ID_RANGE:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(TRACKS.c.path, TRACKS.c.mtime_ns, TRACKS.c.status)
                               .where(TRACKS.c.id == track_id)).first()
        if row is None or row.status == "missing":
            return None
        return row.path, row.mtime_ns

    def known_genres(self, limit: int = 500) -> list[str]:
        """Every model's vocabulary, then (at most ``limit``) genres users gave: a small
        query, not the stats' scan of every prediction."""
        genres: dict[str, None] = {}
        with self.engine.connect() as conn:
            for (vocabulary,) in conn.execute(select(MODELS.c.vocabulary)):
                genres.update(dict.fromkeys(json.loads(vocabulary or "[]")))
            for (genre,) in conn.execute(select(CORRECTIONS.c.genre).distinct()
                                         .where(CORRECTIONS.c.genre.is_not(None))
                                         .limit(limit)):
                genres.setdefault(genre)
        return list(genres)
