"""tracks.failure_kind and tracks.not_written: why a file failed, why a genre was not written

Revision ID: 0003_reasons
Revises: 0002
Create Date: 2026-12-01

Both columns hold enum values (tagger.results.FailureKind / NotWritten), never parsed from
messages by tagger. Existing failed rows get a kind from their stored message, once, here: the
only record older catalogues have.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0003_reasons"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BACKFILL = """
UPDATE tracks SET failure_kind = CASE
    WHEN error LIKE '%worker process died%' THEN 'worker_died'
    WHEN error LIKE '%timed out%' THEN 'timeout'
    WHEN error LIKE '%permission denied%' THEN 'permission'
    WHEN error LIKE 'tag write failed%' THEN 'tag_write'
    WHEN error LIKE 'internal error%' THEN 'internal'
    ELSE 'unreadable' END
WHERE status = 'failed'
"""


def upgrade() -> None:
    op.add_column("tracks", sa.Column("failure_kind", sa.String(length=16), nullable=True))
    op.add_column("tracks", sa.Column("not_written", sa.String(length=24), nullable=True))
    op.create_index(op.f("ix_tracks_not_written"), "tracks", ["not_written"])
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_index(op.f("ix_tracks_not_written"), table_name="tracks")
    with op.batch_alter_table("tracks") as batch:
        batch.drop_column("not_written")
        batch.drop_column("failure_kind")
