"""YAML configs with command-line overrides of any field.

``rewardalign align --config align.yaml --learning_rate 1e-5 --objective_args.beta 0.2``: every ``--key value``
after the known arguments sets ``key`` (dots reach into nested mappings); values are read as YAML scalars,
so ``1e-5`` is a float, ``true`` a bool and ``[1, 2]`` a list. A flag with no value is ``true``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

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


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss or gradient); the message names the step and the groups of its
    batch. Nothing is saved after the last checkpoint. The CLI reports it as one line."""


def load_yaml(path: str | Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} " + ("is a directory" if path.is_dir() else "does not exist"))
    try:
        data = load_yaml_text(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path}: not UTF-8 text (byte {err.start})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"config file {path}{where}: not valid YAML ({problem})") from None
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


TRAINING_ARGS_NOTE = ("Any transformers TrainingArguments field (output_dir, learning_rate, max_steps, "
                      "per_device_train_batch_size, ...) sits beside these fields and is passed to the trainer.")


FORMAT_OPTIONS_HELP = ("load options: {score_range: [LO, HI]} (a score column's declared range), "
                       "{score_field: rewards}, {expected_k: 4}, or the format's own")


def opt(default: Any = None, help: str = "", *, factory: Any = None) -> Any:
    """A config field with its help text (the HF ``HfArgumentParser`` convention: ``metadata["help"]``)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


def field_help(cls: type) -> str:
    """Every field of dataclass ``cls`` with its default and help text, one per line (what ``--help`` shows)."""
    lines = []
    for f in dataclasses.fields(cls):
        if f.name == "training":
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        help_text = f.metadata.get("help", "")
        lines.append(f"  --{f.name} (default: {default!r})" + (f"\n      {help_text}" if help_text else ""))
    return "\n".join(lines)


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, notes: str = "") -> None:
    """A command's ``--config`` option, and an epilog listing each field of dataclass ``cls`` (default, help)
    then ``notes``."""
    parser.add_argument("--config", help="YAML config; any field can also be given as --field value")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "config fields:\n" + field_help(cls) + ("\n\n" + notes if notes else "")


_KINDS = {(bool,): "true or false", (int,): "an integer", (int, float): "a number", (str, os.PathLike): "a string",
          (list, tuple): "a list", (dict,): "a mapping"}


def field_kinds(cls: type) -> dict[str, tuple[type, ...]]:
    """Field name -> the Python types a value may have, for each field of dataclass ``cls`` whose type is one of
    bool, int, float, str, a list or a dict (optional or not); fields of any other type are left out."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        kinds = {typing.get_origin(a) or a for a in (typing.get_args(hint) if union else (hint,))} - {type(None)}
        kinds = {float} if kinds == {int, float} else kinds
        kind = {frozenset({bool}): (bool,), frozenset({int}): (int,), frozenset({float}): (int, float),
                frozenset({str}): (str, os.PathLike), frozenset({list}): (list, tuple), frozenset({dict}): (dict,)}
        if frozenset(kinds) in kind:
            out[f.name] = kind[frozenset(kinds)]
    return out


def check_types(cls: type, data: dict[str, Any], what: str) -> None:
    """Each value of ``data`` (None aside) has its field's type in dataclass ``cls`` (:func:`field_kinds`); a
    ConfigError names the field, the expected type and the value."""
    kinds = field_kinds(cls)
    for name, value in data.items():
        wanted = kinds.get(name)
        if value is None or wanted is None:
            continue
        if isinstance(value, bool) != (wanted == (bool,)) or not isinstance(value, wanted):
            hint = f" (on the command line: --{name} '[{value}]')" if wanted == (list, tuple) and isinstance(
                value, str) else ""
            raise ConfigError(f"{what} field {name} must be {_KINDS[wanted]}, got {value!r}{hint}")


