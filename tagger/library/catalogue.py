"""The catalogue: what tagger knows about every file, in an SQL database (SQLite by default).

The schema is created and changed **only** by the Alembic migrations in ``migrations/``; the ORM
classes below mirror it (``tests/test_catalogue.py`` checks that they agree). Opening a
:class:`Catalogue` upgrades an existing database to the newest revision, after copying an SQLite
file aside (``<file>.bak-<old revision>-<UTC timestamp>``).

Concurrency: exactly one writer process (the daemon or a one-shot scan) by design, any number of
readers. SQLite connections run in WAL mode with a 10 s busy timeout and foreign keys on; write
transactions start with ``BEGIN IMMEDIATE`` so that a second writer waits instead of failing
half-way. Within the writer, :meth:`Catalogue.batch` groups many calls into one transaction.

Every database error surfaces as :class:`tagger.errors.WriteError` (:class:`ReadError` for a
failed query, :class:`ConfigError` for a URL that cannot be used), one line, naming the URL
without its password.

Tables (see ``docs/queries.md`` for SQL against them):

``tracks``
    one row per file ever seen: ``path`` (unique), ``folder`` (its directory), ``size``,
    ``mtime_ns``, ``content_id``, ``format``, ``duration_s``, ``status`` (pending, done, failed,
    skipped, missing), ``error`` (last failure, path not repeated), ``attempts`` (failed attempts
    since the last success or change of the file), ``failure_kind`` (why it failed: worker_died,
    timeout, permission, unreadable, tag_write, internal), ``not_written`` (why a classified
    track's genre was not written: below_threshold, kept_user_genre, tie_skipped,
    policy_never; NULL when it was), ``first_seen``, ``updated_at``,
    ``last_scanned`` (last time the classifier processed it).
``models``
    one row per set of weights: ``name``, ``sha256`` (unique), ``vocabulary`` (JSON list),
    ``created``.
``predictions``
    one per track and model (the newest replaces the previous one): ``genre``, ``confidence``,
    ``votes``, ``segment_count``, ``tie``, ``tied_genres`` (comma-separated, NULL without a tie),
    ``descriptors`` (JSON object, NULL without any), ``created``; with
    ``prediction_candidates`` (``place``, ``genre``, ``votes``, ``mean_score``) and
    ``prediction_segments`` (``segment_index``, ``start_s``, ``genre``, ``scores`` JSON object).
``tag_writes``
    every tag field tagger changed in a file: ``track_id``, ``path``, ``field``, ``old_value``
    and ``new_value`` (JSON lists, NULL for an absent field), ``written_at``, ``reverted_at``.

Views: ``track_genres`` (``path``, ``genre``, ``confidence``, ``tie``, ``tied_genres``, ``model``:
the newest prediction of every track that has one) and ``genre_counts`` (``genre``, ``tracks``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import sqlite3
import statistics
import sysconfig
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import sqlalchemy as sa
from sqlalchemy import bindparam, delete, event, func, insert, select, update
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    selectinload,
)

from tagger.errors import ConfigError, ReadError, TaggerError, WriteError
from tagger.library.paths import PRIVATE_DIR_MODE, create_private_file
from tagger.results import (
    Candidate,
    FailureKind,
    ModelInfo,
    NotWritten,
    SegmentResult,
    TrackResult,
)

log = logging.getLogger(__name__)

__all__ = [
    "STATUSES",
    "Base", "Track", "Model", "Prediction", "PredictionCandidate", "PredictionSegment", "TagWrite",
    "TrackRecord", "PredictionRecord", "TagWriteRecord", "Failure", "ReviewRow",
    "ConfidenceSpread", "Stats",
    "Catalogue", "open_catalogue", "upgrade", "downgrade", "current", "head",
    "migrations_dir", "safe_url",
]

STATUSES = ("pending", "done", "failed", "skipped", "missing")
BUSY_TIMEOUT_MS = 10_000
SCORE_DECIMALS = 6  # raw scores and descriptors are stored rounded to this many decimals
_CHUNK = 500  # parameters per IN (...) list; well under SQLite's limit


# --------------------------------------------------------------------------------------------
# ORM: mirrors migrations/versions/*. Never call Base.metadata.create_all(): the migrations own
# the schema (the views only exist there).
# --------------------------------------------------------------------------------------------

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

    predictions: Mapped[list[Prediction]] = relationship(
        back_populates="track", cascade="all, delete-orphan", passive_deletes=True,
        order_by="(Prediction.created.desc(), Prediction.id.desc())",
    )
    # the journal of the user's original values outlives the row (migration 0004_journal)
    tag_writes: Mapped[list[TagWrite]] = relationship(
        back_populates="track", cascade="save-update, merge", passive_deletes="all",
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
    __table_args__ = (sa.UniqueConstraint("track_id", "model_id"),)

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
        cascade="all, delete-orphan", passive_deletes=True,
        order_by="PredictionCandidate.place",
    )
    segments: Mapped[list[PredictionSegment]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True,
        order_by="PredictionSegment.segment_index",
    )


class PredictionCandidate(Base):
    """A genre that won at least one segment; place 1 is the written genre."""

    __tablename__ = "prediction_candidates"

    id: Mapped[int] = mapped_column(primary_key=True)
    prediction_id: Mapped[int] = mapped_column(
        sa.ForeignKey("predictions.id", ondelete="CASCADE"), index=True
    )
    place: Mapped[int] = mapped_column(sa.Integer)
    genre: Mapped[str] = mapped_column(sa.String(200))
    votes: Mapped[int] = mapped_column(sa.Integer)
    mean_score: Mapped[float] = mapped_column(sa.Float)


class PredictionSegment(Base):
    """One analysed segment: the genre it voted for and every raw model output."""

    __tablename__ = "prediction_segments"

    id: Mapped[int] = mapped_column(primary_key=True)
    prediction_id: Mapped[int] = mapped_column(
        sa.ForeignKey("predictions.id", ondelete="CASCADE"), index=True
    )
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
    written_at: Mapped[dt.datetime] = mapped_column(_Stamp)
    reverted_at: Mapped[dt.datetime | None] = mapped_column(_Stamp)

    track: Mapped[Track] = relationship(back_populates="tag_writes")


_T = Track.__table__
_M = Model.__table__
_P = Prediction.__table__
_C = PredictionCandidate.__table__
_S = PredictionSegment.__table__
_W = TagWrite.__table__
_TRACK_GENRES = sa.table(
    "track_genres",
    sa.column("path"), sa.column("genre"), sa.column("confidence"), sa.column("tie"),
    sa.column("tied_genres"), sa.column("model"),
)
_GENRE_COUNTS = sa.table("genre_counts", sa.column("genre"), sa.column("tracks"))


# --------------------------------------------------------------------------------------------
# Records returned by the API (plain frozen dataclasses, safe to keep after the session ends).
# --------------------------------------------------------------------------------------------



@dataclass(frozen=True)
class TagWriteRecord:
    id: int
    path: str
    field: str
    old: tuple[str, ...] | None
    new: tuple[str, ...] | None
    written_at: dt.datetime
    reverted_at: dt.datetime | None


@dataclass(frozen=True)
class PredictionRecord:
    id: int
    model: ModelInfo
    genre: str
    confidence: float
    votes: int
    segment_count: int
    tie: bool
    tied: tuple[str, ...]  # as Vote.tied: the top-voted genres, best first (just `genre` if no tie)
    descriptors: dict[str, float]
    created: dt.datetime
    candidates: tuple[Candidate, ...]
    segments: tuple[SegmentResult, ...]  # start_s is None when it was not recorded


@dataclass(frozen=True)
class TrackRecord:
    id: int
    path: str
    folder: str
    size: int | None
    mtime_ns: int | None
    content_id: str | None
    format: str | None
    duration_s: float | None
    status: str
    error: str | None
    attempts: int
    first_seen: dt.datetime
    updated_at: dt.datetime
    last_scanned: dt.datetime | None
    predictions: tuple[PredictionRecord, ...]  # newest first
    tag_writes: tuple[TagWriteRecord, ...]  # oldest first
    failure_kind: FailureKind | None = None
    not_written: NotWritten | None = None

    @property
    def prediction(self) -> PredictionRecord | None:
        """The newest prediction (the one ``track_genres`` shows), if any."""
        return self.predictions[0] if self.predictions else None


@dataclass(frozen=True)
class Failure:
    path: str
    status: str  # failed or skipped
    error: str | None
    attempts: int
    last_scanned: dt.datetime | None
    kind: FailureKind | None = None


@dataclass(frozen=True)
class ReviewRow:
    """One track of a review queue (``tagger list``)."""

    path: str
    status: str
    genre: str | None  # the newest prediction, None when there is none
    confidence: float | None
    tie: bool
    tied_genres: str | None
    not_written: NotWritten | None
    error: str | None
    failure_kind: FailureKind | None


@dataclass(frozen=True)
class ConfidenceSpread:
    count: int
    min: float
    q1: float
    median: float
    q3: float
    max: float
    mean: float
    buckets: tuple[tuple[float, float, int], ...]  # (low, high, tracks): ten buckets of 0.1


@dataclass(frozen=True)
class Stats:
    total: int  # tracks in the catalogue, any status
    status_counts: dict[str, int]  # every status, zeros included
    predicted: int  # tracks with a prediction (rows of track_genres)
    genres: tuple[tuple[str, int], ...]  # (genre, tracks), most tracks first (genre_counts)
    ties: int
    confidence: ConfidenceSpread | None  # None when nothing is predicted yet
    failures: tuple[tuple[str, str, int], ...]  # (status, reason, tracks), most first
    models: tuple[tuple[str, str, int], ...]  # (name, sha256, predictions), most first


class TagChange(Protocol):
    """What :meth:`Catalogue.record_tag_changes` needs from the tag writer's change objects."""

    field: str
    old: Sequence[str] | None
    new: Sequence[str] | None


