"""Help and start-up: ``--help``, ``--version`` and every ``COMMAND --help`` import no torch, and every field of
every command's config has a help text that ``--help`` shows with its default."""

import contextlib
import dataclasses
import importlib
import inspect
import io
import json
import subprocess
import sys

import pytest

from rewardalign.cli import COMMANDS, DATA_COMMANDS, main

INVOCATIONS = ([["--help"], ["--version"]] + [[name, "--help"] for name in COMMANDS]
               + [["data", name, "--help"] for name in DATA_COMMANDS])
HEAVY = ("torch", "transformers", "datasets", "accelerate", "numpy", "pandas", "pyarrow")
PROBE = """
import contextlib, io, json, sys
from rewardalign.cli import main
found = {}
for argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
        except SystemExit:
            pass
    found[" ".join(argv)] = [m for m in json.loads(sys.argv[2]) if m in sys.modules]
print(json.dumps(found))
"""


def test_help_and_version_import_no_torch():
    """One fresh interpreter runs every invocation in turn and lists the heavy modules loaded after each."""
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(INVOCATIONS), json.dumps(HEAVY)],
                          capture_output=True, text=True, check=True)
    found = json.loads(proc.stdout)
    assert list(found) == [" ".join(argv) for argv in INVOCATIONS]
    assert {argv: modules for argv, modules in found.items() if modules} == {}


def command_configs() -> list[tuple[str, type]]:
    """(command, dataclass) for every config dataclass a command module holds."""
    out = []
    for name, (module, _) in {**COMMANDS, **{f"data {k}": v for k, v in DATA_COMMANDS.items()}}.items():
        for obj in vars(importlib.import_module(module)).values():
            if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
                out.append((name, obj))
    return out


def test_every_command_with_fields_has_a_config():
    assert {name for name, _ in command_configs()} == (set(COMMANDS) - {"compare"}) | {"data inspect"}


@pytest.mark.parametrize("command, cls", command_configs(), ids=lambda x: x if isinstance(x, str) else x.__name__)
def test_every_field_has_a_help_text_shown_with_its_default(command, cls):
    fields = [f for f in dataclasses.fields(cls) if f.name != "training"]
    assert not [f.name for f in fields if not str(f.metadata.get("help", "")).strip()]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(command.split() + ["--help"])
    text = " ".join(out.getvalue().split())
    for f in fields:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert f"--{f.name} (default: {default!r}) {' '.join(f.metadata['help'].split())}" in text