def from_dict(cls: type[T], data: dict[str, Any], what: str) -> T:
    """Build dataclass ``cls`` from ``data``; an unknown field is an error that lists the known ones. A ``cls``
    with a ``training`` field takes every other key there (transformers ``TrainingArguments`` fields, checked
    when the run builds them)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown and "training" in names:
        rest = {k: data[k] for k in unknown}
        data = {k: v for k, v in data.items() if k in names}
        data["training"] = {**dict(data.get("training") or {}), **rest}
        unknown = []
    if unknown:
        raise ConfigError(f"unknown {what} field(s) {unknown}; known fields: {sorted(names)}")
    check_types(cls, data, what)
    try:
        return cls(**data)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"bad {what} config: {err}") from err


def as_config(cls: type[T], value: T | dict[str, Any], what: str) -> T:
    """``value`` when it is already a ``cls``; a mapping (a YAML file's content) is built into one."""
    return value if isinstance(value, cls) else from_dict(cls, dict(value), what)


def flat_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as the flat mapping its YAML file holds: ``training`` fields beside the others."""
    out = dataclasses.asdict(cfg)
    return out | dict(out.pop("training", None) or {})


def hub_offline() -> bool:
    """Whether the Hugging Face Hub is off limits (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` set true)."""
    return any(os.environ.get(name, "").upper() in {"1", "ON", "YES", "TRUE"}
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def could_be_hub_id(name: str) -> bool:
    """A name transformers may fetch from the Hub: ``org/name`` by the Hub's rules, whose ``org`` is not a local
    directory (``runs/nope`` with a ``runs/`` here is a missing local path, not a Hub id)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    org, sep, _ = name.partition("/")
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return bool(sep) and not Path(org).exists()


def check_model_path(path: str | None, what: str = "model", *, hub: bool = True,
                     marker: tuple[str, ...] = ("config.json",)) -> None:
    """Fail before any loading, with no network call, unless ``path`` is a local directory that holds one of
    ``marker`` (any directory for an empty ``marker``) or (``hub``) an ``org/name`` Hub id (:func:`could_be_hub_id`; with ``HF_HUB_OFFLINE`` set, only
    one already in the local Hub cache)."""
    if not path:
        raise ConfigError(f"no {what} given" + (f": set `{what}: PATH` in the config or pass --{what} PATH"
                                                 if what.isidentifier() else ""))
    p = Path(path).expanduser()
    if p.is_dir():
        if marker and not any((p / name).is_file() for name in marker):
            raise ConfigError(f"{what} '{path}' is not a model directory (no {' or '.join(marker)} there)")
        return
    if p.exists():
        raise ConfigError(f"{what} '{path}' is a file, not a model directory (a save_pretrained directory)")
    if hub and could_be_hub_id(str(path)):
        if not hub_offline():
            return
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(str(path), "config.json"), str):
            return
        raise ConfigError(f"{what} '{path}' is not a local directory and HF_HUB_OFFLINE is set: the Hub model "
                          "is not in the local cache")
    raise ConfigError(f"{what} '{path}' does not exist (no such directory" + (
        "; a Hub model is named org/name)" if hub else ")"))


def check_data_path(path: str | None, what: str = "data") -> None:
    """A data argument that names a local file (it has a suffix, a directory part or starts with ``.``) must
    exist; anything else may be a Hub data set name, left to the loader."""
    if not path:
        raise ConfigError(f"no {what} given: set `{what}: PATH` in the config or pass --{what} PATH")
    p = Path(path).expanduser()
    local = p.suffix or p.is_absolute() or path.startswith(".") or Path(path.partition("/")[0]).is_dir()
    if local and not p.exists():
        raise ConfigError(f"{what} file '{path}' does not exist")


@dataclass
class ModelFields:
    """Config fields of every command that loads a causal LM: which one, in what precision, and how it runs."""

    model: str | None = opt(None, "the policy: a save_pretrained directory (or a hub id where a network exists)")
    torch_dtype: str = opt("float32", "weights' dtype: float32, bfloat16 or float16")
    logprob_chunk_size: int = opt(1024, "rows of the vocabulary projection computed at once (memory vs speed)")
    dropout: bool = opt(False, "keep the model's dropout during training (off by default, as in TRL)")
    trust_remote_code: bool = opt(False, "run the model repository's own code (only for code you trust)")
    attn_implementation: str | None = opt(None, "sdpa, eager, flash_attention_2 or flex_attention; "
                                                "transformers' choice when unset")


@dataclass
class RunFields(ModelFields):
    """Config fields of every command that trains on a data set: where it is, its format, how it is tokenised,
    and the transformers ``TrainingArguments`` (``training``; flat in YAML and on the command line)."""

    data: str | None = opt(None, "training data: a JSONL/JSON/CSV/Parquet file, a save_to_disk directory")
    format: str | None = opt(None, "pairs, binary, scores, ultrafeedback, helpsteer or group; detected if unset")
    format_options: dict[str, Any] = opt(help=FORMAT_OPTIONS_HELP, factory=dict)
    split: str | None = opt(None, "the split of a datasets directory or hub data set")
    on_error: str = opt("raise", "a bad row: raise (stop, naming file, row, field) or drop (count and report)")
    max_length: int = opt(512, "longest prompt + response, in tokens")
    max_prompt_length: int | None = opt(None, "longest prompt, in tokens (default: max_length // 2)")
    truncation: str = opt("truncate", "too long: truncate (keep the prompt's end, the response's start) or drop")
    chat_template: str = opt("auto", "auto (message lists only), always (wrap plain text) or never")
    overwrite_output_dir: bool = opt(False, "replace the outputs of another run in output_dir (they are removed "
                                            "first); without it such a folder is refused")
    training: dict[str, Any] = opt(help="transformers TrainingArguments fields", factory=dict)
