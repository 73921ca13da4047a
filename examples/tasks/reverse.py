"""A gym task defined outside the library: reverse a string of letters (the worked example of docs/tasks.md).

    rewardalign demo --task examples/tasks/reverse.py:ReverseTask --quick
    rewardalign demo --task examples/tasks/reverse.py:ReverseTask --task_args '{max_len: 5}'
    rewardalign evaluate --judge gym:examples/tasks/reverse.py:ReverseTask ...
"""

from __future__ import annotations

import random
import re

from rewardalign.gym import Task


class ReverseTask(Task):
    """Reverse a string of letters: ``"reverse: c a h e ->"`` -> ``" e h a c"``.

    Gold reward in [0, 1]: the share of positions right, ``#{i : y[i] == g[i]} / max(len(y), len(g))``, with ``y``
    the response's whitespace-separated items and ``g`` the reversed letters; a missing, extra or misplaced item
    costs its share, a response without items scores 0.

    Prompts: ``min_len``-``max_len`` letters drawn (with repeats) from ``alphabet``. Demonstrations are the reversed
    letters with each replaced by another letter with probability ``p_replace``; then, with probability
    ``p_length``, a random letter is appended or the last one dropped (even odds).
    """

    name = "reverse"
    max_new_tokens = 12
    _PROMPT = re.compile(r"reverse:((?: [a-z])+) ->\Z")

    def __init__(self, min_len: int = 4, max_len: int = 7, alphabet: str = "abcdefgh", p_replace: float = 0.35,
                 p_length: float = 0.3):
        if not 2 <= min_len <= max_len:
            raise ValueError(f"need 2 <= min_len ({min_len}) <= max_len ({max_len})")
        if len(set(alphabet)) < 2 or not re.fullmatch(r"[a-z]+", alphabet):
            raise ValueError(f"alphabet must hold at least two lowercase letters, got {alphabet!r}")
        for name, p in (("p_replace", p_replace), ("p_length", p_length)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        self.min_len, self.max_len, self.alphabet = min_len, max_len, alphabet
        self.p_replace, self.p_length = p_replace, p_length

    def sample_prompt(self, rng: random.Random) -> str:
        letters = [rng.choice(self.alphabet) for _ in range(rng.randint(self.min_len, self.max_len))]
        return "reverse: " + " ".join(letters) + " ->"

    def _answer(self, prompt: str) -> list[str]:
        m = self._PROMPT.match(prompt)
        if m is None:
            raise ValueError(f"not a {self.name} prompt: {prompt!r}")
        return m.group(1).split()[::-1]

    def facets(self, prompt: str, response: str) -> dict[str, float]:
        gold, items = self._answer(prompt), response.split()
        if not items:
            return {"positions": 0.0}
        return {"positions": sum(a == b for a, b in zip(items, gold)) / max(len(items), len(gold))}

    def gold_reward(self, prompt: str, response: str) -> float:
        return self.facets(prompt, response)["positions"]

    def best_response(self, prompt: str) -> str:
        return " " + " ".join(self._answer(prompt))

    def demonstration(self, prompt: str, rng: random.Random) -> str:
        letters = [rng.choice([c for c in self.alphabet if c != x]) if rng.random() < self.p_replace else x
                   for x in self._answer(prompt)]
        if rng.random() < self.p_length:
            letters = letters + [rng.choice(self.alphabet)] if rng.random() < 0.5 else letters[:-1]
        return " " + " ".join(letters)
