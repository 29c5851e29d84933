"""The static-scene probe (correlnet.static_probe) for several models: what each flags when nothing moves.

    nice .venv/bin/python bench/static_probe.py --model default default+nogate sdi-p git:998c64a --seeds 3

Identical frames up to sensor noise, with thin dark and light lines at 0, 45, 90 and 135 degrees,
step edges and small static blobs, plus one speck in the middle frame only. A detector that follows
the principle flags nothing but the speck. Model specs as in bench/real_eval.py. Prints one Markdown
row per model (mean over --seeds scenes) and, last, a JSON object {spec: {figure: value}}.
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
from correlnet.static_probe import probe, static_scene  # noqa: E402

COLUMNS = ("dark line 90 deg", "light line 90 deg", "vertical edge", "dark line 0 deg", "horizontal edge",
           "dark line 45 deg", "static blobs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", default=["default", "sdi-p"], metavar="SPEC")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    scenes = [static_scene(seed=s) for s in range(args.seeds)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.model:
            model = load_detector(resolve_spec(spec, Path(tmp)))
            runs = [probe(model, scene) for scene in scenes]
            results[spec] = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
    print(f"Static-scene probe, 192x192, noise 0.005, {args.seeds} scenes; share of each structure's pixels flagged.\n")
    print("| model | " + " | ".join(COLUMNS) + " | all pixels flagged | one-frame speck found |")
    print("|---|" + "---:|" * (len(COLUMNS) + 2))
    for spec, r in results.items():
        cells = [f"{100 * r[c]:.1f} %" for c in COLUMNS] + [f"{100 * r['flagged_share']:.2f} %", f"{100 * r['speck_found']:.0f} %"]
        print(f"| {spec} | " + " | ".join(cells) + " |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
