"""The static-scene probe (correlnet.static_probe) for several models: what each flags when nothing moves.

    nice .venv/bin/python bench/static_probe.py --model default default+nogate sdi-p git:998c64a --seeds 3

Identical frames up to sensor noise, with thin dark and light lines at 0, 45, 90 and 135 degrees,
step edges and small static blobs, plus one speck in the middle frame only. A detector that follows
the principle flags nothing but the speck. Model specs as in bench/real_eval.py. Prints one Markdown
row per model (mean over --seeds scenes), then (--contrasts) the faint-speck table: the share of 16
one-frame specks (r 1.5 px, blurred 0.7 px) found at each peak contrast on a static textured scene
with noise std 0.01 per frame
(correlnet.static_probe.speck_sensitivity), and, last, a JSON object {spec: {figure: value}} (the
speck table under "speck_found_by_contrast").
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_eval import resolve_spec  # noqa: E402  (the one place that turns git:/default specs into paths)

from correlnet.checkpoint import load_detector  # noqa: E402
from correlnet.static_probe import probe, speck_sensitivity, static_scene  # noqa: E402

COLUMNS = ("dark line 90 deg", "light line 90 deg", "vertical edge", "dark line 0 deg", "horizontal edge",
           "dark line 45 deg", "static blobs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", default=["default", "sdi-p"], metavar="SPEC")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--contrasts", type=float, nargs="*", default=[0.05, 0.08, 0.11, 0.15, 0.2, 0.3, 0.5],
                    help="peak contrasts of the faint-speck table (none: skip it)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    scenes = [static_scene(seed=s) for s in range(args.seeds)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.model:
            model = load_detector(resolve_spec(spec, Path(tmp)))
            runs = [probe(model, scene) for scene in scenes]
            results[spec] = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
            if args.contrasts:
                sens = speck_sensitivity(model, tuple(args.contrasts))
                results[spec]["speck_found_by_contrast"] = {str(c): v["found"] for c, v in sens.items()}
    print(f"Static-scene probe, 192x192, noise 0.005, {args.seeds} scenes; share of each structure's pixels flagged.\n")
    print("| model | " + " | ".join(COLUMNS) + " | all pixels flagged | one-frame speck found |")
    print("|---|" + "---:|" * (len(COLUMNS) + 2))
    for spec, r in results.items():
        cells = [f"{100 * r[c]:.1f} %" for c in COLUMNS] + [f"{100 * r['flagged_share']:.2f} %", f"{100 * r['speck_found']:.0f} %"]
        print(f"| {spec} | " + " | ".join(cells) + " |")
    if args.contrasts:
        print("\nOne-frame specks found by peak contrast (static textured scene, noise 0.01, 16 specks x 2 scenes):\n")
        print("| model | " + " | ".join(f"{c:g}" for c in args.contrasts) + " |")
        print("|---|" + "---:|" * len(args.contrasts))
        for spec, r in results.items():
            found = r["speck_found_by_contrast"]
            print(f"| {spec} | " + " | ".join(f"{100 * found[str(float(c))]:.0f} %" for c in args.contrasts) + " |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
