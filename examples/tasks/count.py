"""A gym task defined outside the library: count from one number to another (a second worked example).

    rewardalign demo --task examples/tasks/count.py:CountTask --quick
    python benchmarks/claims.py --tasks arithmetic,sort,examples/tasks/count.py:CountTask --quick
"""

from __future__ import annotations

import random
import re

from rewardalign.gym import Task


class CountTask(Task):
    """Count up: ``"count from 3 to 7 :"`` -> ``" 3 4 5 6 7 ."``.

    Gold reward in [0, 1]:  ``r = 0.75 * positions + 0.25 * period``

    - ``positions``: with ``y`` the response's whitespace-separated items before an optional final ``"."`` and
      ``g`` the numbers from start to end, ``#{i : y[i] == g[i]} / max(len(y), len(g))``; a response without items
      scores 0 on both facets;
    - ``period`` (style, not taught): 1 when the numbers are followed by exactly ``" ."``.

    Prompts: a start in ``0..max_start`` and a run of ``min_len``-``max_len`` numbers. Demonstrations replace each
    number by another one (within 0..start + max_len) with probability ``p_replace``, drop the last number or add
    the next one with probability ``p_length`` (even odds), and end with ``" ."`` with probability ``p_style``.
    """

    name = "count"
    max_new_tokens = 24
    W_POSITIONS, W_PERIOD = 0.75, 0.25
    _PROMPT = re.compile(r"count from (\d+) to (\d+) :\Z")

    def __init__(self, max_start: int = 9, min_len: int = 3, max_len: int = 6, p_replace: float = 0.2,
                 p_length: float = 0.3, p_style: float = 0.5):
        if max_start < 0 or not 2 <= min_len <= max_len:
            raise ValueError(f"need max_start >= 0 and 2 <= min_len ({min_len}) <= max_len ({max_len})")
        for name, p in (("p_replace", p_replace), ("p_length", p_length), ("p_style", p_style)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        self.max_start, self.min_len, self.max_len = max_start, min_len, max_len
        self.p_replace, self.p_length, self.p_style = p_replace, p_length, p_style

    def sample_prompt(self, rng: random.Random) -> str:
        start = rng.randint(0, self.max_start)
        return f"count from {start} to {start + rng.randint(self.min_len, self.max_len) - 1} :"

    def _answer(self, prompt: str) -> list[str]:
        m = self._PROMPT.match(prompt)
        if m is None or int(m.group(2)) < int(m.group(1)):
            raise ValueError(f"not a {self.name} prompt: {prompt!r}")
        return [str(n) for n in range(int(m.group(1)), int(m.group(2)) + 1)]

    def facets(self, prompt: str, response: str) -> dict[str, float]:
        gold, items = self._answer(prompt), response.split()
        period = bool(items) and items[-1] == "." and response.endswith(" .")
        numbers = items[:-1] if period else items
        if not numbers:
            return {"positions": 0.0, "period": 0.0}
        right = sum(a == b for a, b in zip(numbers, gold)) / max(len(numbers), len(gold))
        return {"positions": right, "period": float(period)}

    def gold_reward(self, prompt: str, response: str) -> float:
        f = self.facets(prompt, response)
        return self.W_POSITIONS * f["positions"] + self.W_PERIOD * f["period"]

    def best_response(self, prompt: str) -> str:
        return " " + " ".join(self._answer(prompt)) + " ."

    def demonstration(self, prompt: str, rng: random.Random) -> str:
        gold = self._answer(prompt)
        top = int(gold[0]) + self.max_len
        numbers = [str(rng.choice([n for n in range(top + 1) if str(n) != x])) if rng.random() < self.p_replace
                   else x for x in gold]
        if rng.random() < self.p_length:
            numbers = numbers[:-1] if rng.random() < 0.5 else numbers + [str(int(gold[-1]) + 1)]
        return " " + " ".join(numbers) + (" ." if rng.random() < self.p_style else "")
