"""Resolve the compute device once, at an entry point, and pass it down."""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Return the torch device for `name`.

    "auto" picks CUDA when available and the CPU otherwise; "cpu", "cuda" and
    "cuda:N" are taken as given. Raises ValueError for an unknown name and when
    CUDA is asked for on a machine without it.
    """
    if isinstance(name, torch.device):
        return name
    name = str(name).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but CUDA is not available here: use 'auto' or 'cpu'")
        return torch.device(name)
    raise ValueError(f"unknown device {name!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
