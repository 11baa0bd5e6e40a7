"""tag_writes.old_layout: where the old values sat in the file's tag

Revision ID: 0007_layout
Revises: 0006_review
Create Date: 2026-12-07

``tagger revert`` promises the file back byte for byte, but a field's values alone do not
say where they were: a Vorbis comment's name may be spelled ``Genre`` or ``genre`` and sit
anywhere among the others, and a tag has padding. The tag editor records that with the old
values (a JSON object, its own format's: the comments' places and names, the padding); NULL
for rows written before, which restore the values as they always did.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0007_layout"
down_revision: Union[str, Sequence[str], None] = "0006_review"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("tag_writes", sa.Column("old_layout", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tag_writes") as batch:
        batch.drop_column("old_layout")
