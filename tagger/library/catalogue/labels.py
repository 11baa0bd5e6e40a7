"""What learning needs from the catalogue: the file's own tags (artist, album, genres), the
user's corrections, the labelled tracks they add up to, adopted models and calibrations."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import insert, select, update

from tagger.errors import WriteError
from tagger.library.catalogue.records import (
    Adoption,
    Calibration,
    Correction,
    LabelRow,
)
from tagger.library.catalogue.rows import (
    dump_list,
    load_list,
    record_from_row,
    under_prefixes,
)
from tagger.library.catalogue.rows import (
    utcnow as _now,
)
from tagger.library.catalogue.schema import (
    ADOPTIONS as _A,
)
from tagger.library.catalogue.schema import (
    CALIBRATIONS as _K,
)
from tagger.library.catalogue.schema import (
    CORRECTIONS as _C,
)
from tagger.library.catalogue.schema import (
    TRACKS as _T,
)
from tagger.results import (
    CalibrationMethod,
    ContentKind,
    CorrectionAction,
    CorrectionSource,
    LabelSource,
    NotWritten,
)

_LABEL_ACTIONS = (CorrectionAction.SET_GENRE, CorrectionAction.ACCEPT)


def _newest_in_force(path: str, *columns):
    """SELECT ``columns`` of the newest correction of ``path`` that is not an undo and was not
    undone: the one in force."""
    return (
        select(*columns)
        .where(
            _C.c.path == path,
            _C.c.action != CorrectionAction.UNDO.value,
            _C.c.undone_at.is_(None),
        )
        .order_by(_C.c.id.desc())
        .limit(1)
    )


def _settle_music_status(s, path: str) -> None:
    """A classified track's status once its corrections changed: ``not_music`` (its genre
    not written for it) while the user says so, or while the content gate said so and the
    user gave no genre; else ``done``."""
    action = s.scalar(_newest_in_force(path, _C.c.action))
    kind = s.scalar(select(_T.c.content_kind).where(_T.c.path == path))
    not_music = (action == CorrectionAction.NOT_MUSIC.value
                 or (action is None and kind not in (None, ContentKind.MUSIC.value)))
    gone = NotWritten.NOT_MUSIC.value
    s.execute(update(_T).where(_T.c.path == path, _T.c.status.in_(("done", "not_music")))
              .values(status="not_music" if not_music else "done",
                      not_written=gone if not_music else sa.case(
                          (_T.c.not_written == gone, None), else_=_T.c.not_written)))


def _genres_json(values: Sequence[str] | None) -> str | None:
    """A JSON list, or NULL for no genres at all."""
    return dump_list(tuple(values)) if values else None


class Labels:
    """Part of :class:`~tagger.library.catalogue.store.Catalogue` (its transactions: ``_write``,
    ``_read``, ``batch``)."""

    # -- the file's own tags ------------------------------------------------------------------

    def set_track_tags(
        self,
        path: str,
        artist: str | None,
        album: str | None,
        file_genres: Sequence[str] | None,
        user_genres: Sequence[str] | None,
        *,
        album_key: str | None = None,
        album_artist: str | None = None,
        mb_album_id: str | None = None,
        compilation: bool | None = None,
    ) -> None:
        """Store what the file's tags said at this scan: ``artist``, ``album``, its normalised
        genres and those of them the user set (not tagger; see tagger.library.journal). Every
        value replaces the stored one (None or empty: NULL). With ``album_key`` (its album,
        tagger.library.albums), the album identity columns are replaced too; without, they
        are left as they are. A file not catalogued yet is added as pending."""
        now = _now()
        values: dict[str, Any] = dict(
            artist=artist or None,
            album=album or None,
            file_genres=_genres_json(file_genres),
            user_genres=_genres_json(user_genres),
        )
        if album_key is not None:
            values.update(album_key=album_key, album_artist=album_artist or None,
                          mb_album_id=mb_album_id or None, compilation=bool(compilation))
        with self._write(f"record the tags of {path}") as s:
            tid = self._upsert_track(s, path, now)
            s.execute(update(_T).where(_T.c.id == tid).values(**values))

    # -- corrections --------------------------------------------------------------------------

    def record_correction(
        self,
        path: str,
        action: CorrectionAction | str,
        genre: str | None = None,
        *,
        source: CorrectionSource | str,
        previous: Sequence[str] = (),
        predicted: str | None = None,
        confidence: float | None = None,
        model_sha256: str | None = None,
        tag_write_ids: Sequence[int] = (),
    ) -> int:
        """Append a correction of ``path`` (catalogued or not) and return its id.

        ``set_genre`` and ``accept`` need the (normalised) ``genre``; ``not_music`` and
        ``undo`` store none. ``undo`` cancels the newest correction of the track still in
        force (its ``undone_at`` is set); with none to cancel it raises :class:`WriteError`.
        ``previous`` are the file's genres before the correction; ``tag_write_ids`` the
        journal rows (:meth:`record_tag_changes`) of the file write it made, if any."""
        action = CorrectionAction(action)
        source = CorrectionSource(source)
        if action in _LABEL_ACTIONS:
            if not genre or not genre.strip():
                raise WriteError(f"a {action.value} correction needs a genre", path)
            genre = genre.strip()
        else:
            genre = None
        now = _now()
        with self._write(f"record a correction of {path}") as s:
            if action is CorrectionAction.UNDO:
                target = s.scalar(_newest_in_force(path, _C.c.id))
                if target is None:
                    raise WriteError("no correction to undo", path)
                s.execute(update(_C).where(_C.c.id == target).values(undone_at=now))
            correction_id = s.execute(
                insert(_C).values(
                    track_id=self._track_id(s, path),
                    path=path,
                    action=action.value,
                    genre=genre,
                    previous=dump_list(tuple(previous)),
                    predicted_genre=predicted,
                    predicted_confidence=confidence,
                    model_sha256=model_sha256,
                    source=source.value,
                    created_at=now,
                    tag_write_ids=json.dumps([int(i) for i in tag_write_ids])
                    if tag_write_ids else None,
                )
            ).inserted_primary_key[0]
            _settle_music_status(s, path)
            return correction_id

    def withdraw_corrections(self, path: str, tag_write_ids: Iterable[int]) -> int:
        """The tag writes ``tag_write_ids`` of ``path`` were reverted (``tagger revert``): the
        corrections in force that made them no longer are (``undone_at`` set; no undo row).
        Returns how many."""
        reverted = {int(i) for i in tag_write_ids}
        now = _now()
        with self._write(f"withdraw the corrections of {path}") as s:
            rows = s.execute(
                select(_C.c.id, _C.c.tag_write_ids).where(
                    _C.c.path == path,
                    _C.c.undone_at.is_(None),
                    _C.c.tag_write_ids.is_not(None),
                )
            ).fetchall()
            ids = [r.id for r in rows if reverted & set(json.loads(r.tag_write_ids))]
            if ids:
                s.execute(update(_C).where(_C.c.id.in_(ids)).values(undone_at=now))
                _settle_music_status(s, path)
            return len(ids)

    def corrections(self, path: str | None = None) -> list[Correction]:
        """Every correction (of ``path``), oldest first, undos and undone ones included."""
        stmt = select(_C).order_by(_C.c.id)
        if path is not None:
            stmt = stmt.where(_C.c.path == path)
        with self._read() as s:
            return [record_from_row(Correction, r) for r in s.execute(stmt)]

    def correction_in_force(self, path: str) -> Correction | None:
        """The newest correction of ``path`` that is not an undo and was not undone: what the
        user says the track's genre is now (``not_music`` included), or None."""
        with self._read() as s:
            row = s.execute(_newest_in_force(path, _C)).first()
        return record_from_row(Correction, row) if row is not None else None

    # -- labels -------------------------------------------------------------------------------

    def labelled_tracks(self, prefixes: Iterable[str] | None = None) -> list[LabelRow]:
        """Every track (below the directory ``prefixes``) with a genre the user gave it, by
        path: the newest correction in force, else the genres the user set in the file.
        A ``not_music`` correction removes the label; genres tagger wrote are never labels
        (``user_genres`` leaves them out). Only tracks not missing whose file exists."""
        tracks = select(
            _T.c.id, _T.c.path, _T.c.content_id, _T.c.artist, _T.c.album, _T.c.user_genres
        ).where(_T.c.status != "missing").order_by(_T.c.path)
        in_force = (
            select(_C.c.track_id, _C.c.action, _C.c.genre)
            .where(
                _C.c.track_id.is_not(None),
                _C.c.action != CorrectionAction.UNDO.value,
                _C.c.undone_at.is_(None),
            )
            .order_by(_C.c.id)
        )
        if prefixes is not None:
            prefixes = list(prefixes)
            tracks = tracks.where(under_prefixes(_T.c.path, prefixes))
            in_force = in_force.where(under_prefixes(_C.c.path, prefixes))
        with self._read() as s:
            conn = s.connection()
            newest: dict[int, Any] = {}
            for row in conn.execute(in_force):
                newest[row.track_id] = row  # ordered by id: the last one is the newest
            rows = conn.execute(tracks).fetchall()
        labels = []
        for row in rows:
            correction = newest.get(row.id)
            if correction is not None:
                if CorrectionAction(correction.action) is CorrectionAction.NOT_MUSIC:
                    continue
                genres, source = (correction.genre,), LabelSource.CORRECTION
            elif row.user_genres:
                genres, source = load_list(row.user_genres) or (), LabelSource.TAG
            else:
                continue
            if not genres or not os.path.exists(row.path):
                continue
            labels.append(
                LabelRow(row.path, row.content_id, genres[0], tuple(genres), row.artist,
                         row.album, source)
            )
        return labels

    # -- adopted models -----------------------------------------------------------------------

    def record_adoption(
        self,
        name: str,
        sha256: str,
        bundle_path: str,
        labels: Sequence[str],
        figures: Mapping[str, Any],
    ) -> int:
        """Make this bundle the library's model (the current one, if any, is retired in the
        same transaction, so at most one is current). Returns its id."""
        now = _now()
        with self._write(f"record the adoption of {name}") as s:
            s.execute(update(_A).where(_A.c.retired_at.is_(None)).values(retired_at=now))
            return s.execute(
                insert(_A).values(
                    name=name,
                    sha256=sha256,
                    bundle_path=os.fspath(bundle_path),
                    labels=dump_list(tuple(labels)),
                    figures=json.dumps(dict(figures), ensure_ascii=False, default=_jsonable),
                    adopted_at=now,
                )
            ).inserted_primary_key[0]

    def adopted_model(self) -> Adoption | None:
        """The current adoption (not retired), or None: the shipped model is in use."""
        stmt = select(_A).where(_A.c.retired_at.is_(None)).order_by(_A.c.id.desc()).limit(1)
        with self._read() as s:
            row = s.execute(stmt).first()
        return record_from_row(Adoption, row) if row is not None else None

    def adoptions(self) -> list[Adoption]:
        """Every adoption, oldest first (the retired ones included)."""
        with self._read() as s:
            return [record_from_row(Adoption, r) for r in s.execute(select(_A).order_by(_A.c.id))]

    def retire_adoption(self) -> bool:
        """Go back to the shipped model: the current adoption is retired. False if none was."""
        with self._write("retire the adopted model") as s:
            return bool(
                s.execute(
                    update(_A).where(_A.c.retired_at.is_(None)).values(retired_at=_now())
                ).rowcount
            )

    # -- calibrations -------------------------------------------------------------------------

    def record_calibration(
        self,
        model_sha256: str,
        method: CalibrationMethod | str,
        parameters: Mapping[str, Any],
        *,
        ece_before: float | None = None,
        ece_after: float | None = None,
        tracks: int | None = None,
        target_precision: float | None = None,
        threshold: float | None = None,
        precision: float | None = None,
        coverage: float | None = None,
    ) -> int:
        """Store a confidence map for the model ``model_sha256`` (it replaces the previous one
        for :meth:`calibration_for`; older rows stay as history). Returns its id."""
        method = CalibrationMethod(method)
        with self._write(f"record a calibration of {model_sha256[:12]}") as s:
            return s.execute(
                insert(_K).values(
                    model_sha256=model_sha256,
                    method=method.value,
                    parameters=json.dumps(dict(parameters), default=_jsonable),
                    ece_before=_float(ece_before),
                    ece_after=_float(ece_after),
                    tracks=None if tracks is None else int(tracks),
                    target_precision=_float(target_precision),
                    threshold=_float(threshold),
                    precision=_float(precision),
                    coverage=_float(coverage),
                    created_at=_now(),
                )
            ).inserted_primary_key[0]

    def calibration_for(self, model_sha256: str) -> Calibration | None:
        """The newest calibration of the model ``model_sha256``, or None."""
        stmt = (
            select(_K)
            .where(_K.c.model_sha256 == model_sha256)
            .order_by(_K.c.created_at.desc(), _K.c.id.desc())
            .limit(1)
        )
        with self._read() as s:
            row = s.execute(stmt).first()
        return record_from_row(Calibration, row) if row is not None else None


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays, paths, enums: what a learn report may hold."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "value"):
        return value.value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
