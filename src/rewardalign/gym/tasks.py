"""Synthetic tasks whose gold reward is a program of both the prompt and the response.

Each task writes short plain-text prompts, imperfect demonstrations for SFT, and a gold reward in
``[0, 1]`` made of several facets: correctness against the prompt, plus a style preference that the
demonstrations show only at chance level (so SFT does not teach it and alignment has room to). The gold
reward accepts ANY string as a response (garbage scores 0) but raises on a prompt the task did not write.

Plain text layout (as :mod:`rewardalign.data.tokenize` joins it): ``prompt + response + EOS``; a response
starts with a space, so the byte-level BPE never merges across the prompt/response boundary.

Built-in tasks (:data:`rewardalign.gym.registry.TASKS`; any task, built in or not, is built by
:func:`rewardalign.gym.registry.get_task`):

- ``arithmetic``: ``"add 23 and 45 ="`` -> ``" 68 ."``; reward = 0.75 * digit accuracy + 0.25 * [" ." ending].
- ``sort``: ``"sort: d a c b ->"`` -> ``" a, b, c, d"``; reward = 0.75 * position accuracy + 0.25 * [commas].
- ``keyword``: ``"write 4 words with cat :"`` -> ``" cat sun red big"``;
  reward = 0.4 * [keyword used] + 0.4 * length closeness + 0.2 * [keyword first].
"""

from __future__ import annotations

import random
import re
from abc import ABC, abstractmethod
from typing import ClassVar

__all__ = ["ArithmeticTask", "KeywordTask", "SortTask", "Task"]


