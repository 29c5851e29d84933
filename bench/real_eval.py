"""The real-footage evaluation (correlnet.real_eval, parts a-f) for several models, in one table.

    nice .venv/bin/python bench/real_eval.py --model default sdi-p git:998c64a runs/trinet.pt --threads 2

--model takes checkpoint paths, `default` (the shipped correlnet/weights/default.pt), `sdi-p` or
`sdi-p:THRESHOLD` (the classical motion-compensated peer) and `git:COMMIT` (the shipped
correlnet/weights/default.pt as it was at that commit: an earlier shipped model); any network spec
may end in `+gate[:T]` / `+nogate` (with or without the temporal gate) and `+sure[:S]` / `+nosure`
(with or without the sure one-frame marks) and `+extent[:PX]` / `+noextent` (with or without the
marks' extent), as `correlnet.checkpoint.load_detector` reads them. Every model runs
on the same footage with the same seeds: (a) the paper's defects on the held-out demo frames, (b)
the moving-objects trap, (c) clean real video, (d) real 1903/1906 film, (e) annotated real-film
frames (n/a until masks are committed under data/annotations/real_film), (f) the paper's defects on
the clean-video validation clips (real motion, exact truth). Prints one Markdown row
per model and, as the last line, a JSON object {model spec: {part name: result}}.
--frames N caps the evaluated frames per sequence of parts a-c and f (a smoke run: --frames 2).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from correlnet.checkpoint import load_detector, split_spec
from correlnet.default_model import default_model_path
from studio.commands.sources import SYNTH_NAMES, synth_config
from correlnet.device import resolve_device
from correlnet.job_context import CallbackJob
from correlnet.real_eval import PART_NAMES, PARTS, RealEvalConfig, load_data, parse_parts, run_parts

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = "correlnet/weights/default.pt"


def resolve_spec(spec: str, tmp: Path) -> str:
    """A --model spec for correlnet.checkpoint.load_detector: git:COMMIT is extracted to `tmp`; a
    `+gate[:T]` / `+nogate` suffix is kept for load_detector."""
    base, options = split_spec(spec)
    if options:
        return resolve_spec(base, tmp) + spec[len(base):]
    if spec == "default":
        return str(default_model_path())
    if spec.startswith("git:"):
        commit = spec[4:]
        out = subprocess.run(["git", "show", f"{commit}:{SHIPPED}"], cwd=ROOT, capture_output=True)
        if out.returncode != 0:
            raise SystemExit(f"{spec}: git show {commit}:{SHIPPED} failed: {out.stderr.decode().strip()}")
        path = tmp / f"default-{commit}.pt"
        path.write_bytes(out.stdout)
        return str(path)
    return spec


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def row(spec: str, r: dict) -> str:
    """One Markdown row from {part name: to_dict()} (a missing or skipped part shows n/a)."""
    def part(name: str) -> dict:
        d = r.get(name, {})
        return {} if "skipped" in d and len(d) == 1 else d

    a, b, c, d, e, f = (part(PART_NAMES[p]) for p in PARTS)
    film = d.get("per_clip", {})
    shares = " / ".join(_pct(film[k]["share_flagged"]) if k in film else "n/a" for k in
                        ("the_great_train_robbery", "a_trip_down_market_street_before_the_fire"))
    one = " / ".join(_pct(film[k]["one_frame_share"]) if k in film else "n/a" for k in
                     ("the_great_train_robbery", "a_trip_down_market_street_before_the_fire"))
    sure = " / ".join(_pct(film[k].get("sure_recall")) if k in film else "n/a" for k in
                      ("the_great_train_robbery", "a_trip_down_market_street_before_the_fire"))
    pr = f"{e['overall']['precision']:.3f} / {e['overall']['recall']:.3f}" if e else "n/a"
    if e.get("marks"):
        pr += f" (marks {e['marks']['overall']['precision']:.3f} / {e['marks']['overall']['recall']:.3f})"
    return (f"| {spec} | {a['overall']['f1']:.3f} |" if a else f"| {spec} | n/a |") + (
        f" {_pct(b.get('share_flagged')) if b else 'n/a'} | {_pct(c['overall']['share_flagged']) if c else 'n/a'} |"
        f" {shares} | {one} | {sure} | {pr} |" + (f" {f['overall']['f1']:.3f} |" if f else " n/a |"))


HEADER = ("| model | paper F1 (a) | moving objects flagged (b) | clean video flagged (c) | "
          "real film flagged 1903 / 1906 (d) | one-frame share 1903 / 1906 (d) | "
          "sure defects found 1903 / 1906 (d) | annotated P / R, pixels (marks) (e) | real-motion F1 (f) |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", default=["default", "sdi-p"], metavar="SPEC")
    ap.add_argument("--parts", nargs="+", default=["all"], help="a b c d e f or all (default all)")
    ap.add_argument("--frames", type=int, default=None, help="cap on evaluated frames per sequence of parts a-c and f")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--synth", choices=SYNTH_NAMES, default="paper",
                    help="defect generator of parts a and f (studio.commands.sources.synth_config; default paper)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    parts = parse_parts(args.parts)
    cfg = RealEvalConfig(seed=args.seed)
    if args.frames is not None:
        cfg = replace(cfg, paper_frames=min(cfg.paper_frames, args.frames), trap_frames=min(cfg.trap_frames, args.frames),
                      clean_frames=min(cfg.clean_frames, args.frames))
    data = load_data(parts, cfg)  # the footage once, for every model
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.model:
            model = load_detector(resolve_spec(spec, Path(tmp)), device)
            out = run_parts(model, parts, data, cfg, device, synth_cfg=synth_config(args.synth),
                            job=CallbackJob(lambda message, s=spec, **_: print(f"# {s}: {message}", flush=True)))
            results[spec] = {PART_NAMES[p]: r.to_dict() for p, r in out.items()}
    print(f"Parts {', '.join(parts)}; seed {args.seed}; generator of a and f: {args.synth}; frames per sequence a/b/c/f: {cfg.paper_frames}/"
          f"{cfg.trap_frames}/{cfg.clean_frames}/{cfg.paper_frames}; threshold {cfg.threshold}.\n")
    print(HEADER)
    for spec, r in results.items():
        print(row(spec, r))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
