"""`correlnet export-model`: the network as one ONNX or OpenVINO file for render farms.

The parser is built without importing torch; `run` loads the model and calls
`correlnet.model_export.export_model`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """\
The exported model takes one triplet of one frame size: input "frames" (1, 3, H, W) float32, the
previous, middle and next frame in grayscale [0, 1]; output "probs" (1, 1, H, W), the defect
probability of the middle frame (a defect where >= 0.5). Export again for another frame size.
It runs without correlnet (scripts/farm_detect.py, docs/farm.md). Not in the file: the shipped
detector's temporal gate, sure marks and marks' extent (OpenCV post-processing), so its masks equal
`correlnet detect --model CKPT+nogate+nosure+noextent`.

Writes OUT.onnx (onnx) or OUT.xml + OUT.bin (openvino), and OUT.<format>.json describing the input, the
output and the source checkpoint (with its sha256). Existing files are kept unless --overwrite.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export-model",
        help="write the detector network as an ONNX or OpenVINO model for render farms",
        description="Export a Correl-Net checkpoint as a self-contained ONNX or OpenVINO model for one frame size.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--format", required=True, choices=("onnx", "openvino"), help="file format to write")
    p.add_argument("--out", required=True, metavar="OUT", help="output path without extension (e.g. farm/correlnet)")
    p.add_argument("--model", default=None, metavar="CKPT",
                   help="checkpoint (default: $CORRELNET_DEFAULT_MODEL, else the shipped model)")
    p.add_argument("--size", default="1080x1920", metavar="HxW",
                   help="frame height x width the model will take (default 1080x1920)")
    p.add_argument("--overwrite", action="store_true", help="replace files an earlier export wrote")
    p.set_defaults(func=run)


def _size(text: str) -> tuple[int, int]:
    from studio.cli import CliError

    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise CliError(f"--size must be HEIGHTxWIDTH, e.g. 1080x1920; got {text!r}") from None
    if h < 8 or w < 8 or h > 16384 or w > 16384:
        raise CliError(f"--size must lie between 8 and 16384 pixels a side; got {text}")
    return h, w


def run(args: argparse.Namespace) -> int:
    from correlnet.checkpoint import CheckpointError, load_model, split_spec
    from correlnet.model_export import export_model
    from db.files import sha256_file
    from studio.cli import CliError
    from studio.commands.detect import _model_path

    height, width = _size(args.size)
    path, options = split_spec(_model_path(args.model))
    if str(path).startswith("sdi-p"):
        raise CliError("sdi-p is a classical OpenCV detector, not a network: nothing to export")
    try:
        model = load_model(path)
        files = export_model(model, args.format, Path(args.out), height, width, source=Path(path),
                             source_sha256=sha256_file(Path(path)), overwrite=args.overwrite)
    except FileExistsError as exc:
        raise CliError(str(exc)) from exc
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from exc
    except ModuleNotFoundError as exc:
        raise CliError(f"--format {args.format} needs the {exc.name} package: pip install {exc.name}") from exc
    for f in files:
        print(f"wrote {f}")
    return 0
