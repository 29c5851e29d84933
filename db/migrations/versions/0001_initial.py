"""Initial store schema: films, frames, model versions, predictions, corrections, training jobs.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    # films <-> model_versions reference each other. SQLite accepts a forward reference in CREATE TABLE
    # (and cannot ALTER one in later); elsewhere the films -> model_versions key is added at the end.
    active_fk = [sa.ForeignKeyConstraint(["active_model_version_id"], ["model_versions.id"], name="fk_films_active_model_version")] if sqlite else []
    op.create_table(
        "films",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("source_path", sa.Text, nullable=False),
        sa.Column("source_sha", sa.String(64), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("bit_depth", sa.Integer, nullable=False),
        sa.Column("channels", sa.Integer, nullable=False),
        sa.Column("frame_count", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("active_model_version_id", sa.Integer, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("storage_dir", sa.String(255), nullable=False),
        *active_fk,
    )
    op.create_index("ix_films_source_sha", "films", ["source_sha"])
    op.create_table(
        "frames",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("film_id", sa.Integer, sa.ForeignKey("films.id", ondelete="CASCADE"), nullable=False),
        sa.Column("index", sa.Integer, nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("prev_index", sa.Integer, nullable=False),
        sa.Column("next_index", sa.Integer, nullable=False),
        sa.Column("neighbour_flag", sa.Boolean, nullable=False),
        sa.Column("is_duplicate", sa.Boolean, nullable=False),
        sa.Column("shot", sa.Integer, nullable=False),
        sa.Column("is_validation", sa.Boolean, nullable=False),
        sa.Column("uncertainty", sa.Float, nullable=True),
        sa.Column("last_served_at", TS, nullable=True),
        sa.Column("reviewed_at", TS, nullable=True),
        sa.Column("source_name", sa.Text, nullable=False),
        sa.UniqueConstraint("film_id", "index", name="uq_frames_film_index"),
    )
    op.create_index("ix_frames_film_id", "frames", ["film_id"])
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("film_id", sa.Integer, sa.ForeignKey("films.id", ondelete="CASCADE"), nullable=True),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("model_versions.id"), nullable=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("arch", sa.String(64), nullable=False),
        sa.Column("encoder", sa.String(128), nullable=True),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_index("ix_model_versions_film_id", "model_versions", ["film_id"])
    if not sqlite:
        op.create_foreign_key("fk_films_active_model_version", "films", "model_versions", ["active_model_version_id"], ["id"])
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("frame_id", sa.Integer, sa.ForeignKey("frames.id", ondelete="CASCADE"), nullable=False),
        sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("defect_pixels", sa.Integer, nullable=False),
        sa.Column("uncertainty", sa.Float, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("frame_id", "model_version_id", name="uq_predictions_frame_version"),
    )
    op.create_index("ix_predictions_frame_id", "predictions", ["frame_id"])
    op.create_index("ix_predictions_model_version_id", "predictions", ["model_version_id"])
    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("frame_id", sa.Integer, sa.ForeignKey("frames.id", ondelete="CASCADE"), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("corrections.id"), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("prediction_id", sa.Integer, sa.ForeignKey("predictions.id", ondelete="SET NULL"), nullable=True),
        sa.Column("dice_vs_prediction", sa.Float, nullable=True),
        sa.Column("defect_pixels", sa.Integer, nullable=False),
    )
    op.create_index("ix_corrections_frame_id", "corrections", ["frame_id"])
    op.create_table(
        "training_jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("film_id", sa.Integer, sa.ForeignKey("films.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("force_publish", sa.Boolean, nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("worker_id", sa.String(255), nullable=True),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("total_steps", sa.Integer, nullable=False),
        sa.Column("loss", sa.Float, nullable=True),
        sa.Column("val_f1", sa.Float, nullable=True),
        sa.Column("eta_seconds", sa.Float, nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("result_model_version_id", sa.Integer, sa.ForeignKey("model_versions.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("heartbeat_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
    )
    op.create_index("ix_training_jobs_film_id", "training_jobs", ["film_id"])
    op.create_index("ix_training_jobs_status", "training_jobs", ["status"])


def downgrade() -> None:
    for table in ("training_jobs", "corrections", "predictions"):
        op.drop_table(table)
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("fk_films_active_model_version", "films", type_="foreignkey")
    for table in ("model_versions", "frames", "films"):
        op.drop_table(table)
