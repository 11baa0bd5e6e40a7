"""learning from the library: the file's own tags, corrections, adopted models, calibrations

Revision ID: 0005_learning
Revises: 0004_journal
Create Date: 2026-12-01

- ``tracks`` gains ``artist``, ``album``, ``file_genres`` (JSON list: the normalised genres in
  the file at its last scan) and ``user_genres`` (JSON list: those the user set, i.e. not
  written by tagger per the journal; NULL when none).
- ``corrections``: what the user said a track's genre is (``tagger set-genre``, the review
  page); append-only. An ``undo`` row sets ``undone_at`` on the correction it cancels;
  ``tag_write_ids`` (JSON list) names the ``tag_writes`` rows the correction made, which an
  undo restores.
- ``adoptions``: the trained models made the library's model (``retired_at`` NULL: current).
- ``calibrations``: confidence maps per model (newest row per ``model_sha256`` wins).
- view ``genre_check``: "my genre vs the prediction" for every predicted track.

The view is the one dialect-specific piece: the first element of a JSON list is
``json_extract(x, '$[0]')`` on SQLite, ``x::json ->> 0`` on PostgreSQL.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0005_learning"
down_revision: Union[str, Sequence[str], None] = "0004_journal"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

ACTIONS = ("set_genre", "accept", "not_music", "undo")
SOURCES = ("cli", "review")
METHODS = ("isotonic", "temperature")

GENRE_CHECK = """
CREATE VIEW genre_check AS
SELECT t.path AS path,
       t.artist AS artist,
       t.album AS album,
       CASE WHEN c.id IS NOT NULL THEN c.genre ELSE {first_user_genre} END AS user_genre,
       CASE WHEN c.id IS NULL AND t.user_genres IS NOT NULL THEN 'tag'
            WHEN c.action = 'not_music' THEN 'not_music'
            WHEN c.id IS NOT NULL THEN 'correction' END AS label_source,
       g.genre AS predicted,
       g.confidence AS confidence,
       g.model AS model,
       CASE WHEN (CASE WHEN c.id IS NOT NULL THEN c.genre ELSE {first_user_genre} END) IS NULL
            THEN NULL
            WHEN lower(CASE WHEN c.id IS NOT NULL THEN c.genre ELSE {first_user_genre} END)
                 = lower(g.genre) THEN 1
            ELSE 0 END AS agrees
FROM tracks t
JOIN track_genres g ON g.path = t.path
LEFT JOIN corrections c ON c.id = (
    SELECT c2.id
    FROM corrections c2
    WHERE c2.track_id = t.id AND c2.action <> 'undo' AND c2.undone_at IS NULL
    ORDER BY c2.id DESC
    LIMIT 1
)
"""


def _first_user_genre() -> str:
    if op.get_bind().dialect.name == "postgresql":
        return "(t.user_genres::json ->> 0)"
    return "json_extract(t.user_genres, '$[0]')"


def _stamp(nullable: bool = False) -> dict:
    return {"type_": sa.DateTime(timezone=True), "nullable": nullable}


def _one_of(column: str, values: Sequence[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    for name in ("artist", "album", "file_genres", "user_genres"):
        op.add_column("tracks", sa.Column(name, sa.Text(), nullable=True))

    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("track_id", sa.Integer(), nullable=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("genre", sa.String(length=200), nullable=True),
        sa.Column("previous", sa.Text(), server_default="[]", nullable=False),
        sa.Column("predicted_genre", sa.String(length=200), nullable=True),
        sa.Column("predicted_confidence", sa.Float(), nullable=True),
        sa.Column("model_sha256", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", **_stamp()),
        sa.Column("undone_at", **_stamp(nullable=True)),
        sa.Column("tag_write_ids", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_corrections")),
        sa.ForeignKeyConstraint(
            ["track_id"], ["tracks.id"], name=op.f("fk_corrections_track_id_tracks"),
            ondelete="SET NULL",
        ),
        sa.CheckConstraint(_one_of("action", ACTIONS), name=op.f("ck_corrections_action")),
        sa.CheckConstraint(_one_of("source", SOURCES), name=op.f("ck_corrections_source")),
    )
    op.create_index(op.f("ix_corrections_track_id"), "corrections", ["track_id"])
    op.create_index(op.f("ix_corrections_path"), "corrections", ["path"])

    op.create_table(
        "adoptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("bundle_path", sa.Text(), nullable=False),
        sa.Column("labels", sa.Text(), server_default="[]", nullable=False),
        sa.Column("figures", sa.Text(), server_default="{}", nullable=False),
        sa.Column("adopted_at", **_stamp()),
        sa.Column("retired_at", **_stamp(nullable=True)),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adoptions")),
    )

    op.create_table(
        "calibrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_sha256", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("parameters", sa.Text(), server_default="{}", nullable=False),
        sa.Column("ece_before", sa.Float(), nullable=True),
        sa.Column("ece_after", sa.Float(), nullable=True),
        sa.Column("tracks", sa.Integer(), nullable=True),
        sa.Column("target_precision", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("precision", sa.Float(), nullable=True),
        sa.Column("coverage", sa.Float(), nullable=True),
        sa.Column("created_at", **_stamp()),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calibrations")),
        sa.CheckConstraint(_one_of("method", METHODS), name=op.f("ck_calibrations_method")),
    )
    op.create_index(op.f("ix_calibrations_model_sha256"), "calibrations", ["model_sha256"])

    op.execute(GENRE_CHECK.format(first_user_genre=_first_user_genre()))


def downgrade() -> None:
    op.execute("DROP VIEW genre_check")
    op.drop_index(op.f("ix_calibrations_model_sha256"), table_name="calibrations")
    op.drop_table("calibrations")
    op.drop_table("adoptions")
    op.drop_index(op.f("ix_corrections_path"), table_name="corrections")
    op.drop_index(op.f("ix_corrections_track_id"), table_name="corrections")
    op.drop_table("corrections")
    with op.batch_alter_table("tracks") as batch:
        for name in ("user_genres", "file_genres", "album", "artist"):
            batch.drop_column(name)
