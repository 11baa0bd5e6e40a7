"""Albums: their tracks (by ``tracks.album_key``), the segment scores their votes pool, and
the decisions of ``tags.scope = "album"`` (the ``albums`` table)."""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import insert, select, update

from tagger.library.catalogue.records import AlbumRecord, AlbumTrack
from tagger.library.catalogue.rows import chunks, record_from_row
from tagger.library.catalogue.rows import utcnow as _now
from tagger.library.catalogue.schema import ALBUMS as _AL
from tagger.library.catalogue.schema import MODELS as _M
from tagger.library.catalogue.schema import PREDICTIONS as _P
from tagger.library.catalogue.schema import SEGMENTS as _S
from tagger.library.catalogue.schema import TRACKS as _T
from tagger.results import NotWritten


def _album_record(row) -> AlbumRecord:
    tied = tuple(row.tied_genres.split(",")) if row.tied_genres else (
        (row.genre,) if row.genre else ())
    return record_from_row(AlbumRecord, row, tied=tied)


class Albums:
    """Part of :class:`~tagger.library.catalogue.store.Catalogue` (its transactions: ``_write``,
    ``_read``, ``batch``)."""

    def album_members(self, keys: Iterable[str]) -> list[AlbumTrack]:
        """Every catalogued track of the albums ``keys`` (any status), by album then path."""
        keys = list(dict.fromkeys(keys))
        out: list[AlbumTrack] = []
        with self._read() as s:
            for chunk in chunks(keys):
                stmt = (select(_T.c.path, _T.c.size, _T.c.mtime_ns, _T.c.status,
                               _T.c.content_id, _T.c.format, _T.c.album_key)
                        .where(_T.c.album_key.in_(chunk)))
                out += [record_from_row(AlbumTrack, r) for r in s.execute(stmt)]
        return sorted(out, key=lambda m: (m.album_key, m.path))

    def segment_scores(self, paths: Iterable[str], model_sha256: str
                       ) -> dict[str, list[dict[str, float]]]:
        """``{path: [genre scores of each segment]}`` of the given tracks' predictions by the
        model ``model_sha256`` (the scores the vote compared, in time order); tracks without
        such a prediction, or whose segments kept no scores, are left out."""
        paths = list(dict.fromkeys(paths))
        out: dict[str, list[dict[str, float]]] = {}
        with self._read() as s:
            for chunk in chunks(paths):
                stmt = (select(_T.c.path, _S.c.scores)
                        .select_from(_T.join(_P, _P.c.track_id == _T.c.id)
                                     .join(_M, _M.c.id == _P.c.model_id)
                                     .join(_S, _S.c.prediction_id == _P.c.id))
                        .where(_T.c.path.in_(chunk), _M.c.sha256 == model_sha256)
                        .order_by(_T.c.path, _S.c.segment_index))
                broken: set[str] = set()
                for path, scores in s.execute(stmt):
                    if not scores:
                        broken.add(path)
                        continue
                    out.setdefault(path, []).append(json.loads(scores))
                for path in broken:
                    out.pop(path, None)
        return out

    def record_tag_decision(self, path: str, *, size: int | None, mtime_ns: int | None,
                            not_written: NotWritten | None) -> None:
        """What its album's decision did to a track's tags: the track is done, with its stat
        after the write and why the genre was not written (None: it was, or the file already
        said it)."""
        with self._write(f"record the tag decision of {path}") as s:
            s.execute(update(_T).where(_T.c.path == path).values(
                status="done", size=size, mtime_ns=mtime_ns, updated_at=_now(),
                not_written=not_written.value if not_written else None))

    def record_album(self, record: AlbumRecord) -> None:
        """Store an album's decision, replacing the album's previous one."""
        values = dict(
            identified_by=record.identified_by.value, album=record.album,
            album_artist=record.album_artist, folder=record.folder,
            model_sha256=record.model_sha256, genre=record.genre,
            confidence=None if record.confidence is None else float(record.confidence),
            tie=bool(record.tie), tied_genres=",".join(record.tied) if record.tie else None,
            segment_count=record.segment_count, members=record.members, voters=record.voters,
            agreeing=record.agreeing, compilation=bool(record.compilation),
            per_track=record.per_track.value if record.per_track else None,
            not_written=record.not_written.value if record.not_written else None,
            written=record.written, decided_at=_now())
        with self._write(f"record the album {record.album_key}") as s:
            found = s.scalar(select(_AL.c.id).where(_AL.c.album_key == record.album_key))
            if found is None:
                s.execute(insert(_AL).values(album_key=record.album_key, **values))
            else:
                s.execute(update(_AL).where(_AL.c.id == found).values(**values))

    def album(self, key: str) -> AlbumRecord | None:
        """The decision recorded for the album ``key``, or None."""
        with self._read() as s:
            row = s.execute(select(_AL).where(_AL.c.album_key == key)).first()
        return None if row is None else _album_record(row)

    def albums(self) -> list[AlbumRecord]:
        """Every album decision recorded, by album key."""
        with self._read() as s:
            return [_album_record(r) for r in s.execute(select(_AL).order_by(_AL.c.album_key))]