# --------------------------------------------------------------------------------------------
# URLs, engines, migrations
# --------------------------------------------------------------------------------------------


def safe_url(url: str | URL) -> str:
    """The URL as text with any password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL; mask anything that looks like user:pass@
        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", str(url))


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig) if orig is not None else str(exc)
    return " ".join(text.split("(Background on this error")[0].split()) or type(exc).__name__


def _parse_url(url: str | URL) -> URL:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError) as exc:
        raise ConfigError(f"invalid database URL {safe_url(url)!r}: {_reason(exc)}") from None
    path = _sqlite_path(parsed)
    if path is not None and str(path) != parsed.database:
        parsed = parsed.set(database=str(path))  # "~" expanded
    return parsed


def _sqlite_path(url: URL) -> Path | None:
    """The database file of an SQLite URL; None for other databases and in-memory SQLite."""
    if url.get_backend_name() != "sqlite":
        return None
    db = url.database or ""
    if not db or db == ":memory:" or db.startswith("file:") or url.query.get("uri"):
        return None
    return Path(db).expanduser()


def sqlite_file(url: str | URL) -> Path | None:
    """The database file of an SQLite catalogue URL (None for other databases)."""
    return _sqlite_path(_parse_url(url))


def _make_engine(url: URL, *, migrating: bool = False) -> Engine:
    """An engine with tagger's SQLite settings.

    ``migrating``: foreign keys OFF (a batch migration recreates tables, and dropping a
    referenced table with them ON would cascade-delete its children) and ``legacy_alter_table``
    ON (so renaming the recreated table does not trip over the views); every transaction takes
    the write lock at once.
    """
    sqlite = url.get_backend_name() == "sqlite"
    kwargs: dict[str, Any] = {}
    if sqlite:
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000}
    try:
        engine = sa.create_engine(url, **kwargs)
    except (NoSuchModuleError, ImportError, ArgumentError, TypeError) as exc:
        raise ConfigError(f"cannot use database URL {safe_url(url)!r}: {_reason(exc)}") from None
    if sqlite:
        _install_sqlite_listeners(engine, migrating=migrating)
    return engine


def _install_sqlite_listeners(engine: Engine, *, migrating: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # noqa: ANN001
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (see _on_begin)
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")  # durable enough with WAL, much faster
            cur.execute(f"PRAGMA foreign_keys = {'OFF' if migrating else 'ON'}")
            if migrating:
                cur.execute("PRAGMA legacy_alter_table = ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = migrating or conn.get_execution_options().get("tagger_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def migrations_dir() -> Path:
    """The Alembic script directory: ``migrations/`` beside the package (source checkout or
    editable install), else ``<data>/share/tagger/migrations`` (wheel install)."""
    import tagger

    candidates = [
        Path(tagger.__file__).resolve().parent.parent / "migrations",
        Path(sysconfig.get_path("data")) / "share" / "tagger" / "migrations",
    ]
    for candidate in candidates:
        if (candidate / "env.py").is_file():
            return candidate
    raise ConfigError(
        "database migrations not found (looked in " + ", ".join(map(str, candidates)) + ")"
    )


def _alembic_config(connection: Connection | None = None):
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest schema revision this version of tagger knows."""
    from alembic.script import ScriptDirectory

    rev = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if rev is None:  # pragma: no cover - the package ships migrations
        raise ConfigError(f"no migrations in {migrations_dir()}")
    return rev


