"""Alembic environment for the tagger catalogue.

tagger runs migrations programmatically (tagger.library.catalogue.upgrade / Catalogue(url)): it
passes an open connection in ``config.attributes["connection"]``; no alembic.ini is needed. For
the alembic command line from a source checkout (with ``[tool.alembic] script_location =
"%(here)s/migrations"`` in pyproject.toml), give the database URL with ``-x``::

    alembic -x url=sqlite:////tmp/catalogue.sqlite upgrade head
    alembic -x url=sqlite:////tmp/catalogue.sqlite revision --autogenerate -m "add x"
    alembic -x url=postgresql://user@host/db upgrade head --sql    # offline: print the SQL

SQLite: tables are altered in batch mode (copy and rename); tagger's migration connections run
with foreign keys OFF, so recreating a table does not cascade-delete its children, and with
legacy_alter_table ON, so the rename does not trip over the views that reference it.
"""

from __future__ import annotations

from alembic import context

from tagger.library.catalogue import Base, make_engine, parse_url

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("no database URL: pass -x url=... or set sqlalchemy.url")
    return url


def _configure(**kwargs) -> None:
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(parse_url(_url()), migrating=True)
    try:
        with engine.connect() as connection:
            _configure(connection=connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
