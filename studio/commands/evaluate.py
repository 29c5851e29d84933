"""`correlnet evaluate`: how a model does on synthetic defects (as Table 1) and on real footage.

Parts (correlnet.real_eval): (a) precision / recall / F1 on synthetic defects, per sequence and
overall, plus the scene-feature trap and optional Fig. 5 pictures (the default); (b) the
moving-objects trap; (c) clean real video; (d) real 1903/1906 film; (e) annotated real-film frames;
(f) part (a)'s synthetic defects on the clean-video validation clips (real motion, exact truth).
The parser is built without importing torch; the work happens in `run`.
"""

from __future__ import annotations

import argparse
import json

from correlnet import DEFECT_THRESHOLD
from studio.commands.sources import SYNTH_NAMES

PARTS_HELP = (
    "a: synthetic defects (the paper's generator by default) on --source, or on the held-out demo "
    "frames, with the scene-feature trap; b: objects moving independently of the camera (0-20 px/frame), "
    "share of their pixels flagged; c: share of pixels flagged on clean real video; d: share flagged and "
    "one-frame share on real 1903/1906 film; e: precision/recall on annotated real-film frames; f: part a's "
    "synthetic defects on the clean-video validation clips (real motion, at most 640 px wide); all. "
    "Repeat or comma-separate (default a). Parts c-f read $CORRELNET_SHARED_DATA (default ../shared/data) "
    "and report 'skipped' when it is absent."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="precision, recall and F1 of a model on synthetic defects, and its false alarms on real footage",
        description="Add synthetic defects (seeded) to clean footage, predict, and report pixel precision, "
        "recall and F1 from TP/FP/FN totals, per sequence and overall, plus the false-positive rate on "
        "defect-like blobs that belong to the scene (the scene-feature trap). With --part, also the "
        "evaluation on real motion and real footage (moving objects, clean video, real film, annotations).",
    )
    p.add_argument("--model", default=None, metavar="SPEC",
                   help="checkpoint, or 'sdi-p' / 'sdi-p:THRESHOLD' for the classical motion-compensated "
                   "SDI-p detector (default: the shipped model)")
    p.add_argument("--part", action="append", default=None, metavar="PART", help=PARTS_HELP)
    p.add_argument("--source", nargs="+", default=None, metavar="PATH",
                   help="clips of parts a and b: video files, folders of frames, DAVIS roots, or 'demo' (the "
                   "held-out demo clip); default: the held-out demo clip (part b adds the clean-video "
                   "validation clips)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic defects and objects (default 0)")
    p.add_argument("--synth", choices=SYNTH_NAMES, default="paper",
                   help="defect generator of parts a and f: 'paper' (Sec. 4.1, as Table 1; default), 'full', "
                   "'mixed' or 'real' (scanned-looking dust, blur, grain and compression, moving sprites as "
                   "scene, no line scratches)")
    p.add_argument("--frames", type=int, default=None, metavar="N",
                   help="evaluated frames per sequence of parts a, b, c and f (default 12, 6, 10 and 12)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="read at most N frames per --source")
    p.add_argument("--threshold", type=float, default=DEFECT_THRESHOLD, help="probability at which a pixel is flagged")
    p.add_argument("--no-scene-trap", action="store_true", help="skip the scene-blob false-positive test (part a)")
    p.add_argument("--pictures", default=None, metavar="DIR", help="write Fig. 5 TP/FP/FN pictures of part a here")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)


def format_report(report: dict) -> str:
    """Plain-text table of an EvalReport.to_dict() (part a)."""
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


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def format_part(part: str, report: dict) -> str:
    """Plain-text summary of one part's to_dict() (b-f); a skipped part says why."""
    title = {"b": "(b) moving-objects trap", "c": "(c) clean real video", "d": "(d) real film",
             "e": "(e) annotated real film", "f": "(f) synthetic defects on real motion"}[part]
    if "skipped" in report and len(report) == 1:
        return f"{title}: skipped: {report['skipped']}"
    if part == "f":
        return f"{title}:\n" + format_report(report)
    lines = [f"{title}:"]
    if part == "b":
        lines.append(f"  {_pct(report['share_flagged'])} of {report['object_pixels']} object pixels flagged "
                     f"({report['objects']} objects, {report['frames']} frames); background "
                     f"{_pct(report['background_share_flagged'])}")
        lines += [f"  speed {k} px/frame: {_pct(v['share'])} of {v['pixels']}" for k, v in report["by_speed"].items()]
        lines += [f"  {k}: {_pct(v['share'])} of {v['pixels']}" for k, v in report["by_kind"].items()]
    elif part in ("c", "d"):
        for name, r in list(report["per_clip"].items()) + [("overall", report["overall"])]:
            extra = f", one-frame share {_pct(r['one_frame_share'])}" if part == "d" else ""
            lines.append(f"  {name:<44} {_pct(r['share_flagged'])} flagged over {r['frames']} frames{extra}")
    else:
        for name, r in list(report["per_clip"].items()) + [("overall", report["overall"])]:
            lines.append(f"  {name:<44} precision {r['precision']:.4f} recall {r['recall']:.4f} F1 {r['f1']:.4f}")
        marks = report.get("marks", {}).get("overall")
        if marks:
            lines.append(f"  {'by marks':<44} precision {marks['precision']:.4f} recall {marks['recall']:.4f} "
                         f"({marks['tp']} found, {marks['fp']} false, {marks['fn']} missed)")
    lines += [f"  skipped {name}: {why}" for name, why in report.get("skipped", {}).items()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import torch

    from correlnet.checkpoint import CheckpointError, load_detector
    from correlnet.default_model import default_model_path
    from correlnet.device import resolve_device
    from correlnet.real_eval import PART_NAMES, RealEvalConfig, load_data, parse_parts, run_parts
    from studio.cli import CliError
    from studio.commands.sources import evaluation_sequences, synth_config

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = args.model or default_model_path()
    try:
        parts = parse_parts(args.part or ["a"])
        device = resolve_device(args.device)
        model = load_detector(spec, device=device)
        frames = {} if args.frames is None else dict(paper_frames=args.frames, trap_frames=args.frames,
                                                      clean_frames=args.frames)
        cfg = RealEvalConfig(seed=args.seed, threshold=args.threshold, scene_trap=not args.no_scene_trap, **frames)
        sequences = evaluation_sequences(args.source, args.max_frames) if args.source else None
        data = load_data(parts, cfg, sequences)
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        raise CliError(str(exc)) from exc
    results = run_parts(model, parts, data, cfg, device, synth_cfg=synth_config(args.synth),
                        pictures_dir=args.pictures)
    out = {"model": str(spec), "parts": list(parts), "synth": args.synth, "seed": args.seed}
    text = []
    for part, result in results.items():
        report = result.to_dict()
        if part == "a" and "skipped" not in report:
            out.update(report)  # part a's keys stay at the top level, as before --part existed
            text.append(format_report(report))
        else:
            out[PART_NAMES[part]] = report
            text.append(format_part(part, report) if part != "a" else f"(a) skipped: {report['skipped']}")
    print(json.dumps(out, indent=2) if args.json else "\n".join(text))
    return 0
