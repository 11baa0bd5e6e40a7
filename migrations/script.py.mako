"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Write migrations by hand or with ``alembic revision --autogenerate`` (target_metadata is
tagger.library.catalogue.Base.metadata) and then review them: keep the SQL portable (SQLite and
PostgreSQL), name every constraint (see tagger.library.catalogue.NAMING_CONVENTION), alter SQLite tables
with ``op.batch_alter_table`` and give every upgrade a working downgrade. Mirror each change in
the ORM classes of tagger/catalogue.py; tests/test_catalogue.py checks the two agree.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
${imports if imports else ""}

# revision identifiers, used by Alembic.
revision: str = ${repr(up_revision)}
down_revision: Union[str, Sequence[str], None] = ${repr(down_revision)}
branch_labels: Union[str, Sequence[str], None] = ${repr(branch_labels)}
depends_on: Union[str, Sequence[str], None] = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