def _current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def current(url: str | URL) -> str | None:
    """The schema revision of the database at ``url``; None when it has none (or no file yet)."""
    parsed = _parse_url(url)
    path = _sqlite_path(parsed)
    if path is not None and not path.exists():
        return None
    engine = _make_engine(parsed)
    try:
        with engine.connect() as conn:
            return _current_revision(conn)
    except SQLAlchemyError as exc:
        raise WriteError(f"cannot open catalogue {safe_url(parsed)}: {_reason(exc)}") from None
    finally:
        engine.dispose()


def upgrade(
    url: str | URL, *, backup: bool = True, revision: str = "head"
) -> tuple[str | None, str]:
    """Bring the database at ``url`` to the newest revision (or to ``revision``, an older one,
    for tests); returns ``(old, new)``.

    Creates a new SQLite file (and its directory). For an existing SQLite database with a
    pending migration and ``backup``, first copies it to ``<file>.bak-<old>-<timestamp>``.
    ``old == new`` means there was nothing to do; ``old`` is None for a new database.
    """
    parsed = _parse_url(url)
    where = safe_url(parsed)
    path = _sqlite_path(parsed)
    if path is not None:
        try:
            path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
            create_private_file(path)  # before SQLite creates it with the umask's mode
        except OSError as exc:
            raise WriteError(f"cannot create catalogue {where}: {exc.strerror or exc}") from None
    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    script = ScriptDirectory.from_config(_alembic_config())
    new = head() if revision == "head" else revision
    old = current(parsed)  # a plain read first: opening an up-to-date catalogue takes no lock
    if old == new:
        return old, new
    engine = _make_engine(parsed, migrating=True)
    try:
        with engine.connect() as conn:  # BEGIN IMMEDIATE: one upgrader at a time
            old = _current_revision(conn)
            tables = set(sa.inspect(conn).get_table_names()) - {"alembic_version"}
        if old == new:
            return old, new
        if old is not None:
            try:
                known = script.get_revision(old) is not None
            except CommandError:
                known = False
            if not known:
                raise WriteError(
                    f"catalogue {where} is at schema revision {old}, which this tagger does "
                    f"not know (newest: {new}); upgrade tagger"
                )
        elif tables:
            raise WriteError(
                f"catalogue {where} has tables but no tagger schema revision; "
                "refusing to change it"
            )
        if backup and old is not None and path is not None:
            copy = _backup_sqlite(path, old)
            log.info("catalogue %s backed up to %s before upgrading", where, copy)
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), new)
        if parsed.get_backend_name() == "sqlite":
            with engine.connect() as conn:
                bad = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if bad:
                log.warning("catalogue %s: %d rows break foreign keys after the upgrade",
                            where, len(bad))
        log.info("catalogue %s upgraded from %s to %s", where, old or "empty", new)
        return old, new
    except TaggerError:
        raise
    except (SQLAlchemyError, CommandError, OSError, sqlite3.Error) as exc:
        raise WriteError(f"cannot upgrade catalogue {where}: {_reason(exc)}") from None
    finally:
        engine.dispose()


_upgrade_database = upgrade  # Catalogue.__init__ has a parameter named "upgrade"


def downgrade(url: str | URL, revision: str = "base") -> None:
    """Take the database back to ``revision`` ("base": empty). For development and tests."""
    parsed = _parse_url(url)
    from alembic import command
    from alembic.util import CommandError

    engine = _make_engine(parsed, migrating=True)
    try:
        with engine.begin() as conn:
            command.downgrade(_alembic_config(conn), revision)
    except (SQLAlchemyError, CommandError) as exc:
        raise WriteError(f"cannot downgrade catalogue {safe_url(parsed)}: {_reason(exc)}") from None
    finally:
        engine.dispose()


