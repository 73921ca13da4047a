"""The gym: gold rewards on hand-made cases, imperfect demonstrations, determinism, and the feedback built
from the gold reward (Bradley-Terry preferences, scores, labels)."""

from __future__ import annotations

import math
import multiprocessing
import random
import statistics
from pathlib import Path

import pytest

from rewardalign.config import ConfigError
from rewardalign.data.schema import DropReport, validate_group
from rewardalign.gym import (
    TASKS,
    ArithmeticTask,
    FeedbackConfig,
    KeywordTask,
    SortTask,
    Task,
    bt_preference,
    bt_probability,
    build_groups,
    build_pairs,
    get_task,
    make_corpus,
    make_prompts,
    make_sft_data,
    read_jsonl,
    reward_labels,
    reward_to_score,
    task_identity,
    write_jsonl,
)
from rewardalign.rewards.sources import GymSource, build_source
from rewardalign.train.configs import OnlineConfig
from rewardalign.train.online import online_prompts

GARBAGE = ["", "   ", "!!??", "\n\x00\ufffd", "</s><pad>", "zzzz qqqq", "- . ,"]


# ----------------------------------------------------------------------------------------------- gold rewards


def test_arithmetic_gold_reward_hand_cases():
    t = ArithmeticTask()
    p = "add 23 and 45 ="  # sum 68
    assert t.gold_reward(p, " 68 .") == 1.0
    assert t.best_response(p) == " 68 ."
    assert t.gold_reward(p, " 68") == 0.75  # correct, no period: loses the 0.25 style facet
    assert t.gold_reward(p, " 61 .") == pytest.approx(0.75 * 0.5 + 0.25)  # one of two digits right
    assert t.gold_reward(p, " 61") == pytest.approx(0.375)
    assert t.gold_reward(p, " 168 .") == pytest.approx(0.75 * 2 / 3 + 0.25)  # an extra digit costs its share
    assert t.gold_reward(p, " 8 .") == pytest.approx(0.75 * 1 / 2 + 0.25)  # a missing digit too
    assert t.gold_reward(p, " 68 . more") == 0.75  # trailing text loses the period facet
    assert t.gold_reward(p, " 68.") == 0.75  # the facet is exactly " ."
    assert t.gold_reward(p, " 12 .") == 0.25  # wrong number: the style facet alone
    assert t.gold_reward("add 99 and 1 =", " 100 .") == 1.0
    for g in GARBAGE + [" . 68", "sixty-eight"]:
        assert t.gold_reward(p, g) == 0.0, g


def test_sort_gold_reward_hand_cases():
    t = SortTask()
    p = "sort: d a c b ->"
    assert t.gold_reward(p, " a, b, c, d") == 1.0
    assert t.best_response(p) == " a, b, c, d"
    assert t.gold_reward(p, " a b c d") == 0.75  # correct, no commas
    assert t.gold_reward(p, " a, c, b, d") == pytest.approx(0.75 * 2 / 4 + 0.25)  # a swap costs two positions
    assert t.gold_reward(p, " a b c") == pytest.approx(0.75 * 3 / 4)  # a missing item
    assert t.gold_reward(p, " a b c d e") == pytest.approx(0.75 * 4 / 5)  # an extra item
    assert t.gold_reward(p, " a,b,c,d") == 0.75  # the facet is exactly ", "
    assert t.gold_reward(p, " d, c, b, a") == 0.25  # reversed: no position right, style only
    for g in GARBAGE:
        assert t.gold_reward(p, g) == 0.0, g


