"""The gym: synthetic tasks with a known gold reward, and feedback of every kind derived from it.

A task (:mod:`.tasks`) writes short prompts, imperfect demonstrations for SFT and a gold reward of
(prompt, response) with several facets; :mod:`.registry` builds one from a built-in name or from code outside
the library (``package.module:Class``, ``path/to/file.py:Class``; docs/tasks.md); :mod:`.data` makes seeded data
sets of it; :mod:`.feedback` turns sampled responses into groups with rewards, scores, labels and Bradley-Terry
preference pairs. A task's gold reward as a reward source is :class:`rewardalign.rewards.sources.GymSource`
(spec ``gym:<task>``, ``gym:path/to/file.py:Class``).
"""

from .data import make_corpus, make_prompts, make_sft_data, read_jsonl, write_jsonl
from .feedback import (
    FeedbackConfig,
    bt_preference,
    bt_probability,
    build_groups,
    build_pairs,
    reward_labels,
    reward_to_score,
)
from .registry import TASKS, get_task, task_identity
from .tasks import ArithmeticTask, KeywordTask, SortTask, Task

__all__ = [
    "TASKS",
    "ArithmeticTask",
    "FeedbackConfig",
    "KeywordTask",
    "SortTask",
    "Task",
    "bt_preference",
    "bt_probability",
    "build_groups",
    "build_pairs",
    "get_task",
    "make_corpus",
    "make_prompts",
    "make_sft_data",
    "read_jsonl",
    "reward_labels",
    "reward_to_score",
    "task_identity",
    "write_jsonl",
]
