"""Resumable training state: what `correlnet.train.train` needs to continue a killed run exactly.

Kept in a file beside the checkpoint ("<name>.train-state.pt"), because checkpoints hold plain
metadata (correlnet.checkpoint) while the optimizer and RNG states are tensors. RNG states are
stored as tensors and plain numbers so the file loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from correlnet.atomic import atomic_write


def rng_state() -> dict[str, Any]:
    """Global RNG states as tensors and plain numbers (loadable with torch.load(weights_only=True))."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss_next},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss_next"]))
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train_state_path(checkpoint_path: str | Path) -> Path:
    """Where `train` keeps the resumable state beside a checkpoint: "<name>.train-state.pt".

    Why a second file: checkpoints hold plain metadata (correlnet.checkpoint), while the optimizer
    and RNG states are tensors. The state file holds the model weights too, so it is consistent on
    its own whatever moment the process is killed; it is written first, each file atomically.
    """
    path = Path(checkpoint_path)
    return path.with_name(path.name + ".train-state.pt")


def save_training(path: Path, model: nn.Module, train_config: dict[str, Any], state: dict[str, Any],
                  metrics: dict[str, Any], provenance: dict[str, Any] | None = None) -> None:
    """Write the state file, then the checkpoint (`correlnet.checkpoint.save_checkpoint`), each atomically."""
    from correlnet.checkpoint import save_checkpoint  # pulls in the model factory: import when needed

    state = {**state, "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
    side = atomic_write(train_state_path(path), lambda f: torch.save(state, f))
    save_checkpoint(path, model, metrics=metrics, train_config=train_config,
                    extra={"train_state_file": side.name, "step": int(state["step"]),
                           **({"data": provenance} if provenance else {})})


def load_train_state(path: str | Path) -> dict[str, Any]:
    """The resumable state `train` keeps beside checkpoint `path` ("model", "optimizer", "scaler",
    "step", "rng"). Raises FileNotFoundError naming the file when there is none."""
    side = train_state_path(path)
    if not side.is_file():
        raise FileNotFoundError(
            f"cannot resume: {side} is missing (it is written beside {Path(path).name} by `correlnet pretrain`); "
            "start a new run without --resume or pick another --out"
        )
    return torch.load(side, map_location="cpu", weights_only=True)


def resume_training(path: Path, model: nn.Module, opt: torch.optim.Optimizer, scaler: Any) -> dict[str, Any]:
    """Load the state beside checkpoint `path` into model, optimizer and AMP scaler; return it."""
    state = load_train_state(path)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    return state