def test_keyword_gold_reward_hand_cases():
    t = KeywordTask()
    p = "write 4 words with cat :"
    assert t.gold_reward(p, " cat sun red big") == 1.0
    assert t.gold_reward(p, t.best_response(p)) == 1.0
    assert t.gold_reward(p, " sun cat red big") == pytest.approx(0.8)  # keyword not first
    assert t.gold_reward(p, " sun dog red big") == pytest.approx(0.4)  # no keyword: length only
    assert t.gold_reward(p, " cat sun red") == pytest.approx(0.4 + 0.4 * 0.75 + 0.2)  # one word short
    assert t.gold_reward(p, " cat sun red big sea") == pytest.approx(0.4 + 0.4 * 0.75 + 0.2)  # one too many
    assert t.gold_reward(p, " cat") == pytest.approx(0.4 + 0.4 * 0.25 + 0.2)
    assert t.gold_reward(p, " cat sun red !!") == 1.0  # junk counts toward length
    for g in GARBAGE:
        assert t.gold_reward(p, g) == 0.0, g


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_best_is_max_and_rewards_stay_in_range(name):
    task = get_task(name)
    lo, hi = task.reward_range
    rng = random.Random(0)
    for _ in range(100):
        prompt = task.sample_prompt(rng)
        assert task.gold_reward(prompt, task.best_response(prompt)) == hi
        assert lo <= task.gold_reward(prompt, task.demonstration(prompt, rng)) <= hi
        junk = "".join(rng.choice("ab1 ,.-\n") for _ in range(rng.randrange(12)))
        assert lo <= task.gold_reward(prompt, junk) <= hi
        facets = task.facets(prompt, junk)
        assert all(0.0 <= v <= 1.0 for v in facets.values())


@pytest.mark.parametrize("name", sorted(TASKS))
def test_gold_reward_rejects_a_foreign_prompt(name):
    with pytest.raises(ValueError, match="prompt"):
        get_task(name).gold_reward("hello there", " a")


def test_registry_and_judge():
    assert set(TASKS) >= {"arithmetic", "sort", "keyword"}
    assert get_task("sort", max_items=4).max_items == 4
    with pytest.raises(ValueError, match="unknown gym task"):
        get_task("chess")
    with pytest.raises(ValueError, match="p_correct"):
        get_task("arithmetic", p_correct=1.5)
    judge = GymSource("arithmetic")
    assert judge.score(["add 1 and 2 =", "add 1 and 2 =", "add 1 and 2 ="], [" 3 .", " 3", "x"]).tolist() == [
        1.0, 0.75, 0.0]
    assert judge.value_range == (0.0, 1.0)
    # the task's knobs are part of what the source is (cache keys)
    assert judge.fingerprint() != GymSource("arithmetic", max_operand=9).fingerprint()
    assert judge.fingerprint() == GymSource("arithmetic").fingerprint()


# --------------------------------------------------------------------------------------------- demonstrations


@pytest.mark.parametrize("name", sorted(TASKS))
def test_demonstrations_are_imperfect_with_a_spread(name):
    task = get_task(name)
    lo, hi = task.reward_range
    rows = make_sft_data(task, 500, seed=0)
    rewards = [task.gold_reward(r["prompt"], r["response"]) for r in rows]
    mean = statistics.mean(rewards)
    assert lo + 0.2 < mean < hi - 0.1, mean
    assert statistics.pstdev(rewards) > 0.1 * (hi - lo)
    assert max(rewards) == hi  # some demonstrations are perfect ...
    assert sum(r == hi for r in rewards) < 0.5 * len(rewards)  # ... but a minority


@pytest.mark.parametrize(("name", "facet"), [("arithmetic", "period"), ("sort", "commas")])
def test_demonstrations_show_the_style_facet_at_chance(name, facet):
    task = get_task(name)
    rows = make_sft_data(task, 1000, seed=1)
    rate = statistics.mean(task.facets(r["prompt"], r["response"])[facet] for r in rows)
    assert abs(rate - task.p_style) < 0.05  # 4.5 standard errors of a 1000-sample rate


def test_keyword_demonstrations_put_the_keyword_first_at_chance_only():
    task = KeywordTask()
    rows = make_sft_data(task, 1000, seed=2)
    first = statistics.mean(task.facets(r["prompt"], r["response"])["first"] for r in rows)
    assert first < 0.35  # chance is p_keyword * E[1 / n_words] ~ 0.2, far below the 1.0 that is preferred


