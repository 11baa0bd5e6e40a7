"""indexes for the review queues: predictions by confidence and by recency

Revision ID: 0006_review
Revises: 0005_learning
Create Date: 2026-12-01

``tagger review`` pages its queues by keyset, walking predictions in confidence order (lowest
first) or newest first; without these indexes each page sorts every prediction (bench/
review_pages.py: 100 000 tracks). The track id ends each index: it breaks ties in the order
and is the keyset's second column.
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0006_review"
down_revision: Union[str, Sequence[str], None] = "0005_learning"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_index("ix_predictions_confidence_track_id", "predictions",
                    ["confidence", "track_id"])
    op.create_index("ix_predictions_created_track_id", "predictions", ["created", "track_id"])


def downgrade() -> None:
    op.drop_index("ix_predictions_created_track_id", table_name="predictions")
    op.drop_index("ix_predictions_confidence_track_id", table_name="predictions")
