"""tag_writes is a journal: a deleted track no longer takes its tag history with it

Revision ID: 0004_journal
Revises: 0003_reasons
Create Date: 2026-12-01

The original values of the user's tags are append-only history: ``tag_writes.track_id``
becomes nullable with ``ON DELETE SET NULL`` (was ``CASCADE``). The row keeps its ``path``, so
``tagger revert PATH`` still finds it; code that replaces a track's row re-points its
history to the surviving row first.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0004_journal"
down_revision: Union[str, Sequence[str], None] = "0003_reasons"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_FK = "fk_tag_writes_track_id_tracks"


def _set_fk(ondelete: str, nullable: bool) -> None:
    with op.batch_alter_table("tag_writes") as batch:
        batch.drop_constraint(_FK, type_="foreignkey")
        batch.alter_column("track_id", existing_type=sa.Integer(), nullable=nullable)
        batch.create_foreign_key(_FK, "tracks", ["track_id"], ["id"], ondelete=ondelete)


def upgrade() -> None:
    _set_fk("SET NULL", nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM tag_writes WHERE track_id IS NULL")  # the old schema cannot hold them
    _set_fk("CASCADE", nullable=False)
