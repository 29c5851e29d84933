"""A tiny film in a store, with a tiny model as its start model, for the worker and fine-tuning tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from correlnet.checkpoint import save_checkpoint
from db.store import Store
from studio.corrections import save_correction
from studio.films import film_frames, import_film
from studio.finetune import FinetuneConfig
from studio.settings import Settings
from studio.worker import WorkerConfig
from tests.model_fixtures import tiny_model

H, W, FRAMES = 48, 64, 8


@dataclass
class TinyFilm:
    store: Store
    settings: Settings
    film: object
    frames: list
    model_path: Path
    masks: dict[int, np.ndarray]  # frame index -> the defect mask drawn into it


def write_frames(folder: Path, rng: np.random.Generator) -> dict[int, np.ndarray]:
    """FRAMES gray frames of a smooth panning texture; every frame carries one dark blotch."""
    folder.mkdir(parents=True)
    base = cv2.GaussianBlur(rng.random((H + 40, W + 40)).astype(np.float32), (0, 0), 3)
    base = (base - base.min()) / (base.max() - base.min()) * 0.5 + 0.3
    masks = {}
    for i in range(FRAMES):
        img = base[i: i + H, i: i + W].copy()
        mask = np.zeros((H, W), bool)
        cy, cx = rng.integers(8, H - 8), rng.integers(8, W - 8)
        cv2.circle(mask.view(np.uint8), (int(cx), int(cy)), 4, 1, -1)
        img[mask] = 0.05
        masks[i] = mask
        cv2.imwrite(str(folder / f"frame_{i + 1:03d}.png"), np.round(img * 255).astype(np.uint8))
    return masks


def make_tiny_film(tmp_path: Path, corrected: tuple[int, ...] = (1, 2, 4, 5, 6), db_url: str | None = None) -> TinyFilm:
    """The film "tiny" in a store under tmp_path/data (SQLite, or `db_url`), its start model, and the
    `corrected` frames' true masks saved as corrections."""
    rng = np.random.default_rng(0)
    masks = write_frames(tmp_path / "src", rng)
    torch.manual_seed(0)
    model_path = save_checkpoint(tmp_path / "start.pt", tiny_model("efficient-correlnet"))
    settings = Settings(data_dir=tmp_path / "data", db_url=db_url, device="cpu", default_model=model_path,
                        retrain_after=0)
    store = Store.open(settings)
    film = import_film(store, tmp_path / "src", name="tiny")
    frames = film_frames(store, film)
    for i in corrected:
        save_correction(store, frames[i].id, masks[i], author="test")
    return TinyFilm(store, settings, film, frames, model_path, masks)


def fast_config(**overrides) -> WorkerConfig:
    ft = FinetuneConfig.cpu(steps=2, batch_size=2, crop=32, warmup_steps=0)
    return WorkerConfig(poll_seconds=0.05, heartbeat_seconds=0.2, progress_every_seconds=0.0,
                        finetune=ft, **overrides)
