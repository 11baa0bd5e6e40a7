"""The review queues as pages: which tracks to look at, filtered, sorted, a page at a time.

Pagination is by keyset (the last row's sort value and id), so page 500 costs what page 1
does on a 100 000-track catalogue (bench/review_pages.py prints the figures).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from enum import Enum

import sqlalchemy as sa
from sqlalchemy import select

from tagger.library.catalogue.schema import GENRE_CHECK, PREDICTIONS, TRACKS

PAGE_SIZE = 50


class Queue(str, Enum):
    LOW = "low"  # confidence under the threshold
    TIES = "ties"
    DISAGREE = "disagree"  # the user's own genre is not the prediction
    FAILED = "failed"
    RECENT = "recent"  # recently tagged
    ALL = "all"


QUEUE_TITLES = {
    Queue.LOW: "Low confidence",
    Queue.TIES: "Ties",
    Queue.DISAGREE: "Your genre ≠ prediction",
    Queue.FAILED: "Failed",
    Queue.RECENT: "Recently tagged",
    Queue.ALL: "All tracks",
}


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
    user_genre: str | None = None


@dataclass(frozen=True)
class QueuePage:
    rows: list[QueueRow]
    next_cursor: str | None  # give it as ``after`` for the next page; None on the last one
    filters: dict = field(default_factory=dict)


def newest_predictions() -> sa.Subquery:
    """The newest prediction of every track (as the ``track_genres`` view picks it)."""
    p, newer = PREDICTIONS.alias("p"), PREDICTIONS.alias("newer")
    later = (
        select(sa.literal(1))
        .where(newer.c.track_id == p.c.track_id,
               sa.or_(newer.c.created > p.c.created,
                      sa.and_(newer.c.created == p.c.created, newer.c.id > p.c.id)))
        .exists()
    )
    return select(p).where(~later).subquery("np")


def _cursor_value(sort: Sort, row) -> object:
    value = row.sort_key
    if sort is Sort.RECENT:
        return _as_utc(value).isoformat()
    return float(value) if sort is Sort.CONFIDENCE else value


def queue_page(engine: sa.Engine, queue: Queue, *, low: float, folder: str | None = None,
               genre: str | None = None, status: str | None = None,
               sort: Sort = Sort.CONFIDENCE, after: str | None = None,
               limit: int = PAGE_SIZE) -> QueuePage:
    """One page of ``queue``: ``low`` is the confidence under which a track is doubtful;
    ``folder`` keeps the tracks below a folder, ``genre`` those predicted as it, ``status``
    those in that status; ``after`` is the previous page's ``next_cursor``."""
    t, gc = TRACKS, GENRE_CHECK
    with engine.connect() as conn:
        np_ = newest_predictions()
        predicted_at = np_.c.created
        columns = [t.c.id, t.c.path, t.c.folder, t.c.status, np_.c.genre, np_.c.confidence,
                   np_.c.tie, np_.c.tied_genres, t.c.error, predicted_at.label("predicted_at")]
        joined = t.outerjoin(np_, np_.c.track_id == t.c.id)
        if queue is Queue.DISAGREE:  # the user's genre (a tag or a correction) vs the vote
            columns.append(gc.c.user_genre)
            joined = joined.join(gc, gc.c.path == t.c.path)
        stmt = select(*columns).select_from(joined)
        stmt = stmt.where(t.c.status != "missing")
        if queue is Queue.LOW:
            stmt = stmt.where(np_.c.confidence < low)
        elif queue is Queue.TIES:
            stmt = stmt.where(np_.c.tie == sa.true())
        elif queue is Queue.FAILED:
            stmt = stmt.where(t.c.status == "failed")
        elif queue is Queue.RECENT:
            stmt = stmt.where(np_.c.id.is_not(None))
        elif queue is Queue.DISAGREE:
            stmt = stmt.where(gc.c.agrees == 0)
        if folder:
            prefix = folder.rstrip("/") + "/"
            stmt = stmt.where(sa.func.substr(t.c.path, 1, len(prefix)) == prefix)
        if genre:
            stmt = stmt.where(np_.c.genre == genre)
        if status:
            stmt = stmt.where(t.c.status == status)
        if sort is Sort.CONFIDENCE:
            key, descending = sa.func.coalesce(np_.c.confidence, -1.0), False
        elif sort is Sort.PATH:
            key, descending = t.c.path, False
        else:  # never NULL, or the keyset would lose rows: unpredicted tracks by first sight
            key = sa.func.coalesce(predicted_at, t.c.first_seen, type_=t.c.first_seen.type)
            descending = True
        stmt = stmt.add_columns(key.label("sort_key"))
        if after:
            value, last_id = _parse_cursor(after, sort)
            if descending:
                stmt = stmt.where(sa.or_(key < value, sa.and_(key == value, t.c.id < last_id)))
            else:
                stmt = stmt.where(sa.or_(key > value, sa.and_(key == value, t.c.id > last_id)))
        order = (key.desc(), t.c.id.desc()) if descending else (key, t.c.id)
        # one row more than a page: whether a next page exists, without counting
        fetched = conn.execute(stmt.order_by(*order).limit(limit + 1)).fetchall()
    rows = [QueueRow(r.id, r.path, r.folder, r.status, r.genre,
                     None if r.confidence is None else float(r.confidence), bool(r.tie),
                     r.tied_genres, r.error, _as_utc(r.predicted_at),
                     getattr(r, "user_genre", None))
            for r in fetched[:limit]]
    next_cursor = None
    if len(fetched) > limit:
        last = fetched[limit - 1]
        next_cursor = json.dumps([_cursor_value(sort, last), last.id])
    return QueuePage(rows, next_cursor)


def _as_utc(value):
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value


def _parse_cursor(text: str, sort: Sort) -> tuple[object, int]:
    try:
        value, last_id = json.loads(text)
        last_id = int(last_id)
    except (ValueError, TypeError):
        raise ValueError("bad page cursor") from None
    if sort is Sort.CONFIDENCE:
        value = float(value)
    elif sort is Sort.RECENT:
        value = dt.datetime.fromisoformat(str(value))
    else:
        value = str(value)
    return value, last_id
