"""Opening a catalogue database: URLs, engines with tagger's SQLite settings, the Alembic
migrations (upgrade, downgrade, revisions) and the backup copy made before an upgrade."""

from __future__ import annotations

import datetime as dt
import logging
import re
import sqlite3
import sysconfig
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from tagger.errors import ConfigError, TaggerError, WriteError
from tagger.library.catalogue.schema import (
    BUSY_TIMEOUT_MS,
)
from tagger.library.paths import PRIVATE_DIR_MODE, create_private_file

log = logging.getLogger(__name__)


def safe_url(url: str | URL) -> str:
    """The URL as text with any password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL; mask anything that looks like user:pass@
        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", str(url))


def db_error_reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig) if orig is not None else str(exc)
    return " ".join(text.split("(Background on this error")[0].split()) or type(exc).__name__


def parse_url(url: str | URL) -> URL:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"invalid database URL {safe_url(url)!r}: {db_error_reason(exc)}"
        ) from None
    path = sqlite_path(parsed)
    if path is not None and str(path) != parsed.database:
        parsed = parsed.set(database=str(path))  # "~" expanded
    return parsed


def sqlite_path(url: URL) -> Path | None:
    """The database file of an SQLite URL; None for other databases and in-memory SQLite."""
    if url.get_backend_name() != "sqlite":
        return None
    db = url.database or ""
    if not db or db == ":memory:" or db.startswith("file:") or url.query.get("uri"):
        return None
    return Path(db).expanduser()


def sqlite_file(url: str | URL) -> Path | None:
    """The database file of an SQLite catalogue URL (None for other databases)."""
    return sqlite_path(parse_url(url))


def make_engine(url: URL, *, migrating: bool = False) -> Engine:
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
        raise ConfigError(
            f"cannot use database URL {safe_url(url)!r}: {db_error_reason(exc)}"
        ) from None
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


def alembic_config(connection: Connection | None = None):
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest schema revision this version of tagger knows."""
    from alembic.script import ScriptDirectory

    rev = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if rev is None:  # pragma: no cover - the package ships migrations
        raise ConfigError(f"no migrations in {migrations_dir()}")
    return rev


def _current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def current(url: str | URL) -> str | None:
    """The schema revision of the database at ``url``; None when it has none (or no file yet)."""
    parsed = parse_url(url)
    path = sqlite_path(parsed)
    if path is not None and not path.exists():
        return None
    engine = make_engine(parsed)
    try:
        with engine.connect() as conn:
            return _current_revision(conn)
    except SQLAlchemyError as exc:
        raise WriteError(
            f"cannot open catalogue {safe_url(parsed)}: {db_error_reason(exc)}"
        ) from None
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
    parsed = parse_url(url)
    where = safe_url(parsed)
    path = sqlite_path(parsed)
    if path is not None:
        try:
            path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
            create_private_file(path)  # before SQLite creates it with the umask's mode
        except OSError as exc:
            raise WriteError(f"cannot create catalogue {where}: {exc.strerror or exc}") from None
    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    script = ScriptDirectory.from_config(alembic_config())
    new = head() if revision == "head" else revision
    old = current(parsed)  # a plain read first: opening an up-to-date catalogue takes no lock
    if old == new:
        return old, new
    engine = make_engine(parsed, migrating=True)
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
                f"catalogue {where} has tables but no tagger schema revision; refusing to change it"
            )
        if backup and old is not None and path is not None:
            copy = _backup_sqlite(path, old)
            log.info("catalogue %s backed up to %s before upgrading", where, copy)
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), new)
        if parsed.get_backend_name() == "sqlite":
            with engine.connect() as conn:
                bad = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if bad:
                log.warning(
                    "catalogue %s: %d rows break foreign keys after the upgrade", where, len(bad)
                )
        log.info("catalogue %s upgraded from %s to %s", where, old or "empty", new)
        return old, new
    except TaggerError:
        raise
    except (SQLAlchemyError, CommandError, OSError, sqlite3.Error) as exc:
        raise WriteError(f"cannot upgrade catalogue {where}: {db_error_reason(exc)}") from None
    finally:
        engine.dispose()


upgrade_database = upgrade  # Catalogue.__init__ has a parameter named "upgrade"


def downgrade(url: str | URL, revision: str = "base") -> None:
    """Take the database back to ``revision`` ("base": empty). For development and tests."""
    parsed = parse_url(url)
    from alembic import command
    from alembic.util import CommandError

    engine = make_engine(parsed, migrating=True)
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), revision)
    except (SQLAlchemyError, CommandError) as exc:
        raise WriteError(
            f"cannot downgrade catalogue {safe_url(parsed)}: {db_error_reason(exc)}"
        ) from None
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
