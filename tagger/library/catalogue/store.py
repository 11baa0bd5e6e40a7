"""The :class:`Catalogue`: one object per database, with the single writer's transactions;
its calls are grouped by what they touch (one mixin each, in this package)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
from collections.abc import Iterator
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy import insert, select, update
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import (
    Session,
)

from tagger.errors import ReadError, WriteError
from tagger.library.catalogue.albums import Albums
from tagger.library.catalogue.database import (
    current,
    head,
    make_engine,
    parse_url,
    safe_url,
    sqlite_path,
    upgrade_database,
)
from tagger.library.catalogue.database import (
    db_error_reason as _reason,
)
from tagger.library.catalogue.history import TagHistory
from tagger.library.catalogue.labels import Labels
from tagger.library.catalogue.outcomes import Outcomes
from tagger.library.catalogue.queues import Queues
from tagger.library.catalogue.reports import Reports
from tagger.library.catalogue.rows import (
    dump_list,
    folder_of,
)
from tagger.library.catalogue.schema import (
    MODELS as _M,
)
from tagger.library.catalogue.schema import (
    TRACKS as _T,
)
from tagger.library.catalogue.tracks import TrackStates
from tagger.results import (
    ModelInfo,
)


class CatalogueGoneError(WriteError):
    """The SQLite file was deleted or replaced under a running writer: it must stop."""


class Catalogue(TrackStates, Outcomes, TagHistory, Reports, Labels, Albums, Queues):
    """Access to the catalogue database; one per process, shareable between its threads.

    ``Catalogue(url)`` opens (creating it if needed) and upgrades the database; see
    :func:`upgrade`. With ``upgrade=False`` a database that is not at the newest revision is an
    error instead (for read-only tools that must not change it).

    Every write method runs in its own transaction, or joins the enclosing :meth:`batch` of the
    same thread. Reads inside a batch see its uncommitted writes.

    The class is one object, its calls spread over mixins by what they touch: tracks.py
    (file states), outcomes.py (results, failures, moves), history.py (the journal's rows),
    reports.py (show, review, stats), labels.py (the file's own tags, corrections, labels,
    adopted models, calibrations), albums.py (album members, album decisions).
    """

    def __init__(self, url: str | URL, *, backup: bool = True, upgrade: bool = True):
        self._url = parse_url(url)
        self.url = safe_url(self._url)  # printable: no password
        if upgrade:
            self.upgraded_from, self.revision = upgrade_database(self._url, backup=backup)
        else:
            rev, want = current(self._url), head()
            if rev != want:
                raise WriteError(
                    f"catalogue {self.url} is at schema revision {rev or 'none'}, not {want}; "
                    "run the upgrade first"
                )
            self.upgraded_from, self.revision = rev, rev
        self._engine = make_engine(self._url)
        self._write_engine = self._engine.execution_options(tagger_write=True)
        self._local = threading.local()
        self._file = sqlite_path(self._url)
        self._identity = self._file_identity()
        self._write_guards: list[Callable[[], None]] = []

    def _file_identity(self) -> tuple[int, int] | None:
        if self._file is None:
            return None
        try:
            st = os.stat(self._file)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def check_file(self) -> None:
        """Raise WriteError when the SQLite file was deleted or replaced since it was opened:
        writing on would go to a deleted inode and be lost at exit (checked by every write)."""
        if self._identity is not None and self._file_identity() != self._identity:
            raise CatalogueGoneError(
                f"the catalogue file {self._file} was deleted or replaced while tagger was "
                "running; stopping (restart tagger to create a new one and rescan)"
            )

    def add_write_guard(self, check: Callable[[], None]) -> None:
        """Run ``check()`` before every write transaction, as :meth:`check_file` is; it raises
        to refuse the write (the writer lock uses this to notice it was lost)."""
        self._write_guards.append(check)

    def _before_write(self) -> None:
        self.check_file()
        for check in self._write_guards:
            check()

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (reads; for ad-hoc queries and tests)."""
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Catalogue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalogue({self.url!r})"

    @contextlib.contextmanager
    def batch(self) -> Iterator[Catalogue]:
        """Run every catalogue call of this thread inside one transaction, committed at the end.

        An exception leaving the block rolls all of it back. A write that fails inside the block
        raises :class:`WriteError` and is undone alone (a savepoint), so the caller may catch it
        and go on with the rest of the batch. Nested ``batch()`` blocks join the outer one.
        """
        if getattr(self._local, "session", None) is not None:
            yield self
            return
        self._before_write()
        session = Session(self._write_engine, expire_on_commit=False)
        self._local.session = session
        try:
            with session.begin():
                yield self
        except SQLAlchemyError as exc:
            raise WriteError(
                f"catalogue {self.url}: batch not saved: {_reason(exc)}"
            ) from None
        finally:
            self._local.session = None
            session.close()

    @contextlib.contextmanager
    def _write(self, what: str) -> Iterator[Session]:
        outer: Session | None = getattr(self._local, "session", None)
        try:
            if outer is not None:
                with outer.begin_nested():
                    yield outer
            else:
                self._before_write()
                with Session(self._write_engine, expire_on_commit=False) as session:
                    with session.begin():
                        yield session
        except SQLAlchemyError as exc:
            raise WriteError(
                f"catalogue {self.url}: cannot {what}: {_reason(exc)}"
            ) from None
        except UnicodeEncodeError:
            raise WriteError(
                f"catalogue {self.url}: cannot {what}: a path or value is not valid UTF-8"
            ) from None

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        outer: Session | None = getattr(self._local, "session", None)
        try:
            if outer is not None:
                yield outer
            else:
                with Session(self._engine) as session:
                    yield session
        except SQLAlchemyError as exc:
            raise ReadError(f"catalogue {self.url}: query failed: {_reason(exc)}") from None
        except UnicodeEncodeError:
            raise ReadError(
                f"catalogue {self.url}: query failed: a path is not valid UTF-8"
            ) from None

    @staticmethod
    def _track_id(s: Session, path: str) -> int | None:
        return s.scalar(select(_T.c.id).where(_T.c.path == path))

    @staticmethod
    def _upsert_track(s: Session, path: str, now: dt.datetime, **values: Any) -> int:
        """Update the row of ``path`` with ``values`` (None values are left alone), or insert it."""
        values = {k: v for k, v in values.items() if v is not None}
        tid = s.scalar(select(_T.c.id).where(_T.c.path == path))
        if tid is None:
            values.setdefault("status", "pending")
            row = dict(path=path, folder=folder_of(path), first_seen=now, updated_at=now, **values)
            if isinstance(row.get("attempts"), sa.ColumnElement):
                row["attempts"] = 1
            return s.execute(insert(_T).values(**row)).inserted_primary_key[0]
        s.execute(update(_T).where(_T.c.id == tid).values(updated_at=now, **values))
        return tid

    @staticmethod
    def _model_id(s: Session, info: ModelInfo, now: dt.datetime) -> int:
        vocabulary = dump_list(tuple(info.vocabulary))
        row = s.execute(
            select(_M.c.id, _M.c.name, _M.c.vocabulary).where(
                _M.c.sha256 == info.sha256
            )
        ).first()
        if row is None:
            return s.execute(
                insert(_M).values(
                    name=info.name, sha256=info.sha256, vocabulary=vocabulary, created=now
                )
            ).inserted_primary_key[0]
        changes: dict[str, Any] = {}
        if row.name != info.name:
            changes["name"] = info.name
        if info.vocabulary and row.vocabulary != vocabulary:
            changes["vocabulary"] = vocabulary
        if changes:
            s.execute(update(_M).where(_M.c.id == row.id).values(**changes))
        return row.id


def open_catalogue(url_or_config: Any, *, backup: bool = True, upgrade: bool = True) -> Catalogue:
    """:class:`Catalogue` for a URL, or for a :class:`tagger.config.Config` (its database_url)."""
    url = getattr(url_or_config, "database_url", url_or_config)
    return Catalogue(url, backup=backup, upgrade=upgrade)
