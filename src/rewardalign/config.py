"""YAML configs with command-line overrides of any field.

``rewardalign align --config align.yaml --learning_rate 1e-5 --objective_args.beta 0.2``: every ``--key value``
after the known arguments sets ``key`` (dots reach into nested mappings); values are read as YAML scalars,
so ``1e-5`` is a float, ``true`` a bool and ``[1, 2]`` a list. A flag with no value is ``true``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .data.tokenize import TokenizeConfig

T = TypeVar("T")


class _Loader(yaml.SafeLoader):
    """YAML as users mean it in configs: only true/false are booleans (``eval_strategy: no`` stays the
    string "no", not YAML 1.1's False), and ``1e-5`` is a float (YAML 1.1 wants ``1.0e-5``)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml_text(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


class ConfigError(ValueError):
    """A config that cannot be used; the message says what to change."""


def load_yaml(path: str | Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    data = load_yaml_text(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of fields, got {type(data).__name__}")
    return data


def _scalar(text: str) -> Any:
    try:
        return load_yaml_text(text)
    except yaml.YAMLError:
        return text


def parse_overrides(argv: list[str]) -> dict[str, Any]:
    """``["--a.b", "1", "--c=x", "--flag"]`` -> ``{"a.b": 1, "c": "x", "flag": True}``."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--") or len(token) == 2:
            raise ConfigError(f"unexpected argument {token!r}: overrides are written --field value")
        key = token[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            out[key] = _scalar(value)
            i += 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out[key] = _scalar(argv[i + 1])
            i += 2
        else:
            out[key] = True
            i += 1
    return out


def apply_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set each dotted key of ``overrides`` in a deep copy of ``config``."""
    out = copy.deepcopy(config)
    for dotted, value in overrides.items():
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            if not isinstance(node.setdefault(part, {}), dict):
                raise ConfigError(f"--{dotted}: '{part}' is not a mapping in the config")
            node = node[part]
        node[leaf.replace("-", "_")] = value
    return out


def resolve(path: str | Path | None, argv: list[str]) -> dict[str, Any]:
    """The config file's mapping with the command line's overrides applied."""
    return apply_overrides(load_yaml(path), parse_overrides(argv))


TRAINING_ARGS_NOTE = ", and any transformers TrainingArguments field (output_dir, learning_rate, max_steps, ...)"


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, notes: str = ".") -> None:
    """A command's ``--config`` option, and an epilog listing the fields of dataclass ``cls`` then ``notes``."""
    parser.add_argument("--config", help="YAML config; any field can also be given as --field value")
    parser.epilog = "Fields: " + ", ".join(f.name for f in dataclasses.fields(cls)) + notes


def from_dict(cls: type[T], data: dict[str, Any], what: str) -> T:
    """Build dataclass ``cls`` from ``data``; an unknown field is an error that lists the known ones."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {what} field(s) {unknown}; known fields: {sorted(names)}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"bad {what} config: {err}") from err


def split_known(data: dict[str, Any], cls: type) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``data`` into the fields of dataclass ``cls`` and the rest."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}, {k: v for k, v in data.items() if k not in names}


@dataclass
class ModelFields:
    """Config fields of every command that loads a causal LM: which one, in what precision, and how it runs."""

    model: str | None = None
    torch_dtype: str = "float32"
    logprob_chunk_size: int = 1024
    dropout: bool = False
    trust_remote_code: bool = False
    attn_implementation: str | None = None


@dataclass
class RunFields(ModelFields):
    """Config fields of every command that trains on a data set: where it is, its format, how it is tokenised."""

    data: str | None = None
    format: str | None = None
    format_options: dict[str, Any] = field(default_factory=dict)
    split: str | None = None
    on_error: str = "raise"
    max_length: int = 512
    max_prompt_length: int | None = None
    truncation: str = "truncate"
    chat_template: str = "auto"

    def tokenize_config(self) -> TokenizeConfig:
        try:
            return TokenizeConfig(max_length=self.max_length, max_prompt_length=self.max_prompt_length,
                                  truncation=self.truncation, chat_template=self.chat_template)
        except ValueError as err:
            raise ConfigError(str(err)) from err
