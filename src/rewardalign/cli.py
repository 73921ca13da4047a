"""The ``rewardalign`` command: one entry point, one subcommand per pipeline stage.

Each command module exposes ``add_arguments(parser)`` and ``run(args, overrides) -> int``; ``overrides`` are
the ``--field value`` pairs left after the command's own arguments (see :mod:`rewardalign.config`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .config import ConfigError
from .data.schema import DataError

# command name -> (module, one-line help). Modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "sft": ("rewardalign.commands.sft", "supervised fine-tuning on prompt/response demonstrations"),
    "train-rm": ("rewardalign.commands.train_rm", "train a reward model (bt, oracle or ensemble) on preference pairs"),
    "annotate": ("rewardalign.commands.annotate", "score every response with a reward source (cached)"),
    "align": ("rewardalign.commands.align", "offline alignment with any objective of the registry"),
    "online": ("rewardalign.commands.online", "online alignment: UNA online on sampled responses, or RLOO"),
    "evaluate": ("rewardalign.commands.evaluate", "sample a model on prompts: judge reward, KL, win rate, drift"),
    "compare": ("rewardalign.commands.compare", "several run folders as one table, plots and JSON"),
    "demo": ("rewardalign.commands.demo", "the whole pipeline on a gym task, offline: SFT, RM, every method, report"),
}
DATA_COMMANDS: dict[str, tuple[str, str]] = {
    "inspect": ("rewardalign.commands.inspect", "statistics and rejected rows of a data set, before training"),
}


def _add_command(sub: argparse._SubParsersAction, name: str, module: str, help_text: str) -> None:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    importlib.import_module(module).add_arguments(parser)
    parser.set_defaults(_module=module)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rewardalign",
        description="Align language models directly on explicit rewards (DRO, DRDO, UNA, SPO and baselines).",
        epilog="Config fields can be overridden on the command line: --field value (dots for nested fields).",
    )
    parser.add_argument("--version", action="version", version=f"rewardalign {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        _add_command(sub, name, module, help_text)
    data = sub.add_parser("data", help="data set tools", description="data set tools")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    for name, (module, help_text) in DATA_COMMANDS.items():
        _add_command(data_sub, name, module, help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    module = getattr(args, "_module", None)
    if module is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return importlib.import_module(module).run(args, rest)
    except (ConfigError, DataError) as err:
        print(f"rewardalign {args.command}: error: {err}", file=sys.stderr)
        return 2
    finally:
        _close_process_group()


def _close_process_group() -> None:
    """End a multi-process run cleanly: a gloo process group left open can abort a process at exit
    ("terminate called without an active exception") after its work is done."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
