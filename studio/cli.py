"""The `correlnet` command. Each subcommand lives in its own module under studio/commands/ with
`register(subparsers)` (builds the parser; must not import torch) and is dispatched through
`args.func(args)`, so `correlnet --help` stays fast."""

from __future__ import annotations

import argparse
import importlib
import sys

# Order is the order shown by `correlnet --help`.
COMMAND_MODULES = (
    "studio.commands.detect",
    "studio.commands.pretrain",
    "studio.commands.evaluate",
    "studio.commands.export_model",
    "studio.commands.film",
    "studio.commands.db",
    "studio.commands.worker",
)


class CliError(Exception):
    """An error the user can fix; printed without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="correlnet",
        description="Correl-Net Studio: find defects in old films, review and correct them, learn each film.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # a command not built yet
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        result = args.func(args)
    except CliError as exc:
        print(f"correlnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
