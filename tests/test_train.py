"""correlnet.train: learns a fixed batch, resumes exactly, stops when its job is cancelled, fails readably on NaN."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from correlnet.checkpoint import load_checkpoint_meta, load_model
from correlnet.job_context import JobContext
from correlnet.models import build_model
from correlnet.train import TrainConfig, TrainingDiverged, learning_rate, train
from correlnet.train_state import train_state_path

DEVICE = torch.device("cpu")


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("efficient-correlnet", encoder="test_efficientnet", max_displacement=2,
                       decoder_channels=(8, 8, 8, 8, 8))


class BlobTriplets(Dataset):
    """Triplets whose middle frame has a dark square the neighbours lack; mask = that square."""

    def __init__(self, n: int = 8, size: int = 32, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.frames = 0.5 + 0.1 * torch.rand(n, 3, size, size, generator=g)
        self.mask = torch.zeros(n, 1, size, size)
        for i in range(n):
            y, x = torch.randint(0, size - 8, (2,), generator=g).tolist()
            self.frames[i, 1, y : y + 8, x : x + 8] = 0.05
            self.mask[i, 0, y : y + 8, x : x + 8] = 1

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"frames": self.frames[i], "mask": self.mask[i]}


class Recorder(JobContext):
    """Keeps every report; cancelled from the report whose `done` reaches `cancel_at` on (never when None)."""

    def __init__(self, cancel_at: int | None = None):
        self.reports: list[dict[str, Any]] = []
        self.cancel_at = cancel_at

    def _record(self, fields: dict[str, Any]) -> None:
        self.reports.append(fields)

    @property
    def cancelled(self) -> bool:
        return self.cancel_at is not None and any(r.get("done", 0) >= self.cancel_at for r in self.reports)


def test_loss_falls_on_a_fixed_batch():
    loader = DataLoader(BlobTriplets(n=2, size=24), batch_size=2)
    cfg = TrainConfig(steps=15, lr=2e-2, warmup_steps=0, checkpoint_every=15)
    job = Recorder()
    result = train(tiny_model(), loader, cfg, DEVICE, job=job)
    seen = job.reports
    assert [r["done"] for r in seen] == list(range(1, 16)) and {(r["total"], r["unit"]) for r in seen} == {(15, "step")}
    assert seen[-1]["eta_seconds"] == 0 and all(r["lr"] == pytest.approx(learning_rate(cfg, i, 15)) for i, r in enumerate(seen))
    # Dice term goes towards -1 and BCE towards 0 as the model fits the square (loss: mean of the last 50 steps).
    assert seen[-1]["loss"] < seen[0]["loss"] - 0.2, (seen[0]["loss"], seen[-1]["loss"])
    assert result.final_loss == seen[-1]["loss"] and result.loss_history[-1][0] == 15 and not result.stopped


@pytest.mark.parametrize("cancel_at,steps_run", [(4, 4), (1, 1), (7, 7), (9, 7)])  # 7 steps in all
def test_a_cancelled_job_stops_training_after_the_current_step(tmp_path, cancel_at, steps_run):
    loader = DataLoader(BlobTriplets(n=4, size=24), batch_size=2)
    cfg = TrainConfig(steps=7, lr=1e-3, warmup_steps=0, checkpoint_every=5)
    model = tiny_model()
    forwards = []  # training forwards = optimizer steps actually taken
    model.register_forward_hook(lambda m, i, o: forwards.append(m.training))
    job = Recorder(cancel_at)
    result = train(model, loader, cfg, DEVICE, job=job, checkpoint_path=tmp_path / "run.pt")
    assert forwards.count(True) == steps_run and result.steps_done == steps_run
    assert [r["done"] for r in job.reports] == list(range(1, steps_run + 1))
    # a cancel seen at the last step changes nothing: the run is complete
    assert result.stopped == (steps_run < 7)
    assert load_checkpoint_meta(tmp_path / "run.pt")["metrics"]["step"] == steps_run  # checkpoint of the last step


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("stop_at", [3, 4])  # mid-segment and on a segment boundary
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, stop_at):
    torch.set_num_threads(1)
    loader = DataLoader(BlobTriplets(n=6, size=24), batch_size=2, shuffle=True)
    cfg = TrainConfig(steps=6, lr=5e-3, warmup_steps=2, checkpoint_every=2, seed=3)
    ref = tiny_model()
    train(ref, loader, cfg, DEVICE, checkpoint_path=tmp_path / "ref.pt")

    ckpt = tmp_path / "run.pt"
    first = train(tiny_model(), loader, cfg, DEVICE, checkpoint_path=ckpt, job=Recorder(cancel_at=stop_at))
    assert first.stopped and first.steps_done == stop_at and train_state_path(ckpt).is_file()
    resumed = tiny_model(seed=99)  # different init: everything must come from the checkpoint
    second = train(resumed, loader, cfg, DEVICE, checkpoint_path=ckpt, resume=True)
    assert second.resumed_from == stop_at and second.steps_done == 6
    for name, value in weights(ref).items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    loaded = load_model(ckpt)
    assert loaded.checkpoint_meta["train_config"]["steps"] == 6
    assert loaded.checkpoint_meta["extra"]["step"] == 6


def test_nan_loss_raises_a_readable_error():
    data = BlobTriplets(n=2, size=24)
    data.frames[0, 1, 0, 0] = float("nan")
    loader = DataLoader(data, batch_size=2)
    with pytest.raises(TrainingDiverged, match=r"step 1 .*lower the learning rate"):
        train(tiny_model(), loader, TrainConfig(steps=3), DEVICE)


def test_malformed_batches_and_configs_are_refused():
    loader = DataLoader([{"frames": torch.zeros(1, 32, 32), "mask": torch.zeros(1, 32, 32)}], batch_size=1)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        train(tiny_model(), loader, TrainConfig(steps=1), DEVICE)
    with pytest.raises(ValueError, match="lr must be > 0"):
        TrainConfig(lr=0)


def test_dry_run_stops_after_two_steps_and_val_fn_is_called():
    calls = []
    job = Recorder()
    result = train(tiny_model(), DataLoader(BlobTriplets(n=4, size=24), batch_size=2), TrainConfig(steps=50, dry_run=True,
                   checkpoint_every=1), DEVICE, job=job, val_fn=lambda m: calls.append(m.training) or {"f1": 0.5})
    assert result.steps_done == 2 and result.total_steps == 2
    assert calls == [False, False] and result.val_history == [(1, {"f1": 0.5}), (2, {"f1": 0.5})]
    assert [r["val_f1"] for r in job.reports] == [0.5, 0.5]


def test_validations_run_after_evenly_spaced_steps():
    calls = []
    job = Recorder()
    cfg = TrainConfig(steps=8, lr=1e-3, warmup_steps=0, checkpoint_every=8, validations=3)
    result = train(tiny_model(), DataLoader(BlobTriplets(n=4, size=24), batch_size=2), cfg, DEVICE, job=job,
                   val_fn=lambda m: calls.append(1) or {"f1": 0.25, "recall": 0.5})
    # round(8/3) = 3, round(16/3) = 5, 8: three passes, the last at the end
    assert [step for step, _ in result.val_history] == [3, 5, 8] and len(calls) == 3
    assert [r["done"] for r in job.reports if "val_f1" in r] == [3, 5, 8]


def test_learning_rate_schedule_warms_up_then_decays():
    cfg = TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    lrs = [learning_rate(cfg, s, 100) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] >= 0.1 - 1e-9


def test_resume_from_a_checkpoint_without_training_state_is_refused(tmp_path):
    from correlnet.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "shipped.pt", tiny_model())
    with pytest.raises(FileNotFoundError, match="shipped.pt.train-state.pt"):
        train(tiny_model(), DataLoader(BlobTriplets(n=2, size=24), batch_size=2), TrainConfig(steps=1), DEVICE,
              checkpoint_path=ckpt, resume=True)