@pytest.mark.parametrize("name", sorted(TASKS))
def test_data_is_deterministic_in_the_seed(name):
    task = get_task(name)
    assert make_sft_data(task, 50, seed=3) == make_sft_data(task, 50, seed=3)
    assert make_sft_data(task, 50, seed=3) != make_sft_data(task, 50, seed=4)
    assert make_prompts(task, 50, seed=3) == make_prompts(task, 50, seed=3)
    assert make_corpus(task, 20, seed=3) == make_corpus(task, 20, seed=3)
    assert len(make_corpus(task, 21, seed=3)) == 21


def test_jsonl_round_trip(tmp_path):
    task = SortTask()
    rows = make_sft_data(task, 5, seed=0)
    assert read_jsonl(write_jsonl(rows, tmp_path / "sft.jsonl")) == rows
    groups = build_groups(task, [rows[0]["prompt"]], [[" a", " b"]])
    assert read_jsonl(write_jsonl(groups, tmp_path / "g.jsonl")) == [groups[0].to_dict()]
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(ValueError, match="line 2"):
        read_jsonl(tmp_path / "bad.jsonl")


# ------------------------------------------------------------------------------------------ Bradley-Terry labels


def test_bt_probability_values():
    assert bt_probability(0.7, 0.2, 0.5) == pytest.approx(1 / (1 + math.exp(-1.0)))
    assert bt_probability(0.2, 0.7, 0.5) == pytest.approx(1 / (1 + math.exp(1.0)))
    assert bt_probability(0.3, 0.3, 0.1) == 0.5
    assert bt_probability(1.0, 0.0, 0.0) == 1.0 and bt_probability(0.0, 1.0, 0.0) == 0.0
    assert bt_probability(0.0, 1.0, 1e-6) == 0.0  # no overflow far in the tail


def test_bt_zero_temperature_always_prefers_the_better():
    rng = random.Random(0)
    for _ in range(1000):
        r_a, r_b = rng.random(), rng.random()
        if r_a == r_b:
            continue
        assert bt_preference(r_a, r_b, temperature=0.0, rng=rng) == (r_a > r_b)
        assert bt_preference(r_a, r_a + 0.01, temperature=1e-9, rng=rng) is False


def test_bt_flip_prob_one_always_prefers_the_worse():
    rng = random.Random(1)
    for _ in range(1000):
        r_a, r_b = rng.random(), rng.random()
        if r_a == r_b:
            continue
        assert bt_preference(r_a, r_b, temperature=0.0, flip_prob=1.0, rng=rng) == (r_a < r_b)


@pytest.mark.parametrize(
    ("r_a", "r_b", "temperature", "flip_prob"), [(0.6, 0.4, 0.2, 0.0), (0.5, 0.8, 0.25, 0.2)]
)
def test_bt_empirical_rate_matches_sigmoid(r_a, r_b, temperature, flip_prob):
    """Over n = 20000 draws the rate of 'a wins' has standard error <= 0.0036; tolerance 0.015 (> 4 SE).

    Expected: p = sigmoid((r_a - r_b) / T), then flipped: p (1 - f) + (1 - p) f.
    """
    rng = random.Random(2)
    n = 20000
    wins = sum(bt_preference(r_a, r_b, temperature, flip_prob, rng) for _ in range(n))
    p = 1 / (1 + math.exp(-(r_a - r_b) / temperature))
    expected = p * (1 - flip_prob) + (1 - p) * flip_prob
    assert abs(wins / n - expected) < 0.015


# ------------------------------------------------------------------------------------------ groups and pairs


def _sampled(task, n_prompts=30, k=4, seed=0):
    """Demonstrations stand in for a policy's samples: K per prompt."""
    rng = random.Random(seed)
    prompts = make_prompts(task, n_prompts, seed=seed)
    return prompts, [[task.demonstration(p, rng) for _ in range(k)] for p in prompts]


