"""Self-describing checkpoints: weights plus everything needed to rebuild and judge the model.

File format (a `torch.save`d dict of plain types and tensors only, so `torch.load` runs with
`weights_only=True` and never executes code from the file):
    format="correlnet.checkpoint", format_version, library_version, created (ISO 8601 UTC),
    arch, encoder, model_config (ModelConfig.to_dict()), state_dict, metrics, train_config, extra.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from correlnet.atomic import atomic_write
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT = "correlnet.checkpoint"
FORMAT_VERSION = 1
_PLAIN = (str, int, float, bool, type(None))


class CheckpointError(ValueError):
    """A file is not a usable correlnet checkpoint; the message names it and says what to do."""


def _plain(value: Any, where: str) -> Any:
    """`value` as JSON-like plain types (dataclasses become dicts); TypeError naming `where` otherwise."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"{where}: checkpoint dict keys must be strings")
        return {k: _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{where}: {type(value).__name__} cannot go in a checkpoint; convert it to plain "
                    "numbers/strings/lists/dicts first (e.g. float(tensor))")


def save_checkpoint(path: str | os.PathLike, model: nn.Module, *, metrics: dict | None = None,
                    train_config: Any = None, extra: dict | None = None) -> Path:
    """Write `model` (built by correlnet.models, so it has `.config`) to `path` atomically:
    a temp file in the same directory, fsync, then os.replace, so a crash never leaves a
    half-written checkpoint under `path`. Returns the path."""
    from . import __version__

    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise TypeError("save_checkpoint needs a model from correlnet.models.build_model (it has .config)")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "arch": config.arch,
        "encoder": config.encoder,
        "model_config": config.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metrics": _plain(metrics, "metrics"),
        "train_config": _plain(train_config, "train_config"),
        "extra": _plain(extra, "extra"),
    }
    return atomic_write(path, lambda f: torch.save(payload, f))


def _read(path: str | os.PathLike) -> dict:
    path = Path(path)
    hint = "re-save it with correlnet.checkpoint.save_checkpoint or pick another model file"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}: check the path")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (an interrupted copy?): {hint}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/foreign files
        raise CheckpointError(f"{path} is not a readable correlnet checkpoint (corrupt, truncated or another "
                              f"format: {type(exc).__name__}): {hint}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a torch file but not a correlnet checkpoint (no format={FORMAT!r} "
                              f"header; a bare state_dict?): {hint}")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {data.get('format_version')}, newer than this "
                              f"correlnet reads ({FORMAT_VERSION}): upgrade correlnet")
    missing = {"arch", "encoder", "model_config", "state_dict"} - set(data)
    if missing:
        raise CheckpointError(f"{path} lacks {sorted(missing)}: {hint}")
    return data


