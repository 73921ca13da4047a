"""Writes the tiny example's data files (run once; the outputs are committed).

A toy task: "add A and B =" answered by a number. groups.jsonl: K = 4 answers with reward -|answer - (A + B)|,
score exp(-|error| / 3) in [0, 1], label 1 for the exact answer, and two noisy reward "members" standing in
for an ensemble. pairs.jsonl: the correct number against a wrong, hedged or repeated answer. sft.jsonl:
demonstrations that are right 60% of the time.

    python examples/tiny/make_data.py
"""

import json
import math
import random
from pathlib import Path

OUT = Path(__file__).parent / "data"


def prompt_and_answer(rng: random.Random) -> tuple[str, int]:
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    return f"add {a} and {b} =", a + b


def main() -> None:
    rng = random.Random(0)
    OUT.mkdir(exist_ok=True)
    with (OUT / "sft.jsonl").open("w") as f:
        for _ in range(400):
            prompt, answer = prompt_and_answer(rng)
            guess = answer if rng.random() < 0.6 else answer + rng.choice([-2, -1, 1, 2])
            f.write(json.dumps({"prompt": prompt, "responses": [f" {guess}"]}) + "\n")
    with (OUT / "groups.jsonl").open("w") as f:
        for _ in range(96):
            prompt, answer = prompt_and_answer(rng)
            guesses = [answer] + rng.sample([answer + d for d in (-3, -2, -1, 1, 2, 3)], 3)
            rng.shuffle(guesses)
            errors = [abs(g - answer) for g in guesses]
            rewards = [0.0 - e for e in errors]
            f.write(json.dumps({
                "prompt": prompt,
                "responses": [f" {g}" for g in guesses],
                "rewards": rewards,
                "scores": [round(math.exp(-e / 3), 4) for e in errors],
                "labels": [int(e == 0) for e in errors],
                "reward_members": [[round(r + rng.gauss(0, 0.3), 3) for r in rewards] for _ in range(2)],
            }) + "\n")
    with (OUT / "pairs.jsonl").open("w") as f:
        # Preferences of an annotator who wants the bare correct number: the rejected answer is wrong,
        # hedged or repeated (the last two are learnable from the text alone by a tiny reward model).
        for _ in range(240):
            prompt, answer = prompt_and_answer(rng)
            wrong = answer + rng.choice([-3, -2, -1, 1, 2, 3])
            rejected = rng.choice([f" {wrong}", f" maybe {wrong} or so", f" {answer} {answer} {answer}"])
            f.write(json.dumps({"prompt": prompt, "chosen": f" {answer}", "rejected": rejected}) + "\n")

if __name__ == "__main__":
    main()
