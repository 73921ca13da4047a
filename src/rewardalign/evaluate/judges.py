"""Judges: whatever scores a (prompt, response) pair with a float, and the spec strings that name them.

A judge is any callable ``judge(prompt, response) -> float``. The prompt is passed as the data holds it
(a string, or a chat message list for conversational data), the response as the decoded text. A judge with a
``batch(prompts, responses) -> list[float]`` method (the gym's ``GoldJudge``) is called once per batch.

Spec strings (config field ``judge``):

- ``gym:<task>``: the gold reward of a gym task, ``rewardalign.gym.get_task(task).gold_reward``;
- ``rule:<module>:<function>``: a function importable as ``module.function`` (``module`` may be dotted; when
  it is not importable from ``sys.path``, the current directory is tried too), or ``rule:<file.py>:<function>``
  for a function in a Python file;
- ``rm:<path>``: a reward model or ensemble directory written by ``rewardalign train-rm``, as the reward source
  ``rewardalign.rewards.build_source(path)``; its ``score(prompts, responses)`` gives the rewards (an ensemble's
  [N, M] member rewards are averaged).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ConfigError
from ..data.schema import Text

Judge = Callable[[Text, str], float]


class NamedJudge:
    """A judge function under the name of its spec string (what reports show)."""

    def __init__(self, fn: Judge, name: str):
        self.fn = fn
        self.name = name

    def __call__(self, prompt: Text, response: str) -> float:
        return self.fn(prompt, response)


class BatchJudge:
    """A judge built on a batch scorer ``score(prompts, responses) -> sequence of floats``."""

    def __init__(self, score: Callable[[list[Text], list[str]], Any], name: str):
        self.score = score
        self.name = name

    def __call__(self, prompt: Text, response: str) -> float:
        return self.batch([prompt], [response])[0]

    def batch(self, prompts: list[Text], responses: list[str]) -> list[float]:
        values = self.score(list(prompts), list(responses))
        values = values.tolist() if hasattr(values, "tolist") else values
        return [float(v) for v in values]


def _gym_judge(task: str) -> Judge:
    from .. import gym

    try:
        return gym.get_task(task).gold_reward
    except ValueError as err:
        raise ConfigError(f"judge gym:{task}: {err}") from err


def _import_module(name: str) -> Any:
    if name.endswith(".py") or os.sep in name or "/" in name:
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"judge file {path} does not exist")
        spec = importlib.util.spec_from_file_location(f"rewardalign_judge_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    missing = None
    for extra in ([], [os.getcwd()]):  # sys.path first, then the current directory (as `python -m` would)
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
    raise ConfigError(f"judge module {name!r} cannot be imported ({missing}); give a file path "
                      f"(rule:path/to/file.py:function) or put it on PYTHONPATH")


def _rule_judge(target: str) -> Judge:
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"judge rule:{target}: write rule:module:function or rule:path/file.py:function")
    module = _import_module(module_name)
    judge = getattr(module, attr, None)
    if not callable(judge):
        raise ConfigError(f"judge rule:{target}: {module_name} has no callable {attr!r}")
    return judge


def _rm_judge(path: str) -> Judge:
    from .. import rewards

    source = rewards.build_source(path)  # a reward model or an ensemble directory; loads on first score

    def score(prompts: list[Text], responses: list[str]) -> np.ndarray:
        values = np.asarray(source.score(prompts, responses), dtype=np.float64)
        return values.mean(axis=1) if values.ndim == 2 else values  # an ensemble: the mean of its members

    return BatchJudge(score, f"rm:{path}")


def resolve_judge(spec: str) -> Judge:
    """The judge a spec string names (see the module docstring); its ``name`` is the spec."""
    kind, sep, target = str(spec).partition(":")
    builders = {"gym": _gym_judge, "rule": _rule_judge, "rm": _rm_judge}
    if not sep or kind not in builders or not target:
        raise ConfigError(f"judge {spec!r}: write gym:<task>, rule:<module>:<function> or rm:<path>")
    judge = builders[kind](target)
    return judge if isinstance(judge, BatchJudge) else NamedJudge(judge, spec)


def judge_name(judge: Any) -> str:
    name = getattr(judge, "name", None)
    if isinstance(name, str):
        return name
    owner = getattr(judge, "__self__", None)
    if owner is not None and hasattr(owner, "name"):
        return f"{type(owner).__name__}({owner.name}).{judge.__name__}"
    return f"{getattr(judge, '__module__', '?')}.{getattr(judge, '__qualname__', type(judge).__name__)}"


def score_responses(judge: Judge, prompts: Sequence[Text], responses: Sequence[str]) -> list[float]:
    """The judge's reward of each (prompt, response); a non-finite reward is an error naming the sample."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
    batch = getattr(judge, "batch", None)
    if callable(batch):
        values = [float(v) for v in batch(list(prompts), list(responses))]
    else:
        values = [float(judge(p, r)) for p, r in zip(prompts, responses)]
    if len(values) != len(responses):
        raise ValueError(f"the judge returned {len(values)} rewards for {len(responses)} responses")
    for i, v in enumerate(values):
        if not math.isfinite(v):
            raise ValueError(f"the judge returned {v} for sample {i} (prompt {prompts[i]!r}, "
                             f"response {responses[i]!r})")
    return values