def load_checkpoint_meta(path: str | os.PathLike) -> dict:
    """Everything but the weights: arch, encoder, model_config, train_config, metrics, extra,
    library_version, created, format_version. Raises CheckpointError for unusable files."""
    data = _read(path)
    return {k: v for k, v in data.items() if k != "state_dict"}


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the network stored at `path` on `device`, in eval mode, with `.checkpoint_meta`
    set to `load_checkpoint_meta(path)`. Raises CheckpointError for unusable files."""
    from .device import resolve_device
    from .models import ModelConfig, build_model_from_config

    data = _read(path)
    try:
        config = ModelConfig.from_dict(data["model_config"])
        model = build_model_from_config(config)
        model.load_state_dict(data["state_dict"], strict=True)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path} does not match the network it describes ({exc}); it may come from an "
                              "incompatible correlnet version: re-train or re-export it") from exc
    model.checkpoint_meta = {k: v for k, v in data.items() if k != "state_dict"}
    return model.to(resolve_device(device)).eval()


def _default_gate() -> float:
    from .temporal_gate import GateConfig

    return GateConfig().threshold


def _default_sure() -> float:
    from .sdi import SdiConfig

    return SdiConfig().threshold  # SDI-p's validated threshold


# --model spec suffixes: name -> (ModelConfig field, default value when no ":VALUE" is given).
_SPEC_OPTIONS = {
    "gate": ("temporal_gate", _default_gate), "nogate": ("temporal_gate", lambda: 0.0),
    "sure": ("sure_marks", _default_sure), "nosure": ("sure_marks", lambda: 0.0),
    "extent": ("mark_extent", lambda: 1.0), "noextent": ("mark_extent", lambda: 0.0),
}


def split_spec(spec: str | os.PathLike) -> tuple[str, dict[str, float]]:
    """(checkpoint path, {ModelConfig field: value}) of a --model spec whose path may end in
    ``+gate[:T]`` / ``+nogate`` / ``+sure[:S]`` / ``+nosure`` / ``+extent[:PX]`` / ``+noextent`` (any order;
    see `load_detector`);
    ValueError for a suffix whose value is not a number."""
    path, options = str(spec), {}
    while True:
        head, plus, suffix = path.rpartition("+")
        name, _, value = suffix.partition(":")
        if not plus or name not in _SPEC_OPTIONS:
            return path, options
        field_name, default = _SPEC_OPTIONS[name]
        try:
            options[field_name] = float(value) if value else default()
        except ValueError as exc:
            raise ValueError(f"model spec {spec!r}: write PATH+{name}:VALUE with a number, e.g. +gate:0.03") from exc
        path = head


def load_detector(spec: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """The detector a `--model` argument names, on `device`, in eval mode: ``sdi-p`` or
    ``sdi-p:THRESHOLD`` is the classical SDI-p peer (`correlnet.sdi.SdiDetector`, its default or the
    given threshold in gray levels), anything else a checkpoint path (`load_model`). A checkpoint
    path may end in ``+gate`` or ``+gate:THRESHOLD`` (the network with the temporal gate,
    `correlnet.temporal_gate`, at its default or the given evidence threshold), ``+nogate`` (without
    it, whatever its checkpoint asks for), ``+sure`` or ``+sure:SCORE`` (with the sure one-frame
    marks, `ModelConfig.sure_marks`, default SDI-p's threshold), ``+nosure``, ``+extent`` or
    ``+extent:PX`` (the marks' extent, `ModelConfig.mark_extent`, default 1 px) and ``+noextent``, in any combination
    (`split_spec`). The one place that resolves a model spec: every command and benchmark that takes
    --model calls it.
    Raises CheckpointError for unusable files, ValueError for a malformed spec."""
    from .device import resolve_device
    from .sdi import SdiConfig, SdiDetector

    sdi = SdiConfig.from_spec(spec)
    if sdi is not None:
        return SdiDetector(sdi).to(resolve_device(device)).eval()
    path, options = split_spec(spec)
    if not options:
        return load_model(spec, device)
    model = load_model(path, device)
    model.config = dataclasses.replace(model.config, **options)
    model.checkpoint_meta = {**model.checkpoint_meta, "model_config": model.config.to_dict()}
    return model


def init_from_checkpoint(model: nn.Module, path: str | os.PathLike) -> dict[str, list[str]]:
    """Warm-start `model` (in place) from the weights stored at `path`, for a network that grew.

    Tensors of the same name and shape are copied. A tensor that gained input channels (dim 1
    larger, every other dim equal: a conv now fed extra skip channels appended after the old
    ones, e.g. `ModelConfig.input_skip`) gets the old weights in its leading channels and zeros
    in the new ones, so the network computes exactly what the stored one did until training
    moves the new weights. Returns {"copied": [...], "widened": [...], "kept": [...]}: "kept"
    are the model's tensors left as initialised (absent from the file or of another shape).
    Raises CheckpointError for unusable files and when nothing matches (another architecture).
    """
    data = _read(path)
    stored = data["state_dict"]
    report: dict[str, list[str]] = {"copied": [], "widened": [], "kept": []}
    with torch.no_grad():
        for name, t in model.state_dict().items():
            src = stored.get(name)
            if src is not None and src.shape == t.shape:
                t.copy_(src)
                report["copied"].append(name)
            elif (src is not None and src.dim() == t.dim() >= 2 and src.shape[0] == t.shape[0]
                  and src.shape[2:] == t.shape[2:] and src.shape[1] < t.shape[1]):
                t.zero_()
                t[:, : src.shape[1]].copy_(src)
                report["widened"].append(name)
            else:
                report["kept"].append(name)
    if not report["copied"]:
        raise CheckpointError(f"{path} shares no weights with this network ({data.get('arch')} "
                              f"{data.get('encoder')} stored): initialise from a checkpoint of the same arch")
    return report
