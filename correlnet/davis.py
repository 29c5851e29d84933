"""DAVIS 2017/2019 roots: sequence folders and split files.

A DAVIS root holds ``JPEGImages/480p/<sequence>/*.jpg`` and split lists in
``ImageSets/2017/<split>.txt`` (``train``, ``val``, ``test-dev``, ``test-challenge``; the test sets
ship as separate downloads with their own ImageSets). The paper trains on trainval, validates on
test-dev and tests on test-challenge (Sec. 4.1); `davis_sequences(root, split)` lists each, and a
--source written ``ROOT:SPLIT`` (`parse_davis_source`) selects a split from the command line.
"""

from __future__ import annotations

from pathlib import Path

from correlnet.frames import FrameReadError

__all__ = ["is_davis_root", "davis_sequences", "parse_davis_source"]


def is_davis_root(path: str | Path) -> bool:
    """True for a DAVIS root folder (it holds ``JPEGImages/480p``)."""
    return (Path(path) / "JPEGImages" / "480p").is_dir()


def davis_sequences(root: str | Path, split: str | None = None, resolution: str = "480p") -> list[Path]:
    """Sequence folders ``root/JPEGImages/<resolution>/<seq>`` of a DAVIS root, sorted by name.

    `split` (e.g. "train", "val", "trainval", "test-dev", "test-challenge") selects the sequences
    named in ``ImageSets/2017/<split>.txt`` (or ``ImageSets/2019/``); "trainval" is the union of
    train and val when no trainval file exists. None lists every sequence folder.

    Raises:
        FrameReadError: not a DAVIS root, unknown split, or a listed sequence missing.
    """
    root = Path(root)
    images = root / "JPEGImages" / resolution
    if not images.is_dir():
        raise FrameReadError(f"{root}: not a DAVIS root (no JPEGImages/{resolution}/ folder)")
    if split is None:
        return sorted(p for p in images.iterdir() if p.is_dir())
    names = _split_names(root, split)
    missing = [n for n in names if not (images / n).is_dir()]
    if missing:
        raise FrameReadError(f"{root}: split {split!r} lists sequences missing from {images}: {missing[:5]}")
    return [images / n for n in names]


def _split_names(root: Path, split: str) -> list[str]:
    for year in ("2017", "2019"):
        split_file = root / "ImageSets" / year / f"{split}.txt"
        if split_file.is_file():
            return [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
    if split == "trainval":
        return _split_names(root, "train") + _split_names(root, "val")
    raise FrameReadError(
        f"{root}: no ImageSets/2017/{split}.txt or ImageSets/2019/{split}.txt; check the split name"
    )


def parse_davis_source(source: str) -> tuple[Path, str | None]:
    """'ROOT:SPLIT' -> (ROOT, SPLIT) when ROOT is a DAVIS root and the whole string is not a path;
    anything else -> (Path(source), None)."""
    head, sep, tail = source.rpartition(":")
    plain_split = bool(tail) and "/" not in tail and "\\" not in tail
    if sep and plain_split and not Path(source).exists() and is_davis_root(head):
        return Path(head), tail
    return Path(source), None
