"""Where the shipped default model lives: `correlnet/weights/default.pt` inside the package.

It is an Efficient Correl-Net trained with `correlnet pretrain` on the bundled demo clips
(command and log in docs/training.md) and is the starting point everywhere: the CLI's
`--model` default, the app's first model version and the fine-tuning worker's parent model.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL_NAME = "default.pt"


class DefaultModelMissing(FileNotFoundError):
    """The shipped checkpoint is not where the package expects it."""


def default_model_path() -> Path:
    """Path of the shipped default checkpoint; raises DefaultModelMissing (a FileNotFoundError)
    saying how to get one when the file is absent (e.g. an install without package data)."""
    path = WEIGHTS_DIR / DEFAULT_MODEL_NAME
    if not path.is_file():
        raise DefaultModelMissing(
            f"the shipped default model {path} is missing: reinstall correlnet-studio with its package data "
            "(pip install -e . from the repository, which contains correlnet/weights/default.pt), "
            "or pass --model CKPT / set CORRELNET_DEFAULT_MODEL to a checkpoint from `correlnet pretrain`"
        )
    return path