def test_groups_carry_scores_labels_and_gold_rewards():
    task = ArithmeticTask()
    prompts, responses = _sampled(task)
    drops = DropReport()
    groups = build_groups(task, prompts, responses, FeedbackConfig(), drops)
    assert len(groups) == len(prompts)  # each prompt keeps at least one response
    for i, g in enumerate(groups):
        validate_group(g, i)  # no duplicate or empty responses, scores in [0, 1], labels 0/1
        assert g.meta["gold_rewards"] == [task.gold_reward(g.prompt, r) for r in g.responses]
        assert g.rewards == g.meta["gold_rewards"]  # no reward noise by default
        assert all(0.0 <= s <= 1.0 for s in g.scores)
        assert g.labels == [int(r >= 0.5) for r in g.meta["gold_rewards"]]
    n_kept = sum(g.k for g in groups)
    assert n_kept + drops.counts().get("duplicate response", 0) == 4 * len(prompts)


def test_groups_drop_empty_and_duplicate_responses_with_a_reason():
    task = ArithmeticTask()
    drops = DropReport()
    groups = build_groups(
        task, ["add 1 and 2 =", "add 2 and 2 ="], [[" 3", " 3", ""], ["", " "]], drops=drops
    )
    assert [g.responses for g in groups] == [[" 3"]]
    assert drops.counts() == {"duplicate response": 1, "empty response": 3, "no responses": 1}
    with pytest.raises(ValueError, match="2 prompts for 1"):
        build_groups(task, ["add 1 and 2 =", "add 2 and 2 ="], [[" 3"]])


def test_labels_by_threshold_and_group_mean():
    assert reward_labels([0.2, 0.5, 0.9], "midpoint") == [0, 1, 1]
    assert reward_labels([0.2, 0.5, 0.9], 0.6) == [0, 0, 1]
    assert reward_labels([0.2, 0.5, 0.9], "mean") == [0, 0, 1]  # mean 0.533
    assert reward_labels([0.4, 0.4], "mean") == [0, 0]
    assert reward_labels([1.0, 3.0], "midpoint", reward_range=(0.0, 4.0)) == [0, 1]
    task = SortTask()
    prompts, responses = _sampled(task, seed=1)
    for g in build_groups(task, prompts, responses, FeedbackConfig(label_threshold="mean")):
        mean = statistics.mean(g.meta["gold_rewards"])
        assert g.labels == [int(r > mean) for r in g.meta["gold_rewards"]]


def test_scores_are_the_rescaled_gold_reward():
    assert reward_to_score(0.3, (0.0, 1.0)) == 0.3
    assert reward_to_score(3.0, (-1.0, 3.0)) == 1.0
    assert reward_to_score(-5.0, (-1.0, 3.0)) == 0.0
    assert reward_to_score(1.0, (-1.0, 3.0)) == 0.5
    with pytest.raises(ValueError):
        reward_to_score(0.0, (1.0, 1.0))


def test_reward_noise_and_label_flips_are_seeded():
    task = KeywordTask()
    prompts, responses = _sampled(task, seed=2)
    cfg = FeedbackConfig(reward_noise=0.1, label_flip_prob=0.3, seed=5)
    a = build_groups(task, prompts, responses, cfg)
    b = build_groups(task, prompts, responses, cfg)
    assert [g.to_dict() for g in a] == [g.to_dict() for g in b]
    assert any(g.rewards != g.meta["gold_rewards"] for g in a)
    pairs = [(lab, r) for g in a for lab, r in zip(g.labels, g.meta["gold_rewards"])]
    flipped = statistics.mean(lab != int(r >= 0.5) for lab, r in pairs)
    assert 0.15 < flipped < 0.45  # label_flip_prob 0.3
    scores = [(s, r) for g in a for s, r in zip(g.scores, g.meta["gold_rewards"])]
    assert all(s == reward_to_score(r, task.reward_range) for s, r in scores)  # scores read the gold reward


