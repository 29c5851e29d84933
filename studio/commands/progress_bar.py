"""The command line's view of a job context: reports shown on a tqdm bar (import, detect, pretrain)."""

from __future__ import annotations

from typing import Any

from correlnet.job_context import CallbackJob


def bar_job(bar: Any) -> CallbackJob:
    """A job context (never cancelled; Ctrl-C stops a command) that moves `bar` (a tqdm bar) to each
    report's done/total and shows loss, lr, eta and val_f1 beside it when they are reported."""

    def show(done: int | None = None, total: int | None = None, loss: float | None = None, lr: float | None = None,
             eta_seconds: float | None = None, val_f1: float | None = None, **_: Any) -> None:
        if total is not None:
            bar.total = total
        postfix = {}
        if loss is not None:
            postfix["loss"] = f"{loss:.4f}"
        if lr is not None:
            postfix["lr"] = f"{lr:.2g}"
        if eta_seconds is not None:
            postfix["eta"] = f"{eta_seconds / 60:.0f}min"
        if val_f1 is not None:
            postfix["val_f1"] = f"{val_f1:.3f}"
        if postfix:
            bar.set_postfix(postfix, refresh=False)
        if done is not None:
            bar.update(done - bar.n)
        else:
            bar.refresh()

    return CallbackJob(show)