def _backup_sqlite(path: Path, revision: str) -> Path:
    """Checkpoint the WAL, then copy the database with SQLite's online backup."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.bak-{revision}-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.bak-{revision}-{stamp}-{n}")
        n += 1
    src = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        src.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        create_private_file(target)
        dst = sqlite3.connect(str(target))
        try:
            src.backup(dst)
        finally:
            dst.close()
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    finally:
        src.close()
    return target


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands datetimes back naive; they were stored in UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


def _folder(path: str) -> str:
    return os.path.dirname(path)


def _dir_prefix(directory: str) -> str:
    """``/music`` and ``/music/`` both become ``/music/`` (matches files below it only)."""
    directory = os.fspath(directory)
    return directory if directory.endswith(("/", os.sep)) else directory + os.sep


def _under(column, prefixes: Iterable[str]):
    """SQL condition: column starts with one of the directory prefixes (portable, case-exact)."""
    conds = [func.substr(column, 1, len(p)) == p for p in map(_dir_prefix, prefixes)]
    return sa.or_(*conds) if conds else sa.false()


def _chunks(items: Sequence, size: int = _CHUNK) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _fetch_raw(conn: Connection, stmt: sa.Select) -> list[tuple]:
    """Run a select of plain int/text columns on the DB-API cursor: no result processing,
    about twice as fast as a Core result for the 100 000-row scans (``known_files``)."""
    dialect = conn.dialect
    compiled = stmt.compile(dialect=dialect)
    if dialect.positional:
        params: Any = tuple(compiled.params[name] for name in compiled.positiontup or ())
    else:
        params = compiled.params
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(str(compiled), params)
        return cursor.fetchall()
    except dialect.loaded_dbapi.Error as exc:  # wrapped like the Core path does
        raise sa.exc.DBAPIError.instance(
            str(compiled), params, exc, dialect.loaded_dbapi.Error
        ) from exc
    finally:
        cursor.close()


def _dump_list(values: Sequence[str] | None) -> str | None:
    return None if values is None else json.dumps([str(v) for v in values], ensure_ascii=False)


def _load_list(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(json.loads(text))


def _dump_scores(scores: dict[str, float] | None) -> str | None:
    if not scores:
        return None
    return json.dumps(
        {str(k): round(float(v), SCORE_DECIMALS) for k, v in scores.items()},
        ensure_ascii=False, separators=(",", ":"),
    )


def _error_text(path: str, error: str | BaseException) -> str:
    """One line, without the track's own path in front (it is in the row already)."""
    if isinstance(error, TaggerError):
        text = error.message if error.path in (None, path) else str(error)
    else:
        text = str(error) or type(error).__name__
        if text.startswith(f"{path}: "):
            text = text[len(path) + 2 :]
    return " ".join(text.split())


# --------------------------------------------------------------------------------------------
# The catalogue
# --------------------------------------------------------------------------------------------


class CatalogueGoneError(WriteError):
    """The SQLite file was deleted or replaced under a running writer: it must stop."""


