"""`correlnet worker`: the background trainer beside the web app (claims fine-tuning and detection
jobs from the store). The parser is built without importing torch; the work happens in `run`."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "worker",
        help="run queued fine-tuning and detection jobs (start it beside the web app)",
        description="Claim queued jobs from the store (CORRELNET_DATA_DIR / CORRELNET_DB_URL) and run them: "
        "fine-tune a film's model on its corrections, publish the new version when validation F1 holds, "
        "re-predict the film. Several workers may share one PostgreSQL store.",
    )
    p.add_argument("--once", action="store_true", help="exit when the queue is empty instead of waiting")
    p.add_argument("--poll", type=float, default=2.0, metavar="SECONDS", help="wait between queue checks (default 2)")
    p.add_argument("--device", default=None, help="auto, cpu or cuda[:N] (default: CORRELNET_DEVICE or auto)")
    p.add_argument("--stale-after", type=float, default=120.0, metavar="SECONDS",
                   help="a running job without a heartbeat for this long lost its worker and is recovered by any "
                   "running worker (default 120; at least 2 heartbeat periods of 10 s)")
    p.set_defaults(func=run)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    import logging
    import signal

    from sqlalchemy.exc import SQLAlchemyError

    from db.store import Store
    from studio.cli import CliError
    from studio.settings import Settings
    from studio.worker import WorkerConfig, run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.poll <= 0 or args.stale_after <= 0:
        raise CliError("--poll and --stale-after must be positive numbers of seconds")
    try:
        config = WorkerConfig(poll_seconds=args.poll, stale_after_seconds=args.stale_after)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it like Ctrl-C: the running job is re-queued
    settings = Settings.from_env()
    try:
        store = Store.open(settings)
    except (SQLAlchemyError, OSError) as exc:
        raise CliError(f"cannot open the store ({settings.resolved_db_url}, files in {settings.data_dir}): {exc}; "
                       "check CORRELNET_DB_URL / CORRELNET_DATA_DIR") from exc
    try:
        done = run_worker(store, settings, once=args.once, poll_seconds=args.poll, device=args.device,
                          config=config)
    except ValueError as exc:  # e.g. an unknown --device
        raise CliError(str(exc)) from exc
    print(f"worker ran {done} job(s)")
    return 0
