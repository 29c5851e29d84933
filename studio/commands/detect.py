"""`correlnet detect`: defect masks for a video file or a folder of frames, at full resolution.

The parser is built without importing torch; the work happens in `run`, which streams the frames
through `correlnet.prediction.detect_frames` (tiled, each frame's features and each pair's
correlation computed once).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from correlnet import DEFECT_THRESHOLD

EPILOG = """\
Neighbours: each frame is compared with the nearest distinct frame before and after it in its shot,
as `correlnet film import` chooses them: duplicated frames (pulldown, re-scans) are skipped and no
frame is compared across a shot cut; a frame with one usable neighbour uses it twice (prev = next).

Output names: for a folder of frames, DIR/<input frame name>.png (frame_0012.tif -> frame_0012.png);
for a video, DIR/000000.png, DIR/000001.png, ... by 0-based frame index. Masks are 8-bit
grayscale PNGs at the input resolution, 255 = defect, 0 = clean. With --probabilities, the
defect probability of each pixel (x 255, rounded) goes to DIR/probabilities/<same name>.png.

Nothing is overwritten unasked: DIR may not be INPUT's folder nor lie inside it, and when DIR already
holds files of the output names the command stops before running the model, unless --overwrite is
given (which replaces earlier outputs, never an input file). Frames above 40 megapixels or 16384
pixels a side are refused from their header, as `correlnet film import` does.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "detect",
        help="write a defect mask PNG for every frame of a video or folder",
        description="Find dust, blotches, hairs and scratches in every frame of INPUT (a video file or a "
        "folder of PNG/TIFF/JPEG frames) at full resolution, and write one mask PNG per frame.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", help="video file (mp4, mov, avi, mkv, ...) or folder of frames")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing; not INPUT's folder)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace masks an earlier run wrote to DIR (input files are never overwritten)")
    p.add_argument("--model", default=None, metavar="CKPT",
                   help="checkpoint, or 'sdi-p' / 'sdi-p:THRESHOLD' for the classical SDI-p detector "
                   "(default: $CORRELNET_DEFAULT_MODEL, else the shipped model)")
    p.add_argument("--threshold", type=float, default=DEFECT_THRESHOLD,
                   help=f"probability above which a pixel is a defect (default {DEFECT_THRESHOLD})")
    p.add_argument("--probabilities", action="store_true", help="also write 8-bit probability PNGs (see below)")
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda or cuda:N")
    p.add_argument("--runtime", default=None, choices=("auto", "eager", "openvino", "onnxruntime", "half"),
                   help="inference runtime (default: $CORRELNET_RUNTIME, else auto: eager PyTorch on the CPU, the "
                   "fastest here; half precision on CUDA; see correlnet/runtime.py)")
    p.add_argument("--tile", type=int, default=None, metavar="N",
                   help="largest tile side in pixels (default 2048: HD and 2K frames run whole; "
                   "use e.g. 1024 if memory runs out)")
    p.set_defaults(func=run)


class InputFrames:
    """INPUT's frames, read by `correlnet.frames.FrameSequence` (sizes checked from the headers, frame i as
    (H, W) float32 by `frames(i)`, `len(frames)`, `.files`), and `names`: the output name of each frame,
    the input stem + .png for a folder, the 6-digit 0-based index + .png for a video."""

    def __init__(self, path: Path):
        from correlnet.frames import FrameSequence  # not at import: the parser is built without numpy/OpenCV

        self.sequence = FrameSequence(path)
        self.files = self.sequence.files
        if self.sequence.video:
            self.names = [f"{i:06d}.png" for i in range(len(self.sequence))]
        else:
            self.names = [f.stem + ".png" for f in self.files]
            if len(set(self.names)) != len(self.names):
                raise ValueError(f"{path}: two frames share a name apart from the extension; keep one format per folder")

    def __len__(self) -> int:
        return len(self.sequence)

    def __call__(self, i: int):
        return self.sequence(i)


