"""A bank of real defects cut from real film, composited into clean footage with their real look.

Why. Synthetic marks are sharper, more opaque and more regular than scanned dust: real dust is
blurred by the scanner's optics, partly transparent, ragged and under the grain. The 1903/1906
footage (../shared/data/real_film) carries real dust with no masks; the defects we can be sure of
are cut out of it here and pasted into clean training triplets as marks on the film.

Which defects ("only those you are sure of"): the sure-defect rule of `correlnet.sure_defects` at
its strict defaults (`SureConfig`). In frame t of a film with neighbours p and q, a
connected component of the SDI-p score (`correlnet.sdi.triplet_score`, DIS flow, medians removed)
>= `BankConfig.score` is kept when: its area lies in `BankConfig.area`; the background is static
there (the flow from t to each neighbour is rigid in a ring around it: every vector within
`max_flow_spread` px of the ring's median, whatever the gate weave moves the whole frame); and the
two compensated neighbours agree with each other in that ring and under the component (the 90th
percentile of |warp(p) - warp(q)| below `max_disagreement`, grain allowed for): the neighbours show
the same clean background, only frame t has the mark. Components that touch the frame border are dropped (the scans' edges weave).

What is stored. The residual ``frame_t - (warp(p) + warp(q)) / 2`` in the component's box with a
margin, and an alpha: the component dilated by one pixel and softened, so the mark's own soft rim
comes along. Compositing adds ``alpha * residual`` to the base frame, so a mark keeps its real
contrast, transparency and blur whatever it lands on (then clipped to [0, 1]).

Frames. Only the later frames are cut (1903: 26-48, 1906: 26-60, `BANK_FRAMES`), and only triplets
whose three frames all lie in that range: frames 1-25 of both clips are for evaluation and never
trained on (issue 12).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from correlnet.sdi import compensate_triplet
from correlnet.sure_defects import SureConfig, sure_components

# The bank is cut with the sure-defect rule at its strict settings: training data must be sure.
BankConfig = SureConfig

__all__ = ["BankConfig", "BankDefect", "DefectBank", "BANK_FRAMES", "cut_defects", "build_bank", "paste_defects"]

# File numbers (inclusive) of the real-film frames the bank may be cut from, per clip folder.
BANK_FRAMES = {"the_great_train_robbery": (26, 48), "a_trip_down_market_street_before_the_fire": (26, 60)}


@dataclass(frozen=True)
class BankDefect:
    """residual (h, w) float32 (gray levels, signed), alpha (h, w) float32 in [0, 1]; source: where cut."""

    residual: np.ndarray
    alpha: np.ndarray
    source: str = ""


@dataclass
class DefectBank:
    """The defects, and where they came from (recorded in a checkpoint's provenance)."""

    defects: list[BankDefect]
    sources: list[str]

    def __len__(self) -> int:
        return len(self.defects)

    def describe(self) -> dict:
        dark = sum(float((d.residual * d.alpha).sum()) < 0 for d in self.defects)
        return {"defects": len(self), "dark": dark, "light": len(self) - dark, "sources": list(self.sources)}


def cut_defects(frame_prev: np.ndarray, frame_mid: np.ndarray, frame_next: np.ndarray,
                cfg: BankConfig = BankConfig(), source: str = "") -> list[BankDefect]:
    """The sure one-frame defects of frame_mid (module docstring). frames: (H, W) float32 in [0, 1]."""
    out = []
    for _, blob, residual in sure_components(compensate_triplet(frame_prev, frame_mid, frame_next, cfg.flow), cfg):
        alpha = cv2.dilate(blob, np.ones((3, 3), np.uint8)).astype(np.float32)
        alpha = np.maximum(cv2.GaussianBlur(alpha, (0, 0), 0.6), blob.astype(np.float32))
        out.append(BankDefect(residual=residual, alpha=alpha.astype(np.float32), source=source))
    return out


def build_bank(real_film_root: Path, cfg: BankConfig = BankConfig()) -> DefectBank:
    """The bank of the real-film clips under `real_film_root` (folders of `BANK_FRAMES`), cut only
    from triplets inside each clip's bank range. Raises FileNotFoundError naming a missing folder."""
    from correlnet.data import load_clip
    from correlnet.frames import list_frame_files
    from correlnet.neighbours import analyse_sequence, thumbnail

    defects: list[BankDefect] = []
    sources = []
    for clip, (first, last) in BANK_FRAMES.items():
        folder = Path(real_film_root) / clip
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: real-film clip not found; the defect bank is cut from it "
                                    "(set CORRELNET_SHARED_DATA to the folder holding real_film/)")
        files = list_frame_files(folder)
        numbers = [int(f.stem) for f in files]
        keep = [i for i, num in enumerate(numbers) if first <= num <= last]
        frames = load_clip(folder, start=keep[0], stop=keep[-1] + 1)
        nbs = analyse_sequence(np.stack([thumbnail(f) for f in frames])).neighbours
        for j, nb in enumerate(nbs):
            if nb.flagged:  # a neighbour outside the range or missing: not sure enough
                continue
            num = numbers[keep[0] + j]
            defects += cut_defects(frames[nb.prev], frames[j], frames[nb.next], cfg, source=f"{clip}/{num:05d}")
        sources.append(f"{clip} frames {first}-{last}")
    return DefectBank(defects, sources)


def paste_defects(frame: np.ndarray, bank: DefectBank, count: int, rng: np.random.Generator,
                  opacity: tuple[float, float] = (1.0, 1.0)) -> None:
    """Composite `count` random bank defects into `frame` ((H, W) float32 in [0, 1], in place, then
    clipped): random place, flips and quarter turns; ``frame += s * alpha * residual`` with the
    strength s drawn uniformly in `opacity` per defect (a fixed s, and no draw, when both ends agree)."""
    if count <= 0 or not len(bank):
        return
    lo, hi = (float(v) for v in opacity)
    if not 0.0 <= lo <= hi:
        raise ValueError(f"bank opacity must be a range 0 <= low <= high; got {opacity!r}")
    h, w = frame.shape
    for _ in range(count):
        d = bank.defects[int(rng.integers(len(bank)))]
        res, alpha = d.residual, d.alpha
        turns = int(rng.integers(4))
        res, alpha = np.rot90(res, turns), np.rot90(alpha, turns)
        if rng.random() < 0.5:
            res, alpha = res[:, ::-1], alpha[:, ::-1]
        ph, pw = res.shape
        if ph > h or pw > w:
            continue
        y, x = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
        strength = lo if lo == hi else float(rng.uniform(lo, hi))
        frame[y : y + ph, x : x + pw] += (strength * alpha) * res
    np.clip(frame, 0.0, 1.0, out=frame)
