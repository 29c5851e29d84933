"""The store's tables (SQLAlchemy 2.x typed models). See docs/design.md, "Store schema".

Rules the use cases rely on:
- Prediction rows are the model's proposal and are never overwritten (unique per frame and version).
- Correction rows are never updated or deleted: the latest row (highest id) per frame is the current
  mask; undo adds a row equal to an earlier state.
- Timestamps are timezone-aware UTC on every backend (SQLite stores them naive; UTCDateTime restores
  the zone), so code may compare them with `datetime.now(timezone.utc)`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

FILM_STATUSES = ("importing", "ready")
CORRECTION_KINDS = ("edit", "accept", "undo", "reset")
JOB_KINDS = ("finetune", "predict", "predict_chunk")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """DateTime that always returns aware UTC datetimes (naive input is taken as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, float: Float}


class Film(Base):
    __tablename__ = "films"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    source_path: Mapped[str] = mapped_column(Text)
    source_sha: Mapped[str] = mapped_column(String(64), index=True)
    width: Mapped[int]
    height: Mapped[int]
    bit_depth: Mapped[int]
    channels: Mapped[int]
    frame_count: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="ready")
    active_model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", name="fk_films_active_model_version", use_alter=True)
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Directory of this film's files, relative to data_dir (frames/, predictions/, corrections/).
    storage_dir: Mapped[str] = mapped_column(String(255))

    # Not stored: import_film sets it to True when it returned an already imported film, and sets
    # copied_frames to how many frames `import --copy` took into the store from their in-place sources.
    already_imported = False
    copied_frames = 0

    def __repr__(self) -> str:
        return f"Film(id={self.id}, name={self.name!r}, frames={self.frame_count}, {self.width}x{self.height})"


class Frame(Base):
    __tablename__ = "frames"
    __table_args__ = (UniqueConstraint("film_id", "index", name="uq_frames_film_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    film_id: Mapped[int] = mapped_column(ForeignKey("films.id", ondelete="CASCADE"), index=True)
    index: Mapped[int]
    number: Mapped[int]
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    prev_index: Mapped[int]
    next_index: Mapped[int]
    neighbour_flag: Mapped[bool] = mapped_column(Boolean, default=False)
    is_duplicate: Mapped[bool] = mapped_column(Boolean, default=False)
    shot: Mapped[int] = mapped_column(default=0)
    is_validation: Mapped[bool] = mapped_column(Boolean, default=False)
    uncertainty: Mapped[float | None] = mapped_column(Float)
    last_served_at: Mapped[datetime | None]
    reviewed_at: Mapped[datetime | None]
    # Source file name (folders) or "" (videos): shown to restorers, used in error messages.
    source_name: Mapped[str] = mapped_column(Text, default="")
    # A frame lives in one of two places: a PNG in the store (`path` relative to data_dir; copied or
    # decoded from a video), or the source file where it lies (imported in place: `path` is "",
    # `source_path` the absolute resolved file, `source_size` its bytes). `sha256` is the checksum of
    # whichever file holds the frame; studio.films.frame_image verifies it on every read.
    source_path: Mapped[str | None] = mapped_column(Text)
    source_size: Mapped[int | None] = mapped_column(BigInteger)

    @property
    def in_place(self) -> bool:
        """Whether the frame is read from its source file (no copy in the store)."""
        return self.source_path is not None



# The Review page at feature length (revision 0002): a frame by number (go to, a range's frames), and
# the review order's walk (never-served first, most uncertain first: studio.active; reviewed_at makes
# it cover the walk's filter and the reviewed counter).
Index("ix_frames_film_number", Frame.film_id, Frame.number, Frame.index)
Index("ix_frames_review_order", Frame.film_id, Frame.last_served_at, Frame.uncertainty.desc(), Frame.index,
      Frame.reviewed_at)


class ModelVersion(Base):
    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    film_id: Mapped[int | None] = mapped_column(ForeignKey("films.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    arch: Mapped[str] = mapped_column(String(64))
    encoder: Mapped[str | None] = mapped_column(String(128))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    note: Mapped[str] = mapped_column(Text, default="")


class Prediction(Base):
    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("frame_id", "model_version_id", name="uq_predictions_frame_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    frame_id: Mapped[int] = mapped_column(ForeignKey("frames.id", ondelete="CASCADE"), index=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    defect_pixels: Mapped[int]
    uncertainty: Mapped[float]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Correction(Base):
    __tablename__ = "corrections"

    id: Mapped[int] = mapped_column(primary_key=True)
    frame_id: Mapped[int] = mapped_column(ForeignKey("frames.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    author: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("corrections.id"))
    kind: Mapped[str] = mapped_column(String(16), default="edit")
    prediction_id: Mapped[int | None] = mapped_column(ForeignKey("predictions.id", ondelete="SET NULL"))
    dice_vs_prediction: Mapped[float | None] = mapped_column(Float)
    defect_pixels: Mapped[int] = mapped_column(default=0)


class TrainingJob(Base):
    __tablename__ = "training_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    film_id: Mapped[int] = mapped_column(ForeignKey("films.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="finetune")
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    force_publish: Mapped[bool] = mapped_column(Boolean, default=False)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker_id: Mapped[str | None] = mapped_column(String(255))
    step: Mapped[int] = mapped_column(default=0)
    total_steps: Mapped[int] = mapped_column(default=0)
    loss: Mapped[float | None] = mapped_column(Float)
    val_f1: Mapped[float | None] = mapped_column(Float)
    eta_seconds: Mapped[float | None] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text, default="")
    result_model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # A film's detection split for several workers (revision 0004, studio/chunks.py): the "predict" job is
    # the parent, pinned to `model_version_id` at the split; each "predict_chunk" row (parent_id set, the
    # version copied) predicts the frame indices first_index..last_index (inclusive).
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("training_jobs.id", ondelete="CASCADE", name="fk_training_jobs_parent"), index=True)
    first_index: Mapped[int | None]
    last_index: Mapped[int | None]
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL", name="fk_training_jobs_model_version"))