def test_pairs_chosen_first_with_gold_in_meta():
    task = SortTask()
    prompts, responses = _sampled(task, seed=3)
    groups = build_groups(task, prompts, responses)
    drops = DropReport()
    pairs = build_pairs(groups, FeedbackConfig(temperature=0.0), drops)
    n_pairs = sum(g.k * (g.k - 1) // 2 for g in groups)
    assert len(pairs) + drops.counts().get("tie", 0) == n_pairs
    for i, p in enumerate(pairs):
        validate_group(p, i)
        src = groups[p.meta["source"]]
        a, b = p.meta["pair"]
        assert p.responses == [src.responses[a], src.responses[b]]
        assert p.meta["gold_rewards"] == [src.meta["gold_rewards"][a], src.meta["gold_rewards"][b]]
        assert p.meta["gold_rewards"][0] > p.meta["gold_rewards"][1]  # temperature 0, ties skipped
        assert p.meta["agrees_with_gold"] and p.meta["task"] == "sort"
        assert p.rewards == p.meta["gold_rewards"] and p.labels == [src.labels[a], src.labels[b]]
    flipped = build_pairs(groups, FeedbackConfig(temperature=0.0, flip_prob=1.0))
    assert all(p.meta["gold_rewards"][0] < p.meta["gold_rewards"][1] for p in flipped)
    assert not any(p.meta["agrees_with_gold"] for p in flipped)


def test_pairs_random_pairing_keep_ties_and_determinism():
    task = ArithmeticTask()
    prompts, responses = _sampled(task, seed=4)
    groups = build_groups(task, prompts, responses)
    one = build_pairs(groups, FeedbackConfig(pairing="random", min_gap=None, seed=7))
    assert len(one) == sum(g.k >= 2 for g in groups)
    again = build_pairs(groups, FeedbackConfig(pairing="random", min_gap=None, seed=7))
    assert [p.to_dict() for p in one] == [p.to_dict() for p in again]
    noisy = build_pairs(groups, FeedbackConfig(temperature=0.3, flip_prob=0.1, seed=7))
    agree = statistics.mean(p.meta["agrees_with_gold"] for p in noisy)
    assert 0.5 < agree < 0.95  # noisy annotators: mostly, not always, right
    with pytest.raises(ValueError, match="pairing"):
        FeedbackConfig(pairing="best")


# ------------------------------------------------------------------------------------------------ learnability


@pytest.mark.parametrize("name", sorted(TASKS))
def test_prompt_and_response_are_short_under_a_tiny_tokenizer(name):
    from rewardalign.modeling.tiny import build_tiny_tokenizer

    task = get_task(name)
    tokenizer = build_tiny_tokenizer(make_corpus(task, 2000, seed=0), vocab_size=384)
    assert len(tokenizer) <= 384
    rng = random.Random(0)
    for row in make_sft_data(task, 100, seed=9):
        prompt_ids = tokenizer(row["prompt"])["input_ids"]
        response_ids = tokenizer(row["response"])["input_ids"]
        assert len(prompt_ids) <= 24 and len(response_ids) <= task.max_new_tokens
        assert len(prompt_ids) + len(response_ids) < 48
        best = tokenizer(task.best_response(task.sample_prompt(rng)))["input_ids"]
        assert len(best) <= task.max_new_tokens


# ------------------------------------------------------------------------------------ tasks from outside the library

ROOT = Path(__file__).resolve().parents[1]
REVERSE = str(ROOT / "examples" / "tasks" / "reverse.py") + ":ReverseTask"
COUNT = str(ROOT / "examples" / "tasks" / "count.py") + ":CountTask"
UNDOCUMENTED = '''
from rewardalign.gym import Task


class Echo(Task):
    name = "echo"

    def __init__(self, word="ab"):
        self.word = word

    def sample_prompt(self, rng):
        return "echo " + self.word + " :"

    def facets(self, prompt, response):
        return {"same": float(response.strip() == self.word)}

    def gold_reward(self, prompt, response):
        return self.facets(prompt, response)["same"]

    def demonstration(self, prompt, rng):
        return " " + self.word

    def best_response(self, prompt):
        return " " + self.word


def not_a_task():
    return 3
'''


def gold_in_worker(spec: str, prompt: str, response: str) -> float:
    """Run in a spawn worker: load the task from its spec there and score one response."""
    return get_task(spec).gold_reward(prompt, response)


def test_reverse_example_task_hand_cases():
    task = get_task(REVERSE)
    assert task.name == "reverse" and isinstance(task, Task)
    prompt = "reverse: c a h e ->"
    assert task.best_response(prompt) == " e h a c" and task.gold_reward(prompt, " e h a c") == 1.0
    assert task.gold_reward(prompt, " e h a b") == 0.75  # one position wrong
    assert task.gold_reward(prompt, " e h a c d") == 4 / 5  # one extra item
    assert task.gold_reward(prompt, " e h a") == 3 / 4  # one item missing
    assert task.gold_reward(prompt, " c a h e") == 0.0  # not reversed: no position right
    assert task.gold_reward(prompt, "") == 0.0
    with pytest.raises(ValueError, match="prompt"):
        task.gold_reward("sort: a b ->", " b a")
    assert get_task(REVERSE, max_len=5).max_len == 5


def test_reverse_demonstrations_have_the_stated_noise():
    task = get_task(REVERSE)
    rows = make_sft_data(task, 3000, seed=1)
    replaced = total = longer = shorter = 0
    for row in rows:
        gold, demo = task.best_response(row["prompt"]).split(), row["response"].split()
        longer += len(demo) > len(gold)
        shorter += len(demo) < len(gold)
        replaced += sum(a != b for a, b in zip(gold, demo))
        total += min(len(gold), len(demo))
    assert replaced / total == pytest.approx(0.35, abs=0.02)
    assert longer / len(rows) == pytest.approx(0.15, abs=0.02) and shorter / len(rows) == pytest.approx(0.15, abs=0.02)


def test_count_example_task_hand_cases():
    task = get_task(COUNT)
    prompt = "count from 3 to 7 :"
    assert task.best_response(prompt) == " 3 4 5 6 7 ." and task.gold_reward(prompt, " 3 4 5 6 7 .") == 1.0
    assert task.gold_reward(prompt, " 3 4 5 6 7") == 0.75  # no period: the style facet only
    assert task.gold_reward(prompt, " 3 4 9 6 7 .") == pytest.approx(0.75 * 4 / 5 + 0.25)  # one number wrong
    assert task.gold_reward(prompt, " 3 4 5 6 7 8") == 0.75 * 5 / 6  # one extra number
    assert task.gold_reward(prompt, " 3 4 5 6 7 . more") == 0.75 * 5 / 7  # text after the period: items
    assert task.gold_reward(prompt, " .") == 0.0 and task.gold_reward(prompt, "") == 0.0
    with pytest.raises(ValueError, match="prompt"):
        task.gold_reward("count from 7 to 3 :", " 7")
    rows = make_sft_data(task, 3000, seed=1)
    styled = sum(row["response"].endswith(" .") for row in rows) / len(rows)
    assert styled == pytest.approx(0.5, abs=0.03)
    right = [task.facets(row["prompt"], row["response"])["positions"] for row in rows]
    assert 0.6 < statistics.mean(right) < 0.9  # 20% of the numbers replaced, 30% one too many or too few


def test_random_response_is_a_demonstration_of_another_prompt():
    task = get_task(REVERSE)
    rng = random.Random(0)
    prompts = make_prompts(task, 500, seed=3)
    random_gold = statistics.mean(task.gold_reward(p, task.random_response(p, rng)) for p in prompts)
    demo_gold = statistics.mean(task.gold_reward(p, task.demonstration(p, rng)) for p in prompts)
    assert random_gold < 0.2 < 0.5 < demo_gold  # chance level: 1 in 8 letters per position


def test_tasks_from_a_file_and_from_a_module(tmp_path, monkeypatch):
    (tmp_path / "my_tasks.py").write_text(UNDOCUMENTED)
    monkeypatch.syspath_prepend(str(tmp_path))
    by_module = get_task("my_tasks:Echo", word="xy")
    by_file = get_task(f"{tmp_path / 'my_tasks.py'}:Echo")
    assert by_module.word == "xy" and by_file.word == "ab"
    assert by_module.gold_reward("echo xy :", " xy") == 1.0
    source = build_source(f"gym:{tmp_path / 'my_tasks.py'}:Echo")
    assert isinstance(source, GymSource) and source.score(["echo ab :"] * 2, [" ab", " b"]).tolist() == [1.0, 0.0]
    assert build_source({"type": "gym", "task": "my_tasks:Echo", "task_args": {"word": "q"}}).task.word == "q"
    assert build_source("gym:arithmetic").task.name == "arithmetic"


def test_bad_task_names_are_one_clear_error(tmp_path):
    (tmp_path / "my_tasks.py").write_text(UNDOCUMENTED)
    file = tmp_path / "my_tasks.py"
    with pytest.raises(ConfigError, match=r"unknown gym task 'reverse'; built-in tasks: arithmetic, keyword, sort; "
                                          r"or name your own task as package.module:Class or path/to/file.py:Class"):
        get_task("reverse")
    with pytest.raises(ConfigError, match="does not exist"):
        get_task(f"{tmp_path / 'nowhere.py'}:Echo")
    with pytest.raises(ConfigError, match="has no attribute 'Nope'"):
        get_task(f"{file}:Nope")
    with pytest.raises(ConfigError, match="gave a int, not a rewardalign.gym.Task"):
        get_task(f"{file}:not_a_task")
    with pytest.raises(ConfigError, match="unexpected keyword argument 'colour'"):
        get_task(f"{file}:Echo", colour=1)
    with pytest.raises(ConfigError, match="Path is not a subclass"):
        get_task("pathlib:Path")


def test_a_task_edit_changes_its_identity(tmp_path):
    file = tmp_path / "my_tasks.py"
    file.write_text(UNDOCUMENTED)
    spec = f"{file}:Echo"
    before = task_identity(get_task(spec))
    assert task_identity(get_task(spec)) == before
    assert task_identity(get_task(spec, word="cd")) != before  # the knobs
    fingerprint = GymSource(spec).fingerprint()
    file.write_text(UNDOCUMENTED.replace('float(response.strip() == self.word)', 'float(self.word in response)'))
    assert task_identity(get_task(spec)) != before
    assert GymSource(spec).fingerprint() != fingerprint
    assert get_task(spec).gold_reward("echo ab :", " abc") == 1.0  # the edited code runs


def test_a_task_named_by_spec_loads_in_a_spawn_worker(tmp_path, monkeypatch):
    (tmp_path / "my_tasks.py").write_text(UNDOCUMENTED)
    monkeypatch.syspath_prepend(str(tmp_path))
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        by_file = pool.apply(gold_in_worker, (REVERSE, "reverse: a b c d ->", " d c b a"))
        by_module = pool.apply(gold_in_worker, ("my_tasks:Echo", "echo ab :", " ab"))
    assert by_file == 1.0 and by_module == 1.0


def test_online_prompts_from_a_task_spec():
    prompts = online_prompts(OnlineConfig(prompts=f"gym:{REVERSE}", max_prompts=5, prompts_seed=2))
    assert prompts == make_prompts(get_task(REVERSE), 5, seed=2) and prompts[0].startswith("reverse: ")
    with pytest.raises(ConfigError, match="unknown gym task 'reverse'"):
        online_prompts(OnlineConfig(prompts="gym:reverse"))
