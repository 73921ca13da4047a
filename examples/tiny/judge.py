"""A rule judge for the tiny example: the gold reward of "add A and B =" answers.

    rewardalign evaluate ... --judge rule:examples/tiny/judge.py:exact_answer
"""

import re


def exact_answer(prompt: str, response: str) -> float:
    """-|answer - (A + B)| for a response that starts with a number, -10 for one that does not."""
    a, b = (int(x) for x in re.findall(r"-?\d+", prompt)[:2])
    match = re.match(r"\s*(-?\d+)", response)
    return -abs(int(match.group(1)) - (a + b)) if match else -10.0
