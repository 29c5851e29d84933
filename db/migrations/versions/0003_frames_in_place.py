"""Frames referenced where they lie: source path, size and checksum; resumable imports (issue 16).

A frame sequence imported in place keeps no copy in the store: its Frame row holds the source file's
absolute path and size (`sha256` is then the source file's checksum) and an empty `path`. Plain
ADD COLUMNs: on SQLite a batch table rebuild of `frames` would, with foreign keys on, cascade-delete
every prediction and correction when the old table is dropped.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("frames", sa.Column("source_path", sa.Text, nullable=True))
    op.add_column("frames", sa.Column("source_size", sa.BigInteger, nullable=True))


def downgrade() -> None:
    referenced = op.get_bind().execute(sa.text("SELECT COUNT(*) FROM frames WHERE source_path IS NOT NULL")).scalar()
    if referenced:
        raise RuntimeError(f"{referenced} frame(s) are referenced in place (no copy in the store); downgrading would "
                           "lose where they lie. Copy those films into the store first: `correlnet film import FOLDER "
                           "--copy` with each film's folder (it keeps the film, its predictions and corrections), "
                           "then downgrade")
    # SQLite >= 3.35 drops a plain column in place (no table rebuild, see the module docstring).
    op.drop_column("frames", "source_size")
    op.drop_column("frames", "source_path")