def check_output_folder(frames: InputFrames, source: Path, out: Path, probabilities: bool,
                        overwrite: bool) -> None:
    """Raise ValueError unless writing the masks to `out` is safe: `out` is not INPUT's folder nor inside
    it, no output would replace an input file, and no output name is taken unless `overwrite`."""
    if source.is_dir():
        folder, target = source.resolve(), out.resolve()
        if target == folder or target.is_relative_to(folder):
            where = "the input folder" if target == folder else "inside the input folder"
            raise ValueError(f"--out {out} is {where} {folder}; masks would sit among (or replace) the scans: "
                             "choose a folder outside it")
    names = [out / n for n in frames.names]
    existing = [p for p in names + ([out / "probabilities" / p.name for p in names] if probabilities else [])
                if p.exists()]
    if not existing:
        return
    inputs = {_inode(f) for f in frames.files}  # a hard link to a scan is the scan
    for path in existing:
        if _inode(path) in inputs:
            raise ValueError(f"{path} is one of the input frames; choose another --out "
                             "(--overwrite never replaces inputs)")
    if not overwrite:
        raise ValueError(f"{out} already holds {len(existing)} file(s) with the output names (e.g. "
                         f"{existing[0].name}); choose an empty folder, or pass --overwrite to replace them")


def _inode(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def _model_path(arg: str | None) -> Path:
    from correlnet.default_model import default_model_path

    if arg:
        return Path(arg)
    env = os.environ.get("CORRELNET_DEFAULT_MODEL")
    return Path(env).expanduser() if env else default_model_path()


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from correlnet.checkpoint import CheckpointError, load_detector
    from correlnet.device import resolve_device
    from correlnet.frames import FrameReadError
    from correlnet.neighbours import sequence_neighbours
    from correlnet.png import write_png  # atomic: a crash never leaves a half-written mask under the final name
    from correlnet.prediction import detect_frames
    from correlnet.tiling import TilingConfig
    from studio.cli import CliError

    if not 0.0 < args.threshold < 1.0:
        raise CliError(f"--threshold must lie strictly between 0 and 1, got {args.threshold}")
    tiling = TilingConfig()
    if args.tile is not None:
        if args.tile < 64:
            raise CliError(f"--tile must be at least 64 pixels, got {args.tile}")
        tiling = TilingConfig.for_tile(args.tile)
    out = Path(args.out)
    try:
        device = resolve_device(args.device)
        tiling = TilingConfig.for_device(device, tile=tiling.tile, overlap=tiling.overlap)
        frames = InputFrames(Path(args.input))
        check_output_folder(frames, Path(args.input), out, args.probabilities, args.overwrite)
        model = load_detector(_model_path(args.model), device)  # a checkpoint or sdi-p[:THRESHOLD]
    except (ValueError, FileNotFoundError) as exc:  # FrameReadError, CheckpointError, a missing default model
        raise CliError(str(exc)) from exc
    try:
        (out / "probabilities" if args.probabilities else out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create the output folder {out} ({exc.strerror}); choose a writable folder") from exc
    try:  # the film's neighbours (duplicates and cuts skipped), as `correlnet film import` gives them
        neighbours = sequence_neighbours(frames, len(frames))
    except (FrameReadError, ValueError) as exc:
        raise CliError(f"{args.input}: {exc}") from exc
    try:
        with tqdm(total=len(frames), unit="frame", desc="detect") as bar:
            for i, probs in detect_frames(model, frames, neighbours, tiling, device, runtime=args.runtime):
                write_png(out / frames.names[i], np.where(probs >= args.threshold, 255, 0).astype(np.uint8))
                if args.probabilities:
                    write_png(out / "probabilities" / frames.names[i], np.round(probs * 255).astype(np.uint8))
                bar.update(1)
    except (FrameReadError, CheckpointError, OSError) as exc:
        raise CliError(str(exc)) from exc
    except ValueError as exc:  # frames of different sizes, bad pixel values
        raise CliError(f"{args.input}: {exc}") from exc
    print(f"wrote {len(frames)} masks to {out}")
    return 0
