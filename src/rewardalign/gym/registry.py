"""Every way of naming a gym task, and what makes a task what it is (for cache keys).

A task is named by a built-in name (:data:`TASKS`: ``arithmetic``, ``sort``, ``keyword``) or by the code that
defines it: ``package.module:Class`` or ``path/to/file.py:Class`` (a :class:`~.tasks.Task` subclass, or any
callable returning a Task), loaded by the package's one code loader (:func:`rewardalign.imports.load_object`).
The spec string, not the class, is what crosses process boundaries (spawn workers load it again).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config import ConfigError
from ..fingerprint import code_identity
from ..imports import load_object
from .tasks import ArithmeticTask, KeywordTask, SortTask, Task

__all__ = ["TASKS", "get_task", "task_identity"]

TASKS: dict[str, Callable[..., Task]] = {
    ArithmeticTask.name: ArithmeticTask,
    SortTask.name: SortTask,
    KeywordTask.name: KeywordTask,
}
"""Built-in task name -> factory; the factory's keyword arguments are the task's knobs."""


def get_task(spec: str, **kwargs: Any) -> Task:
    """The task ``spec`` names, built with ``kwargs`` (its knobs): ``get_task("sort", max_items=5)``,
    ``get_task("examples/tasks/reverse.py:ReverseTask")``, ``get_task("my_pkg.tasks:Chess", depth=2)``.

    An unknown name, code that cannot be loaded, an object that is not a task or bad knobs are one
    :class:`~rewardalign.config.ConfigError` saying what to change.
    """
    spec = str(spec)
    if ":" in spec:
        factory = load_object(spec, "gym task", "Class")
        if isinstance(factory, type) and not issubclass(factory, Task):
            raise ConfigError(f"gym task {spec!r}: {factory.__name__} is not a subclass of rewardalign.gym.Task")
        if not callable(factory):
            raise ConfigError(f"gym task {spec!r} is neither a Task subclass nor a callable returning a Task")
    elif spec in TASKS:
        factory = TASKS[spec]
    else:
        raise ConfigError(f"unknown gym task {spec!r}; built-in tasks: {', '.join(sorted(TASKS))}; or name your own "
                          f"task as package.module:Class or path/to/file.py:Class (see docs/tasks.md)")
    try:
        task = factory(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"gym task {spec!r} with task_args {kwargs}: {err}") from None
    if not isinstance(task, Task):
        raise ConfigError(f"gym task {spec!r} gave a {type(task).__name__}, not a rewardalign.gym.Task")
    return task


def task_identity(task: Task) -> dict[str, Any]:
    """What makes ``task`` the task it is, for cache keys: its knobs (``repr``) and the source of every class it
    derives from (the content of their modules' files), so an edited task file invalidates every cache."""
    classes = [c for c in type(task).__mro__ if c not in (object, Task) and c.__module__ != "abc"]
    return {"task": repr(task), "code": [code_identity(c) for c in classes]}
