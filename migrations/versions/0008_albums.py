"""albums: each track's album identity, and the album decisions of tags.scope = "album"

Revision ID: 0008_albums
Revises: 0007_layout
Create Date: 2026-12-07

- ``tracks`` gains ``album_key`` (indexed: the album's members are found by it; see
  tagger.library.albums: ``mbid:<id>``, ``tags:["<album artist>", "<album>"]`` or
  ``folder:<folder>``), ``album_artist``, ``mb_album_id`` and ``compilation`` (the file's own
  compilation flag), as the file's tags said at its last scan. NULL until a scan reads them.
- ``albums``: one row per album decided in album scope: how it was identified, the genre
  pooled over all its tracks' segments (confidence, tie, tied genres, segments), its members,
  those that voted and those whose own vote agrees, whether it is a compilation and why its
  tracks keep their own decisions (``per_track``), why its genre was not written
  (``not_written``) and how many of its tracks hold it (``written``).
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0008_albums"
down_revision: Union[str, Sequence[str], None] = "0007_layout"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

IDENTITIES = ("mbid", "tags", "folder")
PER_TRACK = ("various_artists", "compilation_tag", "votes_disagree")


def _one_of(column: str, values: Sequence[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    for name in ("album_key", "album_artist", "mb_album_id"):
        op.add_column("tracks", sa.Column(name, sa.Text(), nullable=True))
    op.add_column("tracks", sa.Column("compilation", sa.Boolean(), nullable=True))
    op.create_index(op.f("ix_tracks_album_key"), "tracks", ["album_key"])

    op.create_table(
        "albums",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("album_key", sa.Text(), nullable=False),
        sa.Column("identified_by", sa.String(length=8), nullable=False),
        sa.Column("album", sa.Text(), nullable=True),
        sa.Column("album_artist", sa.Text(), nullable=True),
        sa.Column("folder", sa.Text(), nullable=True),
        sa.Column("model_sha256", sa.String(length=64), nullable=True),
        sa.Column("genre", sa.String(length=200), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("tie", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("tied_genres", sa.Text(), nullable=True),
        sa.Column("segment_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("members", sa.Integer(), server_default="0", nullable=False),
        sa.Column("voters", sa.Integer(), server_default="0", nullable=False),
        sa.Column("agreeing", sa.Integer(), server_default="0", nullable=False),
        sa.Column("compilation", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("per_track", sa.String(length=16), nullable=True),
        sa.Column("not_written", sa.String(length=24), nullable=True),
        sa.Column("written", sa.Integer(), server_default="0", nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_albums")),
        sa.UniqueConstraint("album_key", name=op.f("uq_albums_album_key")),
        sa.CheckConstraint(_one_of("identified_by", IDENTITIES),
                           name=op.f("ck_albums_identified_by")),
        sa.CheckConstraint(_one_of("per_track", PER_TRACK), name=op.f("ck_albums_per_track")),
    )


def downgrade() -> None:
    op.drop_table("albums")
    op.drop_index(op.f("ix_tracks_album_key"), table_name="tracks")
    with op.batch_alter_table("tracks") as batch:
        for name in ("compilation", "mb_album_id", "album_artist", "album_key"):
            batch.drop_column(name)
