"""Shot-aligned detection chunks that several workers claim (issue 16).

A film's "predict" job becomes the parent of "predict_chunk" rows (`parent_id`), each predicting the
frame indices `first_index`..`last_index`; the parent pins the model version every chunk predicts with
(`model_version_id`). Downgrade refuses while a split detection is queued or running; finished
chunk rows stay, as finished jobs of a kind the older code never claims.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = ("parent_id", "first_index", "last_index", "model_version_id")


def upgrade() -> None:
    # On SQLite the batch form rebuilds training_jobs (the only way to add a foreign key there; nothing else
    # references the table, so dropping its old copy cascades to no other table); ALTERs elsewhere.
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("training_jobs", recreate="always" if sqlite else "auto") as batch:
        batch.add_column(sa.Column("parent_id", sa.Integer, nullable=True))
        batch.add_column(sa.Column("first_index", sa.Integer, nullable=True))
        batch.add_column(sa.Column("last_index", sa.Integer, nullable=True))
        batch.add_column(sa.Column("model_version_id", sa.Integer, nullable=True))
        batch.create_foreign_key("fk_training_jobs_parent", "training_jobs", ["parent_id"], ["id"], ondelete="CASCADE")
        batch.create_foreign_key("fk_training_jobs_model_version", "model_versions", ["model_version_id"], ["id"],
                                 ondelete="SET NULL")
        batch.create_index("ix_training_jobs_parent_id", ["parent_id"])


def downgrade() -> None:
    active = op.get_bind().execute(sa.text(
        "SELECT COUNT(*) FROM training_jobs WHERE parent_id IS NOT NULL AND status IN ('queued', 'running')")).scalar()
    if active:
        raise RuntimeError(f"{active} detection chunk(s) are queued or running; downgrading would strand their film's "
                           "detection. Let the workers finish them (or cancel the detection job), then downgrade")
    sqlite = op.get_bind().dialect.name == "sqlite"  # SQLite cannot drop a column holding a foreign key: rebuild
    with op.batch_alter_table("training_jobs", recreate="always" if sqlite else "auto") as batch:
        batch.drop_index("ix_training_jobs_parent_id")
        batch.drop_constraint("fk_training_jobs_model_version", type_="foreignkey")
        batch.drop_constraint("fk_training_jobs_parent", type_="foreignkey")
        for name in reversed(COLUMNS):
            batch.drop_column(name)
