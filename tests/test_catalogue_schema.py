"""The catalogue's schema on real SQLite files: migrations up and down (and rendered for
PostgreSQL), automatic upgrades with a backup, SQLite settings, and refusing a database of
another schema."""

from __future__ import annotations

import io
import sqlite3

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from helpers.catalogue import (
    CLEAR_ROCK,
    HEAD,
    TABLES,
    VIEWS,
    objects,
    result_for,
    rows,
)

from tagger.config import Config
from tagger.errors import ConfigError, WriteError
from tagger.library import catalogue as cat_mod
from tagger.library.catalogue import Catalogue, current, downgrade, head, open_catalogue, upgrade

# ---------------------------------------------------------------------------------------------
# migrations
# ---------------------------------------------------------------------------------------------


def test_migrations_create_schema_from_empty(url, db_path):
    assert not db_path.parent.exists()
    assert current(url) is None and not db_path.exists()  # current() creates nothing
    assert head() == HEAD
    assert upgrade(url) == (None, HEAD)
    assert db_path.is_file()
    assert current(url) == head()
    assert TABLES | {"alembic_version"} <= objects(db_path, "table")
    assert objects(db_path, "view") == VIEWS
    assert upgrade(url) == (HEAD, HEAD)  # nothing to do
    assert not list(db_path.parent.glob("*.bak-*"))


def test_orm_models_match_migrations(cat):
    with cat.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), cat_mod.Base.metadata)
    assert diff == []


def test_downgrade_base_then_upgrade_again(cat, url, db_path):
    cat.record_result(result_for("/music/a.mp3", CLEAR_ROCK), size=1, mtime_ns=1)
    cat.close()
    downgrade(url, "base")
    assert current(url) is None
    assert objects(db_path, "table") <= {"alembic_version"}
    assert objects(db_path, "view") == set()
    assert upgrade(url, backup=False) == (None, HEAD)
    assert TABLES <= objects(db_path, "table") and objects(db_path, "view") == VIEWS
    downgrade(url, "0001")
    assert current(url) == "0001" and objects(db_path, "view") == set()
    with Catalogue(url) as again:
        assert again.upgraded_from == "0001" and again.revision == HEAD


def test_migrations_render_for_postgresql():
    out = io.StringIO()
    cfg = cat_mod.alembic_config()
    cfg.output_buffer = out
    cfg.set_main_option("sqlalchemy.url", "postgresql://user:secret@localhost/tagger")
    command.upgrade(cfg, "head", sql=True)
    sql = out.getvalue()
    assert "CREATE TABLE tracks" in sql and "BIGINT" in sql and "BOOLEAN" in sql
    assert "CREATE VIEW track_genres" in sql and "CREATE VIEW genre_counts" in sql


def test_automatic_upgrade_backs_up_an_older_database(url, db_path):
    assert upgrade(url, revision="0001") == (None, "0001")
    con = sqlite3.connect(db_path)
    con.execute("INSERT INTO tracks (path, folder, status, attempts, first_seen, updated_at) "
                "VALUES ('/music/old.mp3', '/music', 'pending', 0, '2024-01-01 00:00:00', "
                "'2024-01-01 00:00:00')")
    con.commit()
    con.close()

    with Catalogue(url) as catalogue:
        assert (catalogue.upgraded_from, catalogue.revision) == ("0001", HEAD)
        assert catalogue.known_files() == {"/music/old.mp3": (None, None, "pending")}
    backups = list(db_path.parent.glob("catalogue.sqlite.bak-0001-*"))
    assert len(backups) == 1
    con = sqlite3.connect(backups[0])
    assert con.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)
    assert con.execute("SELECT path FROM tracks").fetchall() == [("/music/old.mp3",)]
    assert con.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'view'").fetchone() == (0,)
    con.close()

    with Catalogue(url) as catalogue:  # up to date: no second backup
        assert catalogue.upgraded_from == HEAD
    assert len(list(db_path.parent.glob("*.bak-*"))) == 1


def test_no_backup_for_a_new_database_or_when_disabled(url, db_path):
    with Catalogue(url) as catalogue:
        assert catalogue.upgraded_from is None
    assert not list(db_path.parent.glob("*.bak-*"))
    downgrade(url, "0001")
    with Catalogue(url, backup=False):
        pass
    assert not list(db_path.parent.glob("*.bak-*"))


def test_upgrade_false_refuses_an_old_database(url):
    upgrade(url, revision="0001")
    with pytest.raises(WriteError, match="0001"):
        Catalogue(url, upgrade=False)
    assert current(url) == "0001"


def test_open_catalogue_from_config(tmp_path):
    config = Config(state_dir=str(tmp_path / "state"))
    with open_catalogue(config) as catalogue:
        assert (tmp_path / "state" / "catalogue.sqlite").is_file()
        assert catalogue.revision == head()


def test_batch_migrations_keep_children_and_views(cat, url):
    """Guard for future migrations: recreating `tracks` in SQLite batch mode must neither
    cascade-delete predictions nor break the views."""
    cat.record_result(result_for("/music/a.mp3", CLEAR_ROCK), size=1, mtime_ns=1)
    engine = cat_mod.make_engine(cat_mod.parse_url(url), migrating=True)
    with engine.begin() as conn:
        ops = Operations(MigrationContext.configure(conn, opts={"render_as_batch": True}))
        with ops.batch_alter_table("tracks", recreate="always") as batch:
            batch.add_column(sa.Column("note", sa.Text(), nullable=True))
    engine.dispose()
    assert [dict(r) for r in rows(cat, "SELECT path, genre FROM track_genres")] == [
        {"path": "/music/a.mp3", "genre": "rock"}]
    assert rows(cat, "SELECT COUNT(*) AS n FROM prediction_segments")[0]["n"] == 4


# ---------------------------------------------------------------------------------------------
# connection settings, errors
# ---------------------------------------------------------------------------------------------


def test_sqlite_pragmas(cat):
    with cat.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000


def test_foreign_keys_are_enforced(cat):
    with pytest.raises(sa.exc.IntegrityError), cat.engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO predictions (track_id, model_id, genre, confidence, votes, "
            "segment_count, tie, created) VALUES (999, 999, 'rock', 1, 1, 1, 0, '2024-01-01')"))


def test_errors_name_the_url_without_password(tmp_path):
    with pytest.raises(ConfigError) as err:
        Catalogue("nosuchdb://user:hunter2@host/db")
    assert "hunter2" not in str(err.value) and "nosuchdb://user:***@host/db" in str(err.value)
    with pytest.raises(ConfigError) as err:
        Catalogue("not a url at all")
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(WriteError) as err:
        Catalogue(f"sqlite:///{blocked}/sub/catalogue.sqlite")
    assert str(blocked) in str(err.value) and "\n" not in str(err.value)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(WriteError, match="garbage.sqlite"):
        Catalogue(f"sqlite:///{garbage}")


@pytest.mark.parametrize(
    ("upgraded", "sql", "refusal"),
    [
        (True, "UPDATE alembic_version SET version_num = '9999'", "9999"),
        (False, "CREATE TABLE something (x)", "no tagger schema revision"),
    ],
    ids=["newer schema", "foreign database"],
)
def test_database_of_another_schema_is_refused(url, db_path, upgraded, sql, refusal):
    if upgraded:
        upgrade(url)
    else:
        db_path.parent.mkdir(parents=True)
    con = sqlite3.connect(db_path)
    con.execute(sql)
    con.commit()
    con.close()
    with pytest.raises(WriteError, match=refusal):
        Catalogue(url)
