"""views for SQL users: track_genres, genre_counts

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-01

Plain, portable SQL (SQLite and PostgreSQL). ``track_genres`` has one row per track that has a
prediction: the newest one (latest ``created``, then highest id), whichever model made it.
A later migration that changes these views must drop and recreate them.
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TRACK_GENRES = """
CREATE VIEW track_genres AS
SELECT t.path AS path,
       p.genre AS genre,
       p.confidence AS confidence,
       p.tie AS tie,
       p.tied_genres AS tied_genres,
       m.name AS model
FROM tracks t
JOIN predictions p ON p.track_id = t.id
JOIN models m ON m.id = p.model_id
WHERE NOT EXISTS (
    SELECT 1
    FROM predictions newer
    WHERE newer.track_id = p.track_id
      AND (newer.created > p.created
           OR (newer.created = p.created AND newer.id > p.id))
)
"""

GENRE_COUNTS = """
CREATE VIEW genre_counts AS
SELECT genre, COUNT(*) AS tracks
FROM track_genres
GROUP BY genre
"""


def upgrade() -> None:
    op.execute(TRACK_GENRES)
    op.execute(GENRE_COUNTS)


def downgrade() -> None:
    op.execute("DROP VIEW genre_counts")
    op.execute("DROP VIEW track_genres")
