"""Importing a 2K 16-bit TIFF sequence: copied into the store as PNG vs referenced in place (issue 16).

    .venv/bin/python bench/import_in_place.py [--frames 200] [--width 2048 --height 1556] [--json]

Writes --frames grainy RGB 16-bit TIFFs (uncompressed, as scanners write them; seeded noise, so PNG
cannot compress the grain away) to a temporary folder, imports them once with `ImportConfig(in_place=
False)` and once in place into two throw-away stores, and deletes everything afterwards. Also times one
verified read (`studio.films.frame_image`: size + sha256 + decode) against the sha256 alone.
Last line (--json): {"frames", "source_mb", "copy_s", "copy_store_mb", "in_place_s", "in_place_store_mb",
"read_ms", "sha256_ms"}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def write_sequence(folder: Path, n: int, width: int, height: int) -> None:
    import OpenImageIO as oiio

    rng = np.random.default_rng(0)
    base = rng.normal(0.45, 0.08, (height, width, 3))
    for t in range(n):
        frame = np.clip(base + rng.normal(0, 0.02, base.shape), 0, 1)
        frame[100:300, 50 + 8 * t:250 + 8 * t] = 0.9  # something moves: no frame is a duplicate
        pixels = np.rint(frame * 65535).astype(np.uint16)
        path = str(folder / f"scan.{1001 + t:07d}.tif")
        out = oiio.ImageOutput.create(path)
        out.open(path, oiio.ImageSpec(width, height, 3, oiio.UINT16))
        out.write_image(pixels)
        out.close()


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    from db.files import sha256_file
    from db.testing import temporary_store
    from studio.films import ImportConfig, film_frames, frame_image, import_film

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--height", type=int, default=1556)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        src = root / "scans"
        src.mkdir()
        write_sequence(src, args.frames, args.width, args.height)
        result = {"frames": args.frames, "source_mb": round(folder_mb(src), 1)}
        for key, cfg in (("copy", ImportConfig(in_place=False)), ("in_place", ImportConfig())):
            with temporary_store(root / key) as store:
                start = time.perf_counter()
                film = import_film(store, src, cfg=cfg)
                result[f"{key}_s"] = round(time.perf_counter() - start, 1)
                result[f"{key}_store_mb"] = round(folder_mb(store.data_dir / "films"), 1)
                if key == "in_place":
                    frame = film_frames(store, film)[args.frames // 2]
                    start = time.perf_counter()
                    for _ in range(5):
                        frame_image(store, frame)
                    result["read_ms"] = round((time.perf_counter() - start) / 5 * 1000, 1)
                    start = time.perf_counter()
                    for _ in range(5):
                        sha256_file(Path(frame.source_path))
                    result["sha256_ms"] = round((time.perf_counter() - start) / 5 * 1000, 1)
            shutil.rmtree(root / key)
        print(f"{args.frames} frames {args.width}x{args.height} RGB 16-bit TIFF ({result['source_mb']} MB): copy "
              f"{result['copy_s']} s ({result['copy_store_mb']} MB in the store), in place {result['in_place_s']} s "
              f"({result['in_place_store_mb']} MB); one verified read {result['read_ms']} ms, of which sha256 "
              f"{result['sha256_ms']} ms")
        if args.json:
            print(json.dumps(result))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
