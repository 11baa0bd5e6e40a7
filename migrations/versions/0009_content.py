"""content: the content gate's verdict on each track, and the status not_music

Revision ID: 0009_content
Revises: 0008_albums
Create Date: 2026-12-07

- ``tracks`` gains ``content_kind`` (music | speech | animal | other: what the content gate
  heard, tagger.model.content; NULL: the gate did not run) and ``content_scores`` (JSON
  object: the AudioSet group scores the kind came from).
- ``tracks.status`` may be ``not_music``: classified, and not music (the gate said so and the
  user gave no genre, or the user said so with ``tagger set-genre --not-music``): no genre is
  written, and the track is left out of the genre stats and the genre queues.
- view ``genre_counts`` leaves the not-music tracks out.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0009_content"
down_revision: Union[str, Sequence[str], None] = "0008_albums"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

OLD_STATUSES = ("pending", "done", "failed", "skipped", "missing")
STATUSES = OLD_STATUSES + ("not_music",)

GENRE_COUNTS = """
CREATE VIEW genre_counts AS
SELECT g.genre AS genre, COUNT(*) AS tracks
FROM track_genres g
JOIN tracks t ON t.path = g.path
WHERE t.status <> 'not_music'
GROUP BY g.genre
"""

OLD_GENRE_COUNTS = """
CREATE VIEW genre_counts AS
SELECT genre, COUNT(*) AS tracks
FROM track_genres
GROUP BY genre
"""


def _status_check(statuses: Sequence[str]) -> str:
    return "status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")"


def upgrade() -> None:
    op.execute("DROP VIEW genre_counts")
    with op.batch_alter_table("tracks") as batch:
        batch.add_column(sa.Column("content_kind", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("content_scores", sa.Text(), nullable=True))
        batch.drop_constraint(op.f("ck_tracks_status"), type_="check")
        batch.create_check_constraint(op.f("ck_tracks_status"), _status_check(STATUSES))
    op.execute(GENRE_COUNTS)


def downgrade() -> None:
    op.execute("DROP VIEW genre_counts")
    op.execute("UPDATE tracks SET status = 'done' WHERE status = 'not_music'")
    with op.batch_alter_table("tracks") as batch:
        batch.drop_constraint(op.f("ck_tracks_status"), type_="check")
        batch.create_check_constraint(op.f("ck_tracks_status"), _status_check(OLD_STATUSES))
        batch.drop_column("content_scores")
        batch.drop_column("content_kind")
    op.execute(OLD_GENRE_COUNTS)
