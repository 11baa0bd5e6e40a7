"""catalogue tables: tracks, models, predictions (+ candidates, segments), tag_writes

Revision ID: 0001
Revises:
Create Date: 2025-01-01

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

STATUSES = ("pending", "done", "failed", "skipped", "missing")


def _stamp(nullable: bool = False) -> dict:
    return {"type_": sa.DateTime(timezone=True), "nullable": nullable}


def upgrade() -> None:
    op.create_table(
        "tracks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("folder", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=True),
        sa.Column("content_id", sa.String(length=128), nullable=True),
        sa.Column("format", sa.String(length=16), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("first_seen", **_stamp()),
        sa.Column("updated_at", **_stamp()),
        sa.Column("last_scanned", **_stamp(nullable=True)),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracks")),
        sa.UniqueConstraint("path", name=op.f("uq_tracks_path")),
        sa.CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")",
            name=op.f("ck_tracks_status"),
        ),
    )
    op.create_index(op.f("ix_tracks_content_id"), "tracks", ["content_id"])
    op.create_index(op.f("ix_tracks_status"), "tracks", ["status"])

    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("vocabulary", sa.Text(), server_default="[]", nullable=False),
        sa.Column("created", **_stamp()),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("sha256", name=op.f("uq_models_sha256")),
    )

    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("genre", sa.String(length=200), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("votes", sa.Integer(), nullable=False),
        sa.Column("segment_count", sa.Integer(), nullable=False),
        sa.Column("tie", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("tied_genres", sa.Text(), nullable=True),
        sa.Column("descriptors", sa.Text(), nullable=True),
        sa.Column("created", **_stamp()),
        sa.ForeignKeyConstraint(
            ["track_id"], ["tracks.id"], name=op.f("fk_predictions_track_id_tracks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_predictions_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predictions")),
        sa.UniqueConstraint(
            "track_id", "model_id", name=op.f("uq_predictions_track_id_model_id")
        ),
    )
    op.create_index(op.f("ix_predictions_model_id"), "predictions", ["model_id"])

    op.create_table(
        "prediction_candidates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prediction_id", sa.Integer(), nullable=False),
        sa.Column("place", sa.Integer(), nullable=False),
        sa.Column("genre", sa.String(length=200), nullable=False),
        sa.Column("votes", sa.Integer(), nullable=False),
        sa.Column("mean_score", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["prediction_id"], ["predictions.id"],
            name=op.f("fk_prediction_candidates_prediction_id_predictions"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prediction_candidates")),
    )
    op.create_index(
        op.f("ix_prediction_candidates_prediction_id"), "prediction_candidates", ["prediction_id"]
    )

    op.create_table(
        "prediction_segments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prediction_id", sa.Integer(), nullable=False),
        sa.Column("segment_index", sa.Integer(), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=True),
        sa.Column("genre", sa.String(length=200), nullable=False),
        sa.Column("scores", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["prediction_id"], ["predictions.id"],
            name=op.f("fk_prediction_segments_prediction_id_predictions"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prediction_segments")),
    )
    op.create_index(
        op.f("ix_prediction_segments_prediction_id"), "prediction_segments", ["prediction_id"]
    )

    op.create_table(
        "tag_writes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("written_at", **_stamp()),
        sa.Column("reverted_at", **_stamp(nullable=True)),
        sa.ForeignKeyConstraint(
            ["track_id"], ["tracks.id"], name=op.f("fk_tag_writes_track_id_tracks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tag_writes")),
    )
    op.create_index(op.f("ix_tag_writes_track_id"), "tag_writes", ["track_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_tag_writes_track_id"), table_name="tag_writes")
    op.drop_table("tag_writes")
    op.drop_index(op.f("ix_prediction_segments_prediction_id"), table_name="prediction_segments")
    op.drop_table("prediction_segments")
    op.drop_index(
        op.f("ix_prediction_candidates_prediction_id"), table_name="prediction_candidates"
    )
    op.drop_table("prediction_candidates")
    op.drop_index(op.f("ix_predictions_model_id"), table_name="predictions")
    op.drop_table("predictions")
    op.drop_table("models")
    op.drop_index(op.f("ix_tracks_status"), table_name="tracks")
    op.drop_index(op.f("ix_tracks_content_id"), table_name="tracks")
    op.drop_table("tracks")