class Task(ABC):
    """A gym task: prompts, imperfect demonstrations and a gold reward of (prompt, response).

    Subclasses set ``name`` and implement :meth:`sample_prompt`, :meth:`gold_reward` and
    :meth:`demonstration`. Every random choice is drawn from the ``random.Random`` passed in, so a seed
    fixes the data.
    """

    name: ClassVar[str] = "task"
    reward_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    """(worst, best) gold reward: garbage gets the first, a perfect response the second."""
    max_new_tokens: int = 16
    """A generation budget (in tokens of a tiny BPE) that fits every well-formed response."""
    sft_steps: ClassVar[int] = 2000
    """The demo's cap on SFT optimizer steps for this task (its ``--sft_steps`` default)."""
    sft_patience: ClassVar[int] = 3
    """The demo's SFT early stopping: held-out evaluations without improvement before it stops (``--sft_patience``
    default); ``sft_steps // sft_eval_every`` or more trains to the cap and keeps the best evaluation."""

    @abstractmethod
    def sample_prompt(self, rng: random.Random) -> str:
        """A prompt of the task, drawn from ``rng``."""

    @abstractmethod
    def gold_reward(self, prompt: str, response: str) -> float:
        """The true reward of ``response`` to ``prompt``, in ``reward_range``, for any string."""

    @abstractmethod
    def facets(self, prompt: str, response: str) -> dict[str, float]:
        """The reward's facets, each in [0, 1]; ``gold_reward`` is their weighted sum."""

    @abstractmethod
    def demonstration(self, prompt: str, rng: random.Random) -> str:
        """An imperfect demonstration for SFT."""

    @abstractmethod
    def best_response(self, prompt: str) -> str:
        """A response with the maximal gold reward (for tests and as a ceiling in reports)."""

    def random_response(self, prompt: str, rng: random.Random) -> str:
        """A response that ignores ``prompt``: the chance level SFT must clearly beat (the demo's quality gate).
        By default a demonstration of another prompt drawn from the task, so it has the task's form but not
        this prompt's content; override it where that is not what chance means for a task."""
        return self.demonstration(self.sample_prompt(rng), rng)

    def corpus(self, rng: random.Random, n: int) -> list[str]:
        """``n`` texts covering the task's vocabulary, to train a tokenizer: for each prompt,
        prompt + demonstration and prompt + best response (``(n + 1) // 2`` prompts)."""
        texts = []
        for _ in range((n + 1) // 2):
            prompt = self.sample_prompt(rng)
            texts.append(prompt + self.demonstration(prompt, rng))
            texts.append(prompt + self.best_response(prompt))
        return texts[:n]

    @property
    def midpoint(self) -> float:
        lo, hi = self.reward_range
        return (lo + hi) / 2

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


def _check_prob(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


class ArithmeticTask(Task):
    """Add two numbers: ``"add 23 and 45 ="`` -> ``" 68 ."``.

    Gold reward in [0, 1]:  ``r = 0.75 * digits + 0.25 * period``

    - ``digits``: the response must start (after optional whitespace) with an integer ``y``; with ``g`` the
      true sum, ``digits = #{i : y[-i] == g[-i]} / max(len(y), len(g))``, digits compared right-aligned.
      A wrong length costs the missing or extra digits. No leading integer: the whole reward is 0.
    - ``period`` (style, not taught): 1 when the integer is followed by exactly ``" ."`` and nothing else
      (so trailing text also loses it), else 0.

    Demonstrations are the true sum with probability ``p_correct``, otherwise the sum with one digit
    replaced by a different random digit; they end with ``" ."`` with probability ``p_style``
    independently of everything else, so SFT learns the period at the demonstrations' rate only.
    """

    name = "arithmetic"
    max_new_tokens = 8
    # SFT's held-out gold rises until the end of the cosine schedule on every seed (seed 0: 0.45 at a 2000-step
    # cap, 0.64 at 4000); early stopping with patience 3-5 ended it at 1300-1500 steps, in the flat
    # high-learning-rate phase before the annealing tail where the gains come. So 4000 steps, no early stop.
    sft_steps, sft_patience = 4000, 40
    W_DIGITS, W_PERIOD = 0.75, 0.25
    _PROMPT = re.compile(r"add (\d+) and (\d+) =\Z")
    _RESPONSE = re.compile(r"\s*(\d+)(.*)\Z", re.S)

    def __init__(self, max_operand: int = 99, p_correct: float = 0.6, p_style: float = 0.5):
        if max_operand < 1:
            raise ValueError(f"max_operand must be >= 1, got {max_operand}")
        _check_prob("p_correct", p_correct)
        _check_prob("p_style", p_style)
        self.max_operand = max_operand
        self.p_correct = p_correct
        self.p_style = p_style

    def sample_prompt(self, rng: random.Random) -> str:
        a, b = rng.randint(0, self.max_operand), rng.randint(0, self.max_operand)
        return f"add {a} and {b} ="

    def _answer(self, prompt: str) -> str:
        m = self._PROMPT.match(prompt)
        if m is None:
            raise ValueError(f"not an {self.name} prompt: {prompt!r}")
        return str(int(m.group(1)) + int(m.group(2)))

    def facets(self, prompt: str, response: str) -> dict[str, float]:
        gold = self._answer(prompt)
        m = self._RESPONSE.match(response)
        if m is None:
            return {"digits": 0.0, "period": 0.0}
        pred = m.group(1)
        same = sum(a == b for a, b in zip(reversed(pred), reversed(gold)))
        return {"digits": same / max(len(pred), len(gold)), "period": float(m.group(2) == " .")}

    def gold_reward(self, prompt: str, response: str) -> float:
        f = self.facets(prompt, response)
        return self.W_DIGITS * f["digits"] + self.W_PERIOD * f["period"]

    def best_response(self, prompt: str) -> str:
        return f" {self._answer(prompt)} ."

    def demonstration(self, prompt: str, rng: random.Random) -> str:
        answer = self._answer(prompt)
        correct = rng.random() < self.p_correct
        style = rng.random() < self.p_style
        if not correct:
            digits = list(answer)
            i = rng.randrange(len(digits))
            choices = [
                d for d in "0123456789" if d != digits[i] and not (i == 0 and d == "0" and len(digits) > 1)
            ]
            digits[i] = rng.choice(choices)
            answer = "".join(digits)
        return f" {answer}" + (" ." if style else "")


class SortTask(Task):
    """Sort distinct letters: ``"sort: d a c b ->"`` -> ``" a, b, c, d"``.

    Gold reward in [0, 1]:  ``r = 0.75 * positions + 0.25 * commas``

    - ``positions``: the response split on commas and whitespace gives items ``y``; with ``g`` the sorted
      letters, ``positions = #{i : y[i] == g[i]} / max(len(y), len(g))``, so a missing, extra or misplaced
      item costs its share. An empty response scores 0.
    - ``commas`` (style, not taught): 1 when the response is exactly ``" " + ", ".join(items)`` with at least
      two items that are single lowercase letters, else 0.

    Demonstrations are sorted with probability ``p_correct``, otherwise the sorted list with two random
    positions swapped; they separate items with ``", "`` with probability ``p_style`` (else ``" "``).
    """

    name = "sort"
    max_new_tokens = 16
    W_POSITIONS, W_COMMAS = 0.75, 0.25
    _PROMPT = re.compile(r"sort:((?: [a-z])+) ->\Z")
    _COMMAS = re.compile(r" [a-z](?:, [a-z])+\Z")

    def __init__(
        self,
        min_items: int = 3,
        max_items: int = 6,
        alphabet: str = "abcdefghijkl",
        p_correct: float = 0.5,
        p_style: float = 0.5,
    ):
        if not 2 <= min_items <= max_items <= len(alphabet):
            raise ValueError(
                f"need 2 <= min_items ({min_items}) <= max_items ({max_items}) <= len(alphabet) ({len(alphabet)})"
            )
        if len(set(alphabet)) != len(alphabet) or not re.fullmatch(r"[a-z]+", alphabet):
            raise ValueError(f"alphabet must be distinct lowercase letters, got {alphabet!r}")
        _check_prob("p_correct", p_correct)
        _check_prob("p_style", p_style)
        self.min_items = min_items
        self.max_items = max_items
        self.alphabet = alphabet
        self.p_correct = p_correct
        self.p_style = p_style

    def sample_prompt(self, rng: random.Random) -> str:
        n = rng.randint(self.min_items, self.max_items)
        items = rng.sample(self.alphabet, n)
        return "sort: " + " ".join(items) + " ->"

    def _answer(self, prompt: str) -> list[str]:
        m = self._PROMPT.match(prompt)
        if m is None:
            raise ValueError(f"not a {self.name} prompt: {prompt!r}")
        return sorted(m.group(1).split())

    def facets(self, prompt: str, response: str) -> dict[str, float]:
        gold = self._answer(prompt)
        items = [t for t in re.split(r"[,\s]+", response) if t]
        if not items:
            return {"positions": 0.0, "commas": 0.0}
        same = sum(a == b for a, b in zip(items, gold))
        return {
            "positions": same / max(len(items), len(gold)),
            "commas": float(self._COMMAS.match(response) is not None),
        }

    def gold_reward(self, prompt: str, response: str) -> float:
        f = self.facets(prompt, response)
        return self.W_POSITIONS * f["positions"] + self.W_COMMAS * f["commas"]

    def best_response(self, prompt: str) -> str:
        return " " + ", ".join(self._answer(prompt))

    def demonstration(self, prompt: str, rng: random.Random) -> str:
        items = self._answer(prompt)
        correct = rng.random() < self.p_correct
        style = rng.random() < self.p_style
        if not correct:
            i, j = rng.sample(range(len(items)), 2)
            items[i], items[j] = items[j], items[i]
        return " " + (", " if style else " ").join(items)


KEYWORD_LEXICON = (
    "cat", "dog", "sun", "red", "big", "sea", "car", "hat", "run", "sky", "box", "tea",
    "old", "new", "hot", "cold", "blue", "tree", "fish", "bird", "rain", "moon", "star", "road",
)  # fmt: skip


class KeywordTask(Task):
    """Write a given number of words including a keyword: ``"write 4 words with cat :"`` -> ``" cat sun red big"``.

    Gold reward in [0, 1]:  ``r = 0.4 * keyword + 0.4 * length + 0.2 * first``

    With ``t`` the target count, ``k`` the keyword and ``w`` the response's whitespace-separated tokens:

    - a response with no token from the task's lexicon scores 0 on every facet (garbage);
    - ``keyword``: 1 if ``k`` is one of ``w``;
    - ``length``: ``max(0, 1 - |len(w) - t| / t)``, counting every token (junk included);
    - ``first`` (style, not taught): 1 if ``w[0] == k``.

    Demonstrations have ``t + d`` words, ``d`` drawn from ``length_noise`` (default -1, 0, 0, +1) and at
    least one; they include the keyword with probability ``p_keyword`` at a uniformly random position
    (so it comes first only at chance, ``1 / len(w)``); the other words are random lexicon words.
    """

    name = "keyword"
    max_new_tokens = 12
    W_KEYWORD, W_LENGTH, W_FIRST = 0.4, 0.4, 0.2
    _PROMPT = re.compile(r"write (\d+) words with ([a-z]+) :\Z")

    def __init__(
        self,
        min_words: int = 2,
        max_words: int = 6,
        p_keyword: float = 0.7,
        length_noise: tuple[int, ...] = (-1, 0, 0, 1),
        lexicon: tuple[str, ...] = KEYWORD_LEXICON,
    ):
        if not 1 <= min_words <= max_words:
            raise ValueError(f"need 1 <= min_words ({min_words}) <= max_words ({max_words})")
        if len(set(lexicon)) < 2 or not all(re.fullmatch(r"[a-z]+", w) for w in lexicon):
            raise ValueError("lexicon must hold at least two distinct lowercase words")
        if not length_noise:
            raise ValueError("length_noise must hold at least one offset")
        _check_prob("p_keyword", p_keyword)
        self.min_words = min_words
        self.max_words = max_words
        self.p_keyword = p_keyword
        self.length_noise = tuple(length_noise)
        self.lexicon = tuple(lexicon)

    def sample_prompt(self, rng: random.Random) -> str:
        return f"write {rng.randint(self.min_words, self.max_words)} words with {rng.choice(self.lexicon)} :"

    def _parse(self, prompt: str) -> tuple[int, str]:
        m = self._PROMPT.match(prompt)
        if m is None or m.group(2) not in self.lexicon or int(m.group(1)) < 1:
            raise ValueError(f"not a {self.name} prompt: {prompt!r}")
        return int(m.group(1)), m.group(2)

    def facets(self, prompt: str, response: str) -> dict[str, float]:
        target, keyword = self._parse(prompt)
        words = response.split()
        if not any(w in self.lexicon for w in words):
            return {"keyword": 0.0, "length": 0.0, "first": 0.0}
        return {
            "keyword": float(keyword in words),
            "length": max(0.0, 1.0 - abs(len(words) - target) / target),
            "first": float(words[0] == keyword),
        }

    def gold_reward(self, prompt: str, response: str) -> float:
        f = self.facets(prompt, response)
        return self.W_KEYWORD * f["keyword"] + self.W_LENGTH * f["length"] + self.W_FIRST * f["first"]

    def best_response(self, prompt: str) -> str:
        target, keyword = self._parse(prompt)
        others = [w for w in self.lexicon if w != keyword]
        return " " + " ".join([keyword] + [others[i % len(others)] for i in range(target - 1)])

    def demonstration(self, prompt: str, rng: random.Random) -> str:
        target, keyword = self._parse(prompt)
        n = max(1, target + rng.choice(self.length_noise))
        others = [w for w in self.lexicon if w != keyword]
        words = [rng.choice(others) for _ in range(n)]
        if rng.random() < self.p_keyword:
            words[rng.randrange(n)] = keyword
        return " " + " ".join(words)
