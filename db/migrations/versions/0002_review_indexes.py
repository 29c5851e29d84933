"""Indexes for the Review page at feature length (issue 16).

- `ix_frames_film_number` (film_id, number, index): "Go to frame number" (the first frame of that
  number) and a range's frames (the bulk accept) read one film's frames by number; without it each
  is a scan of the film's 130 000 rows.
- `ix_frames_review_order` (film_id, last_served_at, uncertainty DESC, index, reviewed_at): "next
  suggested" walks the earliest-served unreviewed frames most uncertain first
  (`studio.active._group_prefix`) and stops after a few rows, instead of ordering the whole film;
  reviewed_at lets the walk and the Review page's "reviewed" counter read the index alone (SQLite
  chose this index for the counter, and without the column it cost 300 ms instead of 60 at 130 000
  frames).

The page's other reads use the keys 0001 made: (film_id, index) for the shown frame, its neighbours
and the shot jumps; predictions (frame_id, model_version_id) for the proposal shown.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_frames_film_number", "frames", ["film_id", "number", "index"])
    op.create_index("ix_frames_review_order", "frames",
                    ["film_id", "last_served_at", sa.text("uncertainty DESC"), "index", "reviewed_at"])


def downgrade() -> None:
    op.drop_index("ix_frames_review_order", table_name="frames")
    op.drop_index("ix_frames_film_number", table_name="frames")
