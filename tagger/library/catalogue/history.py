"""The tag_writes journal's rows: record planned changes, list them, mark them reverted
(what they mean is tagger.library.journal's)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import insert, select, update

from tagger.library.catalogue.records import (
    TagChange,
    TagWriteRecord,
    tag_write_record,
)
from tagger.library.catalogue.rows import (
    chunks,
    dump_list,
    under_prefixes,
)
from tagger.library.catalogue.rows import (
    utcnow as _now,
)
from tagger.library.catalogue.schema import (
    TAG_WRITES as _W,
)


def dump_layout(layout: dict | None) -> str | None:
    return None if layout is None else json.dumps(layout, ensure_ascii=False,
                                                  separators=(",", ":"))


class TagHistory:
    """Part of :class:`~tagger.library.catalogue.store.Catalogue` (its transactions: ``_write``,
    ``_read``, ``batch``)."""

    def record_tag_changes(
        self,
        path: str,
        changes: Iterable[TagChange],
        *,
        size: int | None = None,
        mtime_ns: int | None = None,
    ) -> list[int]:
        """Log the tag fields just written to ``path`` (each change: ``field``, ``old``, ``new``
        as sequences of strings or None; a ``path`` attribute is ignored). With ``size`` and
        ``mtime_ns``, also :meth:`update_stat` in the same transaction. A file not catalogued
        yet is added as pending. Returns the new ids, in the order of ``changes``."""
        changes = list(changes)
        now = _now()
        with self._write(f"record the tags written to {path}") as s:
            tid = self._upsert_track(s, path, now, size=size, mtime_ns=mtime_ns)
            ids = []
            for change in changes:
                ids.append(
                    s.execute(
                        insert(_W).values(
                            track_id=tid,
                            path=path,
                            field=str(change.field),
                            old_value=dump_list(change.old),
                            new_value=dump_list(change.new),
                            old_layout=dump_layout(getattr(change, "old_layout", None)),
                            written_at=now,
                        )
                    ).inserted_primary_key[0]
                )
            return ids

    def tag_changes(
        self,
        paths: Iterable[str] | None = None,
        include_reverted: bool = False,
        *,
        under: Iterable[str] | None = None,
    ) -> list[TagWriteRecord]:
        """Logged tag changes, by path then oldest first; only those not yet reverted unless
        ``include_reverted``. ``paths`` selects files, ``under`` directories (both: either)."""
        stmt = select(_W).order_by(
            _W.c.path, _W.c.written_at, _W.c.id
        )
        if not include_reverted:
            stmt = stmt.where(_W.c.reverted_at.is_(None))
        conds = []
        path_list = list(paths) if paths is not None else None
        if under is not None:
            conds.append(under_prefixes(_W.c.path, list(under)))
        rows: list[Any] = []
        with self._read() as s:
            conn = s.connection()
            if path_list is None:
                if conds:
                    stmt = stmt.where(*conds)
                rows = conn.execute(stmt).fetchall()
            else:
                seen: set[int] = set()
                for chunk in chunks(path_list) if path_list else [[]]:
                    for row in conn.execute(
                        stmt.where(sa.or_(_W.c.path.in_(chunk), *conds))
                    ):
                        if row.id not in seen:
                            seen.add(row.id)
                            rows.append(row)
                rows.sort(key=lambda r: (r.path, r.written_at, r.id))
        return [tag_write_record(r) for r in rows]

    def mark_reverted(self, ids: Iterable[int]) -> int:
        """Note that these tag changes were undone in the files. Returns how many changed."""
        ids = list(dict.fromkeys(int(i) for i in ids))
        now = _now()
        n = 0
        with self._write("mark tag changes reverted") as s:
            for chunk in chunks(ids):
                n += s.execute(
                    update(_W)
                    .where(_W.c.id.in_(chunk), _W.c.reverted_at.is_(None))
                    .values(reverted_at=now)
                ).rowcount
        return n
