"""The ``rewardalign`` command: one entry point, one subcommand per pipeline stage.

Each command module exposes ``add_arguments(parser)`` and ``run(args, overrides) -> int``; ``overrides`` are
the ``--field value`` pairs left after the command's own arguments (see :mod:`rewardalign.config`).

One error boundary (:func:`main`): a user error (:func:`is_user_error`: a bad config, data, path or argument
value) is one line on stderr and exit code 2; a traceback only with ``--debug``. Any other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import traceback

import yaml

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
    "cache": ("rewardalign.commands.cache", "the tokenised-data cache: its entries, and pruning them"),
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
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error in the input (anywhere on the command line)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        _add_command(sub, name, module, help_text)
    data = sub.add_parser("data", help="data set tools", description="data set tools")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    for name, (module, help_text) in DATA_COMMANDS.items():
        _add_command(data_sub, name, module, help_text)
    return parser


USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError, DataError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
    json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError,
)
"""Errors in what the user gave (config, data, paths, argument values), besides :class:`ObjectiveError`."""


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is a mistake in the input rather than a bug: :data:`USER_ERRORS`, or an
    :class:`~rewardalign.objectives.ObjectiveError` (looked up only where the objectives are loaded, so the
    boundary itself imports no torch)."""
    registry = sys.modules.get("rewardalign.objectives.registry")
    objective_error = (registry.ObjectiveError,) if registry is not None else ()
    return isinstance(err, USER_ERRORS + objective_error)


def describe(err: BaseException) -> str:
    """The one-line message of a user error (an OSError as ``file: reason``)."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return " ".join(str(err).split("\n")) if str(err) else type(err).__name__


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    module = getattr(args, "_module", None)
    if module is None:
        parser.print_help()
        return 0 if args.command is None else 2
    command = " ".join(c for c in (args.command, getattr(args, "data_command", None)) if c)
    try:
        return importlib.import_module(module).run(args, rest)
    except Exception as err:
        if not is_user_error(err):
            raise
        if debug:
            traceback.print_exc()
        print(f"rewardalign {command}: error: {describe(err)}", file=sys.stderr)
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