class Catalogue:
    """Access to the catalogue database; one per process, shareable between its threads.

    ``Catalogue(url)`` opens (creating it if needed) and upgrades the database; see
    :func:`upgrade`. With ``upgrade=False`` a database that is not at the newest revision is an
    error instead (for read-only tools that must not change it).

    Every write method runs in its own transaction, or joins the enclosing :meth:`batch` of the
    same thread. Reads inside a batch see its uncommitted writes.
    """

    def __init__(self, url: str | URL, *, backup: bool = True, upgrade: bool = True):
        self._url = _parse_url(url)
        self.url = safe_url(self._url)  # printable: no password
        if upgrade:
            self.upgraded_from, self.revision = _upgrade_database(self._url, backup=backup)
        else:
            rev, want = current(self._url), head()
            if rev != want:
                raise WriteError(
                    f"catalogue {self.url} is at schema revision {rev or 'none'}, not {want}; "
                    "run the upgrade first"
                )
            self.upgraded_from, self.revision = rev, rev
        self._engine = _make_engine(self._url)
        self._write_engine = self._engine.execution_options(tagger_write=True)
        self._local = threading.local()
        self._file = _sqlite_path(self._url)
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
                "running; stopping (restart tagger to create a new one and rescan)")

    def add_write_guard(self, check: Callable[[], None]) -> None:
        """Run ``check()`` before every write transaction, as :meth:`check_file` is; it raises
        to refuse the write (the writer lock uses this to notice it was lost)."""
        self._write_guards.append(check)

    def _before_write(self) -> None:
        self.check_file()
        for check in self._write_guards:
            check()

    # -- lifecycle ---------------------------------------------------------------------------

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

    # -- transactions ------------------------------------------------------------------------

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
            raise WriteError(f"catalogue {self.url}: batch not saved: {_reason(exc)}") from None
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
            raise WriteError(f"catalogue {self.url}: cannot {what}: {_reason(exc)}") from None
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

    # -- internal write helpers ---------------------------------------------------------------

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
            row = dict(path=path, folder=_folder(path), first_seen=now, updated_at=now, **values)
            if isinstance(row.get("attempts"), sa.ColumnElement):
                row["attempts"] = 1
            return s.execute(insert(_T).values(**row)).inserted_primary_key[0]
        s.execute(update(_T).where(_T.c.id == tid).values(updated_at=now, **values))
        return tid

    @staticmethod
    def _model_id(s: Session, info: ModelInfo, now: dt.datetime) -> int:
        vocabulary = _dump_list(tuple(info.vocabulary))
        row = s.execute(
            select(_M.c.id, _M.c.name, _M.c.vocabulary).where(_M.c.sha256 == info.sha256)
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

    # -- scanning ------------------------------------------------------------------------------

    def known_files(
        self, root_prefixes: Iterable[str] | None = None
    ) -> dict[str, tuple[int | None, int | None, str]]:
        """Every catalogued file below the given directories (all files when None), any status:
        ``{path: (size, mtime_ns, status)}``. One plain column select (100 000 rows: ~0.3 s)."""
        stmt = select(_T.c.path, _T.c.size, _T.c.mtime_ns, _T.c.status)
        if root_prefixes is not None:
            stmt = stmt.where(_under(_T.c.path, list(root_prefixes)))
        with self._read() as s:
            rows = _fetch_raw(s.connection(), stmt)
        return {path: (size, mtime, status) for path, size, mtime, status in rows}

    def mark_pending(
        self, path: str, size: int | None, mtime_ns: int | None, format: str | None = None
    ) -> None:
        """A new or changed file to classify: status pending, stat updated. Its predictions
        stay until replaced; ``attempts`` and ``error`` are reset when size or mtime changed."""
        self.mark_pending_many([(path, size, mtime_ns, format)])

    def mark_pending_many(
        self, files: Iterable[tuple[str, int | None, int | None, str | None]]
    ) -> int:
        """:meth:`mark_pending` for many ``(path, size, mtime_ns, format)`` at once (a first scan
        of a large library); returns how many rows were inserted or changed."""
        files = list({f[0]: f for f in files}.values())
        now = _now()
        changed = 0
        with self._write("mark files pending") as s:
            conn = s.connection()
            for chunk in _chunks(files):
                existing = {
                    r.path: r
                    for r in conn.execute(
                        select(_T.c.id, _T.c.path, _T.c.size, _T.c.mtime_ns, _T.c.status,
                               _T.c.format)
                        .where(_T.c.path.in_([f[0] for f in chunk]))
                    )
                }
                inserts, updates = [], []
                for path, size, mtime_ns, fmt in chunk:
                    row = existing.get(path)
                    if row is None:
                        inserts.append(dict(
                            path=path, folder=_folder(path), size=size, mtime_ns=mtime_ns,
                            format=fmt, status="pending", attempts=0, first_seen=now,
                            updated_at=now,
                        ))
                        continue
                    stat_changed = (row.size, row.mtime_ns) != (size, mtime_ns)
                    if not stat_changed and row.status == "pending" and fmt in (None, row.format):
                        continue
                    updates.append(dict(
                        b_id=row.id, b_size=size, b_mtime=mtime_ns,
                        b_format=fmt if fmt is not None else row.format,
                        b_reset=stat_changed, b_now=now,
                    ))
                if inserts:
                    conn.execute(insert(_T), inserts)
                for reset in (True, False):
                    batch = [u for u in updates if u["b_reset"] is reset]
                    if not batch:
                        continue
                    values: dict[str, Any] = dict(
                        status="pending", size=bindparam("b_size"),
                        mtime_ns=bindparam("b_mtime"), format=bindparam("b_format"),
                        updated_at=bindparam("b_now"),
                    )
                    if reset:
                        values.update(attempts=0, error=None)
                    conn.execute(
                        update(_T).where(_T.c.id == bindparam("b_id")).values(**values),
                        [{k: v for k, v in u.items() if k != "b_reset"} for u in batch],
                    )
                changed += len(inserts) + len(updates)
        return changed

    def pending_paths(self) -> list[str]:
        """Paths waiting to be classified, in path order."""
        with self._read() as s:
            return list(s.scalars(
                select(_T.c.path).where(_T.c.status == "pending").order_by(_T.c.path)
            ))

    def failures(self, max_attempts: int | None = None) -> list[Failure]:
        """Tracks whose last attempt failed (status failed; with ``max_attempts``, only those
        with fewer attempts, i.e. still to be retried), oldest attempt first."""
        stmt = (
            select(_T.c.path, _T.c.status, _T.c.error, _T.c.attempts, _T.c.last_scanned,
                   _T.c.failure_kind)
            .where(_T.c.status == "failed")
            .order_by(_T.c.last_scanned, _T.c.path)
        )
        if max_attempts is not None:
            stmt = stmt.where(_T.c.attempts < max_attempts)
        with self._read() as s:
            return [
                Failure(r.path, r.status, r.error, r.attempts, _utc(r.last_scanned),
                        FailureKind(r.failure_kind) if r.failure_kind else None)
                for r in s.execute(stmt)
            ]

    def file_states(
        self, paths: Iterable[str]
    ) -> dict[str, tuple[int | None, int | None, str]]:
        """:meth:`known_files` for the given paths only (those not catalogued are left out)."""
        paths = list(dict.fromkeys(paths))
        out: dict[str, tuple[int | None, int | None, str]] = {}
        with self._read() as s:
            for chunk in _chunks(paths):
                for path, size, mtime, status in s.execute(
                    select(_T.c.path, _T.c.size, _T.c.mtime_ns, _T.c.status)
                    .where(_T.c.path.in_(chunk))
                ):
                    out[path] = (size, mtime, status)
        return out

    def requeue_stale(self, sha256: str, vocabulary: Sequence[str]) -> int:
        """Done tracks whose newest prediction was made by other weights (``sha256``) or over
        another genre vocabulary become pending again, to be classified and tagged anew; no
        other row is touched. Returns how many."""
        vocab = _dump_list(tuple(vocabulary))
        p2 = _P.alias("p2")
        newest = (
            select(p2.c.id).where(p2.c.track_id == _T.c.id)
            .order_by(p2.c.created.desc(), p2.c.id.desc()).limit(1)
            .correlate(_T).scalar_subquery()
        )
        stmt = (
            select(_T.c.id)
            .select_from(_T.join(_P, _P.c.track_id == _T.c.id).join(_M, _M.c.id == _P.c.model_id))
            .where(_T.c.status == "done", _P.c.id == newest,
                   sa.or_(_M.c.sha256 != sha256, _M.c.vocabulary != vocab))
        )
        now = _now()
        n = 0
        with self._write("requeue tracks classified by another model") as s:
            ids = list(s.scalars(stmt))
            for chunk in _chunks(ids):
                n += s.execute(
                    update(_T).where(_T.c.id.in_(chunk), _T.c.status == "done")
                    .values(status="pending", updated_at=now)
                ).rowcount
        return n

    # -- results -------------------------------------------------------------------------------

    def record_result(
        self,
        result: TrackResult,
        *,
        size: int | None,
        mtime_ns: int | None,
        content_id: str | None = None,
        format: str | None = None,
        not_written: NotWritten | None = None,
    ) -> None:
        """Store a classification: the track becomes done (error and attempts cleared), the
        model row is added or updated from ``result.model``, and the prediction replaces this
        model's previous one for the track. A failed result (``result.error``) is passed to
        :meth:`record_failure`. ``content_id``/``format`` None keep the stored values;
        ``not_written`` says why the genre was not written into the file (None: it was)."""
        if not result.ok:
            self.record_failure(
                result.path, result.error or "unknown error", size=size, mtime_ns=mtime_ns,
                format=format, content_id=content_id,
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
                dict(segment_index=i, start_s=float(seg.start_s), genre=seg.genre,
                     scores=_dump_scores(seg.genre_scores or None))
                for i, seg in enumerate(result.segments)
            ]
        else:
            segments = [
                dict(segment_index=i, start_s=None, genre=genre, scores=None)
                for i, genre in enumerate(vote.segment_winners)
            ]
        with self._write(f"record the result of {result.path}") as s:
            tid = self._upsert_track(
                s, result.path, now, status="done", size=size, mtime_ns=mtime_ns,
                content_id=content_id, format=format, duration_s=result.duration_s,
                last_scanned=now,
            )
            s.execute(update(_T).where(_T.c.id == tid).values(
                error=None, attempts=0, failure_kind=None,
                not_written=not_written.value if not_written else None))
            mid = self._model_id(s, result.model, now)
            s.execute(delete(_P).where(_P.c.track_id == tid, _P.c.model_id == mid))
            pid = s.execute(insert(_P).values(
                track_id=tid, model_id=mid, genre=vote.genre, confidence=float(vote.confidence),
                votes=winner.votes if winner else 0,
                segment_count=len(vote.segment_winners) or len(result.segments),
                tie=bool(vote.tie), tied_genres=",".join(vote.tied) if vote.tie else None,
                descriptors=_dump_scores(result.descriptors), created=now,
            )).inserted_primary_key[0]
            conn = s.connection()
            if vote.candidates:
                conn.execute(insert(_C), [
                    dict(prediction_id=pid, place=i, genre=c.genre, votes=int(c.votes),
                         mean_score=float(c.mean_score))
                    for i, c in enumerate(vote.candidates, start=1)
                ])
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
                s, path, now, status=status, error=_error_text(path, error), size=size,
                mtime_ns=mtime_ns, format=format, content_id=content_id, last_scanned=now,
                attempts=_T.c.attempts + 1 if status == "failed" else None,
            )
            s.execute(update(_T).where(_T.c.path == path).values(
                failure_kind=FailureKind(kind).value if status == "failed" else None))

    def mark_missing(self, paths: Iterable[str]) -> int:
        """Files no longer on disk: status missing, everything else kept (a later :meth:`move`
        or :meth:`mark_found` brings them back). Returns how many changed."""
        paths = list(dict.fromkeys(paths))
        n = 0
        now = _now()
        with self._write("mark files missing") as s:
            for chunk in _chunks(paths):
                n += s.execute(
                    update(_T)
                    .where(_T.c.path.in_(chunk), _T.c.status != "missing")
                    .values(status="missing", updated_at=now)
                ).rowcount
        return n

    def mark_found(self, paths: Iterable[str]) -> int:
        """Missing files that are back unchanged: status done when they have a prediction, else
        pending. Returns how many changed."""
        paths = list(dict.fromkeys(paths))
        n = 0
        now = _now()
        has_prediction = sa.exists().where(_P.c.track_id == _T.c.id)
        with self._write("mark files found") as s:
            for chunk in _chunks(paths):
                n += s.execute(
                    update(_T)
                    .where(_T.c.path.in_(chunk), _T.c.status == "missing")
                    .values(
                        status=sa.case((has_prediction, "done"), else_="pending"),
                        updated_at=now,
                    )
                ).rowcount
        return n

    def update_stat(self, path: str, size: int | None, mtime_ns: int | None) -> bool:
        """Store a file's new size and mtime (after tagger wrote its tags, so the next scan
        does not see a change). False if the path is not catalogued."""
        with self._write(f"update the stat of {path}") as s:
            return bool(s.execute(
                update(_T).where(_T.c.path == path)
                .values(size=size, mtime_ns=mtime_ns, updated_at=_now())
            ).rowcount)

    # -- moves -----------------------------------------------------------------------------------

    def find_by_content_id(self, content_id: str) -> list[str]:
        """Paths of the tracks with this content id: missing ones first (the likely origin of a
        move), then by path."""
        with self._read() as s:
            return list(s.scalars(
                select(_T.c.path).where(_T.c.content_id == content_id)
                .order_by(sa.case((_T.c.status == "missing", 0), else_=1), _T.c.path)
            ))

    def move(
        self, old_path: str, new_path: str, *, size: int | None = None,
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
                path=new_path, folder=_folder(new_path), updated_at=now,
                status=sa.case(
                    (_T.c.status != "missing", _T.c.status),
                    (has_prediction, "done"),
                    else_="pending",
                ),
            )
            if size is not None:
                values["size"] = size
            if mtime_ns is not None:
                values["mtime_ns"] = mtime_ns
            s.execute(update(_T).where(_T.c.id == tid).values(**values))
            s.execute(update(_W).where(_W.c.track_id == tid).values(path=new_path))
            return True

    @staticmethod
    def _adopt_history(conn, from_id: int, to_id: int) -> None:
        """The tag history of a row about to be replaced goes to the row replacing it: the
        user's original values stay revertible at that path (the journal is append-only)."""
        conn.execute(update(_W).where(_W.c.track_id == from_id).values(track_id=to_id))

    def move_prefix(self, old_dir: str, new_dir: str) -> int:
        """A directory was renamed: every track below ``old_dir`` moves below ``new_dir`` (see
        :meth:`move`; statuses are kept). Returns how many tracks moved."""
        old_prefix, new_prefix = _dir_prefix(old_dir), _dir_prefix(new_dir)
        if old_prefix == new_prefix:
            return 0
        now = _now()
        with self._write(f"move {old_dir}") as s:
            conn = s.connection()
            rows = conn.execute(
                select(_T.c.id, _T.c.path).where(_under(_T.c.path, [old_prefix]))
            ).fetchall()
            if not rows:
                return 0
            moves = [(r.id, new_prefix + r.path[len(old_prefix):]) for r in rows]
            moving_ids = {tid for tid, _ in moves}
            targets = [p for _, p in moves]
            clash: set[str] = set()
            for chunk in _chunks(targets):
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
                update(_T).where(_T.c.id == bindparam("b_id"))
                .values(path=bindparam("b_path"), folder=bindparam("b_folder"), updated_at=now)
            )
            if clash:
                conn.execute(stmt, [
                    dict(b_id=tid, b_path=f"<moving>{tid}", b_folder="")  # never an absolute path
                    for tid, _ in moves
                ])
            conn.execute(stmt, [dict(b_id=tid, b_path=p, b_folder=_folder(p)) for tid, p in moves])
            conn.execute(
                update(_W).where(_W.c.track_id == bindparam("b_id"))
                .values(path=bindparam("b_path")),
                [dict(b_id=tid, b_path=p) for tid, p in moves],
            )
            return len(moves)

    # -- tag writes ----------------------------------------------------------------------------

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
                ids.append(s.execute(insert(_W).values(
                    track_id=tid, path=path, field=str(change.field),
                    old_value=_dump_list(change.old), new_value=_dump_list(change.new),
                    written_at=now,
                )).inserted_primary_key[0])
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
        stmt = select(_W).order_by(_W.c.path, _W.c.written_at, _W.c.id)
        if not include_reverted:
            stmt = stmt.where(_W.c.reverted_at.is_(None))
        conds = []
        path_list = list(paths) if paths is not None else None
        if under is not None:
            conds.append(_under(_W.c.path, list(under)))
        rows: list[Any] = []
        with self._read() as s:
            conn = s.connection()
            if path_list is None:
                if conds:
                    stmt = stmt.where(*conds)
                rows = conn.execute(stmt).fetchall()
            else:
                seen: set[int] = set()
                for chunk in _chunks(path_list) if path_list else [[]]:
                    for row in conn.execute(stmt.where(sa.or_(_W.c.path.in_(chunk), *conds))):
                        if row.id not in seen:
                            seen.add(row.id)
                            rows.append(row)
                rows.sort(key=lambda r: (r.path, r.written_at, r.id))
        return [_tag_write_record(r) for r in rows]

    def mark_reverted(self, ids: Iterable[int]) -> int:
        """Note that these tag changes were undone in the files. Returns how many changed."""
        ids = list(dict.fromkeys(int(i) for i in ids))
        now = _now()
        n = 0
        with self._write("mark tag changes reverted") as s:
            for chunk in _chunks(ids):
                n += s.execute(
                    update(_W).where(_W.c.id.in_(chunk), _W.c.reverted_at.is_(None))
                    .values(reverted_at=now)
                ).rowcount
        return n

    # -- reports ---------------------------------------------------------------------------------

    def track(self, path: str) -> TrackRecord | None:
        """Everything known about one file (for ``tagger show``), or None."""
        stmt = (
            select(Track).where(Track.path == path)
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
            return TrackRecord(
                id=t.id, path=t.path, folder=t.folder, size=t.size, mtime_ns=t.mtime_ns,
                content_id=t.content_id, format=t.format, duration_s=t.duration_s,
                status=t.status, error=t.error, attempts=t.attempts,
                first_seen=_utc(t.first_seen), updated_at=_utc(t.updated_at),
                last_scanned=_utc(t.last_scanned),
                predictions=tuple(_prediction_record(p) for p in t.predictions),
                tag_writes=tuple(_tag_write_record(w) for w in t.tag_writes),
                failure_kind=FailureKind(t.failure_kind) if t.failure_kind else None,
                not_written=NotWritten(t.not_written) if t.not_written else None,
            )

    def review(self, *, low: float | None = None, ties: bool = False, failed: bool = False,
               disagree: bool = False, below_threshold: bool = False,
               under: Iterable[str] | None = None) -> list[ReviewRow]:
        """The review queues, by path: tracks under ``low`` confidence, ties, failed files,
        tracks whose own genre was kept although the model disagrees, tracks whose genre was
        not written for being under ``tags.min_confidence``. Several queues: their union;
        none: all of them (``low`` then unset)."""
        tg = _TRACK_GENRES
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
            conds = [tg.c.tie == sa.true(), _T.c.status == "failed",
                     _T.c.not_written.in_([NotWritten.KEPT_USER_GENRE.value,
                                           NotWritten.BELOW_THRESHOLD.value])]
        stmt = (
            select(_T.c.path, _T.c.status, tg.c.genre, tg.c.confidence, tg.c.tie,
                   tg.c.tied_genres, _T.c.not_written, _T.c.error, _T.c.failure_kind)
            .select_from(_T.outerjoin(tg, tg.c.path == _T.c.path))
            .where(sa.or_(*conds), _T.c.status != "missing")
            .order_by(_T.c.path)
        )
        if under is not None:
            stmt = stmt.where(_under(_T.c.path, list(under)))
        with self._read() as s:
            return [
                ReviewRow(r.path, r.status, r.genre,
                          float(r.confidence) if r.confidence is not None else None,
                          bool(r.tie), r.tied_genres,
                          NotWritten(r.not_written) if r.not_written else None, r.error,
                          FailureKind(r.failure_kind) if r.failure_kind else None)
                for r in s.execute(stmt)
            ]

    def missing_since(self, cutoff: dt.datetime) -> list[str]:
        """Paths of the tracks missing (status missing) since before ``cutoff``."""
        with self._read() as s:
            return list(s.scalars(
                select(_T.c.path).where(_T.c.status == "missing", _T.c.updated_at < cutoff)
                .order_by(_T.c.path)
            ))

    def forget(self, paths: Iterable[str]) -> int:
        """Delete the tracks (their predictions and tag history go with them: export the
        history first, see ``tagger prune``). Only missing tracks are deleted."""
        paths = list(dict.fromkeys(paths))
        n = 0
        with self._write("forget missing tracks") as s:
            for chunk in _chunks(paths):
                n += s.execute(
                    delete(_T).where(_T.c.path.in_(chunk), _T.c.status == "missing")
                ).rowcount
        return n

    def stats(self) -> Stats:
        """Catalogue-wide figures for ``tagger stats``."""
        with self._read() as s:
            conn = s.connection()
            counts = dict.fromkeys(STATUSES, 0)
            for status, n in conn.execute(select(_T.c.status, func.count()).group_by(_T.c.status)):
                counts[status] = n
            genres = tuple(
                (g, n) for g, n in conn.execute(
                    select(_GENRE_COUNTS.c.genre, _GENRE_COUNTS.c.tracks)
                    .order_by(_GENRE_COUNTS.c.tracks.desc(), _GENRE_COUNTS.c.genre)
                )
            )
            confidences: list[float] = []
            ties = 0
            for conf, tie in conn.execute(
                select(_TRACK_GENRES.c.confidence, _TRACK_GENRES.c.tie)
            ):
                confidences.append(float(conf))
                ties += bool(tie)
            n_failed = func.count().label("n")
            failures = tuple(
                (status, error or "", n) for status, error, n in conn.execute(
                    select(_T.c.status, _T.c.error, n_failed)
                    .where(_T.c.status.in_(("failed", "skipped")))
                    .group_by(_T.c.status, _T.c.error)
                    .order_by(n_failed.desc(), _T.c.status, _T.c.error)
                )
            )
            n_pred = func.count(_P.c.id).label("n")
            models = tuple(
                (name, sha, n) for name, sha, n in conn.execute(
                    select(_M.c.name, _M.c.sha256, n_pred)
                    .select_from(_M.outerjoin(_P, _P.c.model_id == _M.c.id))
                    .group_by(_M.c.id, _M.c.name, _M.c.sha256)
                    .order_by(n_pred.desc(), _M.c.name)
                )
            )
        return Stats(
            total=sum(counts.values()), status_counts=counts, predicted=len(confidences),
            genres=genres, ties=ties, confidence=_spread(confidences), failures=failures,
            models=models,
        )


def open_catalogue(url_or_config: Any, *, backup: bool = True, upgrade: bool = True) -> Catalogue:
    """:class:`Catalogue` for a URL, or for a :class:`tagger.config.Config` (its database_url)."""
    url = getattr(url_or_config, "database_url", url_or_config)
    return Catalogue(url, backup=backup, upgrade=upgrade)


# --------------------------------------------------------------------------------------------
# Row -> record conversion
# --------------------------------------------------------------------------------------------


def _tag_write_record(row: Any) -> TagWriteRecord:
    return TagWriteRecord(
        id=row.id, path=row.path, field=row.field, old=_load_list(row.old_value),
        new=_load_list(row.new_value), written_at=_utc(row.written_at),
        reverted_at=_utc(row.reverted_at),
    )


def _prediction_record(p: Prediction) -> PredictionRecord:
    candidates = tuple(Candidate(c.genre, c.votes, c.mean_score) for c in p.candidates)
    if p.tie and candidates:
        top = candidates[0].votes
        tied = tuple(c.genre for c in candidates if c.votes == top)
    else:
        tied = (p.genre,)
    return PredictionRecord(
        id=p.id,
        model=ModelInfo(
            p.model.name, p.model.sha256, tuple(json.loads(p.model.vocabulary or "[]"))
        ),
        genre=p.genre, confidence=p.confidence, votes=p.votes, segment_count=p.segment_count,
        tie=bool(p.tie), tied=tied,
        descriptors=json.loads(p.descriptors) if p.descriptors else {},
        created=_utc(p.created), candidates=candidates,
        segments=tuple(
            SegmentResult(seg.start_s, seg.genre, {},
                          json.loads(seg.scores) if seg.scores else {})
            for seg in p.segments
        ),
    )


def _spread(values: list[float]) -> ConfidenceSpread | None:
    if not values:
        return None
    values = sorted(values)
    if len(values) > 1:
        q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    else:
        q1 = median = q3 = values[0]
    buckets = [0] * 10
    for v in values:
        buckets[min(max(int(v * 10), 0), 9)] += 1
    return ConfidenceSpread(
        count=len(values), min=values[0], q1=q1, median=median, q3=q3, max=values[-1],
        mean=statistics.fmean(values),
        buckets=tuple((i / 10, (i + 1) / 10, n) for i, n in enumerate(buckets)),
    )
