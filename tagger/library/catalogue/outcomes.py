"""What a scan records for each file: its result, its failure, its move."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam, delete, insert, select, update

from tagger.library.catalogue.rows import (
    chunks,
    classified_status,
    dir_prefix,
    dump_scores,
    error_text,
    folder_of,
    under_prefixes,
)
from tagger.library.catalogue.rows import (
    utcnow as _now,
)
from tagger.library.catalogue.schema import (
    CANDIDATES as _C,
)
from tagger.library.catalogue.schema import (
    CORRECTIONS as _UC,
)
from tagger.library.catalogue.schema import (
    PREDICTIONS as _P,
)
from tagger.library.catalogue.schema import (
    SEGMENTS as _S,
)
from tagger.library.catalogue.schema import (
    TAG_WRITES as _W,
)
from tagger.library.catalogue.schema import (
    TRACKS as _T,
)
from tagger.results import (
    FailureKind,
    NotWritten,
    TrackResult,
)


class Outcomes:
    """Part of :class:`~tagger.library.catalogue.store.Catalogue` (its transactions: ``_write``,
    ``_read``, ``batch``)."""

    def record_result(
        self,
        result: TrackResult,
        *,
        size: int | None,
        mtime_ns: int | None,
        content_id: str | None = None,
        format: str | None = None,
        not_written: NotWritten | None = None,
        awaiting_album: bool = False,
    ) -> None:
        """Store a classification: the track becomes done (error and attempts cleared), the
        model row is added or updated from ``result.model``, and the prediction replaces this
        model's previous one for the track. A failed result (``result.error``) is passed to
        :meth:`record_failure`. ``content_id``/``format`` None keep the stored values;
        ``not_written`` says why the genre was not written into the file (None: it was).
        ``awaiting_album``: its tags wait for its album's decision (``tags.scope = "album"``):
        the track stays pending until :meth:`record_tag_decision` (a scan killed before then
        classifies it again). A track not written for not being music
        (``NotWritten.NOT_MUSIC``) becomes ``not_music``; ``result.content`` (the content
        gate's verdict) is stored with it."""
        if not result.ok:
            self.record_failure(
                result.path,
                result.error or "unknown error",
                size=size,
                mtime_ns=mtime_ns,
                format=format,
                content_id=content_id,
            )
            return
        vote = result.vote
        if vote is None:
            raise ValueError(f"{result.path}: a TrackResult without error must have a vote")
        now = _now()
        by_genre = {c.genre: c for c in vote.candidates}
        winner = by_genre.get(vote.genre)
        if result.segments:
            segments = [
                # the genre scores the vote compared, not every raw output: ~17 values
                # instead of 100 per segment (the raw ones are in `classify --json`)
                dict(
                    segment_index=i,
                    start_s=float(seg.start_s),
                    genre=seg.genre,
                    scores=dump_scores(seg.genre_scores or None),
                )
                for i, seg in enumerate(result.segments)
            ]
        else:
            segments = [
                dict(segment_index=i, start_s=None, genre=genre, scores=None)
                for i, genre in enumerate(vote.segment_winners)
            ]
        with self._write(f"record the result of {result.path}") as s:
            tid = self._upsert_track(
                s,
                result.path,
                now,
                status=("pending" if awaiting_album else
                        "not_music" if not_written is NotWritten.NOT_MUSIC else "done"),
                size=size,
                mtime_ns=mtime_ns,
                content_id=content_id,
                format=format,
                duration_s=result.duration_s,
                last_scanned=now,
            )
            s.execute(
                update(_T)
                .where(_T.c.id == tid)
                .values(
                    error=None,
                    attempts=0,
                    failure_kind=None,
                    not_written=not_written.value if not_written else None,
                    content_kind=result.content.kind.value if result.content else None,
                    content_scores=dump_scores(result.content.scores) if result.content
                    else None,
                )
            )
            mid = self._model_id(s, result.model, now)
            s.execute(
                delete(_P).where(
                    _P.c.track_id == tid, _P.c.model_id == mid
                )
            )
            pid = s.execute(
                insert(_P).values(
                    track_id=tid,
                    model_id=mid,
                    genre=vote.genre,
                    confidence=float(vote.confidence),
                    votes=winner.votes if winner else 0,
                    segment_count=len(vote.segment_winners) or len(result.segments),
                    tie=bool(vote.tie),
                    tied_genres=",".join(vote.tied) if vote.tie else None,
                    descriptors=dump_scores(result.descriptors),
                    created=now,
                )
            ).inserted_primary_key[0]
            conn = s.connection()
            if vote.candidates:
                conn.execute(
                    insert(_C),
                    [
                        dict(
                            prediction_id=pid,
                            place=i,
                            genre=c.genre,
                            votes=int(c.votes),
                            mean_score=float(c.mean_score),
                        )
                        for i, c in enumerate(vote.candidates, start=1)
                    ],
                )
            if segments:
                conn.execute(insert(_S), [dict(prediction_id=pid, **seg) for seg in segments])

    def record_failure(
        self,
        path: str,
        error: str | BaseException,
        *,
        size: int | None = None,
        mtime_ns: int | None = None,
        status: str = "failed",
        format: str | None = None,
        content_id: str | None = None,
        kind: FailureKind = FailureKind.UNREADABLE,
    ) -> None:
        """A file that could not be classified: status ``failed`` (counts an attempt, retried
        later) or ``skipped`` (not audio, too short...: not retried until it changes). ``error``
        is stored as one line without the path, ``kind`` (failed only) says whether a plain
        rescan retries it. Earlier predictions are kept."""
        if status not in ("failed", "skipped"):
            raise ValueError(f"status must be failed or skipped, not {status!r}")
        now = _now()
        with self._write(f"record the failure of {path}") as s:
            self._upsert_track(
                s,
                path,
                now,
                status=status,
                error=error_text(path, error),
                size=size,
                mtime_ns=mtime_ns,
                format=format,
                content_id=content_id,
                last_scanned=now,
                attempts=_T.c.attempts + 1 if status == "failed" else None,
            )
            s.execute(
                update(_T)
                .where(_T.c.path == path)
                .values(failure_kind=FailureKind(kind).value if status == "failed" else None)
            )

    def move(
        self,
        old_path: str,
        new_path: str,
        *,
        size: int | None = None,
        mtime_ns: int | None = None,
    ) -> bool:
        """A file was renamed: its row, predictions and tag history follow it, no re-inference.
        A track already catalogued at ``new_path`` is replaced. A missing track comes back
        (done if predicted, else pending). False if ``old_path`` is not catalogued."""
        now = _now()
        with self._write(f"move {old_path}") as s:
            tid = self._track_id(s, old_path)
            if tid is None:
                return False
            if new_path != old_path:
                replaced = self._track_id(s, new_path)
                if replaced is not None:  # replaced by the moved file; its history stays
                    self._adopt_history(s.connection(), replaced, tid)
                    s.execute(delete(_T).where(_T.c.id == replaced))
            has_prediction = sa.exists().where(_P.c.track_id == _T.c.id)
            values: dict[str, Any] = dict(
                path=new_path,
                folder=folder_of(new_path),
                updated_at=now,
                status=sa.case(
                    (_T.c.status != "missing", _T.c.status),
                    (has_prediction, classified_status()),
                    else_="pending",
                ),
            )
            if size is not None:
                values["size"] = size
            if mtime_ns is not None:
                values["mtime_ns"] = mtime_ns
            s.execute(update(_T).where(_T.c.id == tid).values(**values))
            s.execute(update(_W).where(_W.c.track_id == tid).values(path=new_path))
            s.execute(update(_UC).where(_UC.c.track_id == tid).values(path=new_path))
            return True

    @staticmethod
    def _adopt_history(conn, from_id: int, to_id: int) -> None:
        """The tag history of a row about to be replaced goes to the row replacing it: the
        user's original values stay revertible at that path (the journal is append-only)."""
        conn.execute(
            update(_W).where(_W.c.track_id == from_id).values(track_id=to_id)
        )
        conn.execute(  # so do the user's corrections, older than the heir's own
            update(_UC).where(_UC.c.track_id == from_id).values(track_id=to_id)
        )

    def move_prefix(self, old_dir: str, new_dir: str) -> int:
        """A directory was renamed: every track below ``old_dir`` moves below ``new_dir`` (see
        :meth:`move`; statuses are kept). Returns how many tracks moved."""
        old_prefix, new_prefix = dir_prefix(old_dir), dir_prefix(new_dir)
        if old_prefix == new_prefix:
            return 0
        now = _now()
        with self._write(f"move {old_dir}") as s:
            conn = s.connection()
            rows = conn.execute(
                select(_T.c.id, _T.c.path).where(
                    under_prefixes(_T.c.path, [old_prefix])
                )
            ).fetchall()
            if not rows:
                return 0
            moves = [(r.id, new_prefix + r.path[len(old_prefix) :]) for r in rows]
            moving_ids = {tid for tid, _ in moves}
            targets = [p for _, p in moves]
            clash: set[str] = set()
            for chunk in chunks(targets):
                for tid, path in conn.execute(
                    select(_T.c.id, _T.c.path).where(_T.c.path.in_(chunk))
                ):
                    if tid in moving_ids:
                        clash.add(path)  # another moving row holds it now: rename in two steps
                    else:  # replaced; its history stays, with the row that takes its place
                        heir = next(m for m, p in moves if p == path)
                        self._adopt_history(conn, tid, heir)
                        conn.execute(delete(_T).where(_T.c.id == tid))
            stmt = (
                update(_T)
                .where(_T.c.id == bindparam("b_id"))
                .values(path=bindparam("b_path"), folder=bindparam("b_folder"), updated_at=now)
            )
            if clash:
                conn.execute(
                    stmt,
                    [
                        dict(
                            b_id=tid, b_path=f"<moving>{tid}", b_folder=""
                        )  # never an absolute path
                        for tid, _ in moves
                    ],
                )
            conn.execute(
                stmt, [dict(b_id=tid, b_path=p, b_folder=folder_of(p)) for tid, p in moves]
            )
            for journal in (_W, _UC):
                conn.execute(
                    update(journal)
                    .where(journal.c.track_id == bindparam("b_id"))
                    .values(path=bindparam("b_path")),
                    [dict(b_id=tid, b_path=p) for tid, p in moves],
                )
            return len(moves)
