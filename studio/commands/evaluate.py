"""`correlnet evaluate`: precision / recall / F1 on synthetic defects (as Table 1), per sequence and
overall, plus the scene-feature trap and optional Fig. 5 pictures.

The parser is built without importing torch; the work happens in `run`.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="precision, recall and F1 of a model on synthetic defects",
        description="Add synthetic defects (seeded) to clean footage, predict, and report pixel precision, "
        "recall and F1 from TP/FP/FN totals, per sequence and overall, plus the false-positive rate on "
        "defect-like blobs that belong to the scene (the scene-feature trap).",
    )
    p.add_argument("--model", default=None, metavar="CKPT", help="checkpoint (default: the shipped model)")
    p.add_argument("--source", nargs="+", required=True, metavar="PATH",
                   help="video files, folders of frames, DAVIS roots, or 'demo' (the held-out demo clip)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic defects (default 0)")
    p.add_argument("--synth", choices=("paper", "full"), default="paper",
                   help="defect generator: 'paper' (Sec. 4.1, as Table 1; default) or 'full'")
    p.add_argument("--frames", type=int, default=12, metavar="N", help="evaluated frames per sequence (default 12)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="read at most N frames per sequence")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--no-scene-trap", action="store_true", help="skip the scene-blob false-positive test")
    p.add_argument("--pictures", default=None, metavar="DIR", help="write Fig. 5 TP/FP/FN pictures (PNG) here")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)


def format_report(report: dict) -> str:
    """Plain-text table of an EvalReport.to_dict()."""
    lines = [f"{'sequence':<28} {'precision':>9} {'recall':>9} {'F1':>9}"]
    for name, r in list(report["per_sequence"].items()) + [("overall", report["overall"])]:
        lines.append(f"{name:<28} {r['precision']:9.4f} {r['recall']:9.4f} {r['f1']:9.4f}")
    lines.append(f"{report['frames']} frames, {report['seconds_per_frame']:.2f} s per frame")
    trap = report.get("scene_trap")
    if trap:
        lines.append(
            f"scene-feature trap: {trap['fp_rate']:.4f} of scene-blob pixels flagged "
            f"({trap['blobs_flagged']}/{trap['blobs']} blobs flagged); defect F1 with blobs "
            f"{trap['with_blobs']['f1']:.4f}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import torch

    from correlnet.checkpoint import CheckpointError, load_model
    from correlnet.default_model import default_model_path
    from correlnet.device import resolve_device
    from correlnet.evaluate import EvalConfig, evaluate_sequences
    from studio.cli import CliError
    from studio.commands.sources import evaluation_sequences, synth_config

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
        model = load_model(args.model or default_model_path(), device=device)
        sequences = evaluation_sequences(args.source, args.max_frames)
        cfg = EvalConfig(seed=args.seed, triplets_per_sequence=args.frames, threshold=args.threshold,
                         scene_trap=not args.no_scene_trap)
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        raise CliError(str(exc)) from exc
    report = evaluate_sequences(model, sequences, synth_config(args.synth), cfg, device, pictures_dir=args.pictures)
    out = report.to_dict()
    out["model"] = str(args.model or default_model_path())
    out["synth"], out["seed"] = args.synth, args.seed
    print(json.dumps(out, indent=2) if args.json else format_report(out))
    return 0
