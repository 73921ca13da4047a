"""Code named in a config: ``module:attr`` or ``path/to/file.py:attr``, the one loader behind rules and gym tasks.

A file is executed afresh on every load (an edited file takes effect) as the module ``rewardalign_file_<stem>_<hash
of its path>``, registered in ``sys.modules`` so that ``inspect`` finds its source (cache keys hash it), dataclasses
and pickling work inside it. A dotted name is imported from ``sys.path``, then from the current directory, as
``python -m`` would. Loading executes the code named, like a Python import: only name code you trust.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from .config import ConfigError

__all__ = ["import_module", "is_file_name", "load_object"]


def is_file_name(name: str) -> bool:
    """True when ``name`` is the path of a Python file rather than a dotted module name."""
    return name.endswith(".py") or os.sep in name or "/" in name


def import_module(name: str, what: str = "module") -> Any:
    """A module by dotted name or by the path of a ``.py`` file; ``what`` names it in errors ("rule module")."""
    if is_file_name(name):
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"{what} file {path} does not exist")
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        module_name = f"rewardalign_file_{path.stem}_{digest}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        return module
    missing = None
    for extra in ([], [os.getcwd()]):
        sys.path.extend(extra)
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as err:
            if not err.name or not (name == err.name or name.startswith(err.name + ".")):
                raise  # the module exists but one of its own imports is missing
            missing = err
        finally:
            for path in extra:
                sys.path.remove(path)
    raise ConfigError(f"cannot import {what} {name!r} ({missing}); give a file path (path/to/file.py:name) or put it "
                      f"on PYTHONPATH")


def load_object(spec: str, what: str = "object", noun: str = "name") -> Any:
    """The object named by ``module:name`` or ``path/to/file.py:name`` (dots after the colon reach attributes:
    ``module:Class.method``); ``what`` names it in errors, ``noun`` the part after the colon."""
    module_name, sep, attr = str(spec).rpartition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"a {what} is given as 'module:{noun}' or 'path/file.py:{noun}', got {spec!r}")
    obj: Any = import_module(module_name, f"{what} module")
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{what} {spec!r}: {module_name} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj
