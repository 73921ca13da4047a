"""Every validation error names the row and the field; drop mode counts what it drops."""

import math
from pathlib import Path

import pytest

from rewardalign.data import DataError, load_groups

DATA = Path(__file__).parent / "fixtures" / "data"


def pair(**extra):
    return {"prompt": "p", "chosen": "good", "rejected": "bad", **extra}


def kto(prompt, completion, label):
    return {"prompt": prompt, "completion": completion, "label": label}


def scored(prompt, response, score):
    return {"prompt": prompt, "response": response, "score": score}


def group(**extra):
    return {"prompt": "p", "responses": ["a", "b"], **extra}


def ok_pairs(n):
    return [pair(prompt=f"ok {i}", chosen_reward=1, rejected_reward=0) for i in range(n)]


CASES = {
    "nan reward": (
        ok_pairs(2) + [pair(chosen_reward=1.0, rejected_reward=math.nan)],
        {},
        "2",
        "rejected_reward",
        "NaN or infinite",
    ),
    "infinite reward": (
        [{"prompt": "p", "response": "a", "reward": math.inf}],
        {},
        "0",
        "reward",
        "NaN or infinite",
    ),
    "reward given as text": (
        [pair(chosen_reward="high", rejected_reward=0)],
        {},
        "0",
        "chosen_reward",
        "must be a number",
    ),
    "missing reward value": (
        [pair(chosen_reward=1, rejected_reward=0), pair(chosen_reward=1, rejected_reward=None)],
        {},
        "1",
        "rejected_reward",
        "is missing",
    ),
    "reward column filled by later rows only": (
        [pair(prompt="a"), pair(prompt="b", chosen_reward=1, rejected_reward=0)],
        {},
        "0",
        "chosen_reward",
        "is missing",
    ),
    "empty response": (
        [kto("p", "yes", 1), kto("q", "   ", 0)],
        {},
        "1",
        "completion",
        "is empty",
    ),
    "empty prompt": ([pair(prompt="")], {}, "0", "prompt", "is empty"),
    "empty chat response": (
        [
            {
                "prompt": [{"role": "user", "content": "hi"}],
                "chosen": [{"role": "assistant", "content": ""}],
                "rejected": [{"role": "assistant", "content": "no"}],
            }
        ],
        {},
        "0",
        "chosen",
        "is empty",
    ),
    "label not 0/1": ([kto("p", "a", 1), kto("p", "b", 2)], {}, "1", "label", "must be 0 or 1"),
    "label as text": ([kto("p", "a", "maybe")], {}, "0", "label", "must be a number"),
    "score above range": (
        [scored("p", "a", 0.5), scored("q", "b", 1.5)],
        {},
        "1",
        "score",
        "outside the declared range [0.0, 1.0]",
    ),
    "score below declared range": (
        [scored("p", "a", 0)],
        {"score_range": (1, 10)},
        "0",
        "score",
        "outside the declared range [1.0, 10.0]",
    ),
    "pair score out of range": (
        [pair(chosen_score=2, rejected_score=0)],
        {},
        "0",
        "chosen_score",
        "outside the declared range",
    ),
    "native score out of range": (
        [group(scores=[0.5, -0.1])],
        {},
        "0",
        "scores[1]",
        "outside the declared range",
    ),
    "identical pair": ([pair(rejected="good")], {}, "0", "rejected", "duplicates chosen"),
    "duplicate in a native group": (
        [group(), group(responses=["a", "b", "a"])],
        {},
        "1",
        "responses[2]",
        "duplicates responses[0]",
    ),
    "duplicate row under one prompt": (
        [kto("p", "a", 1), kto("q", "a", 1), kto("p", "a", 0)],
        {},
        "2",
        "completion",
        "duplicates row 0",
    ),
    "reward list too short": ([group(rewards=[1.0])], {}, "0", "rewards", "has 1 entries for 2 responses"),
    "score list too long": ([group(scores=[0.1, 0.2, 0.3])], {}, "0", "scores", "has 3 entries"),
    "label list length": ([group(labels=[1])], {}, "0", "labels", "must be a list of 2 labels"),
    "reward member length": (
        [group(rewards=[1, 0], reward_members=[[1, 0], [1]])],
        {},
        "0",
        "reward_members[1]",
        "has 1 entries",
    ),
    "expected K, row-wise": (
        [group(), group(responses=["a"])],
        {"expected_k": 2},
        "1 (prompt 'p')",
        "responses",
        "has 1 responses, expected K = 2",
    ),
    "expected K, grouped by prompt": (
        [kto("Is it raining today in the city of Lyon?", r, 1) for r in "ab"] + [kto("q", "c", 0)],
        {"expected_k": 2},
        "2 (prompt 'q')",
        "responses",
        "expected K = 2",
    ),
    "missing value": (
        [kto("p", "a", 1), {"prompt": "p", "completion": None, "label": 1}],
        {},
        "1",
        "completion",
        "is missing",
    ),
    "ultrafeedback rating out of range": (
        [
            {
                "instruction": "i",
                "completions": [
                    {"response": "a", "overall_score": 1},
                    {"response": "b", "overall_score": 11},
                ],
            }
        ],
        {},
        "0",
        "completions[1].overall_score",
        "outside the declared range [1.0, 10.0]",
    ),
    "ultrafeedback empty response": (
        [
            {
                "instruction": "i",
                "completions": [{"response": "a", "overall_score": 1}, {"response": "", "overall_score": 2}],
            }
        ],
        {},
        "0",
        "completions[1].response",
        "is empty",
    ),
    "ultrafeedback bad aspect rating": (
        [{"prompt": "i", "completions": [{"response": "a", "annotations": {"honesty": {"Rating": "lots"}}}]}],
        {},
        "0",
        "completions[0].annotations.honesty.Rating",
        "must be a number",
    ),
    "ultrafeedback no completions": (
        [{"instruction": "i", "completions": []}],
        {},
        "0",
        "completions",
        "non-empty",
    ),
    "helpsteer rating out of range": (
        [{"prompt": "p", "response": "a", "helpfulness": 5, "correctness": 1, "coherence": 1}],
        {},
        "0",
        "helpfulness",
        "outside the declared range [0.0, 4.0]",
    ),
    "helpsteer NaN rating": (
        [{"prompt": "p", "response": "a", "helpfulness": 1, "correctness": math.nan, "coherence": 1}],
        {},
        "0",
        "correctness",
        "NaN or infinite",
    ),
}


@pytest.mark.parametrize("rows, options, row, field, reason", CASES.values(), ids=CASES.keys())
def test_error_names_row_and_field(rows, options, row, field, reason):
    with pytest.raises(DataError) as err:
        load_groups(rows, **options)
    assert str(err.value.row) == row and err.value.field == field
    message = str(err.value)
    assert f"row {row}" in message and f"field '{field}'" in message and reason in message


@pytest.mark.parametrize("rows, options, row, field, reason", CASES.values(), ids=CASES.keys())
def test_drop_mode_records_the_same_error(rows, options, row, field, reason):
    groups, report = load_groups(rows, on_error="drop", **options)
    assert [str(r) for r, _ in report.rows] == [row]
    dropped_reason = report.rows[0][1]
    assert dropped_reason.startswith(f"{field}: ") and reason in dropped_reason


def test_drop_mode_counts_every_bad_row_of_the_fixture():
    with pytest.raises(DataError, match="row 1, field 'rejected_reward'"):
        load_groups(DATA / "pairs_bad.jsonl")
    groups, report = load_groups(DATA / "pairs_bad.jsonl", on_error="drop")
    assert [g.meta["row"] for g in groups] == [0, 4]
    assert len(report) == 3
    assert [row for row, _ in report.rows] == [1, 2, 3]
    assert report.counts() == {"rejected_reward": 1, "rejected": 2}


def test_drop_in_a_grouped_format_keeps_the_rest_of_the_group():
    rows = [kto("p", "a", 1), kto("p", "b", 7), kto("p", "c", 0), kto("p", "a", 0)]
    (group,), report = load_groups(rows, on_error="drop")
    assert group.responses == ["a", "c"] and group.labels == [1, 0] and group.meta["rows"] == [0, 2]
    assert [row for row, _ in report.rows] == [1, 3]


def test_drop_cascades_to_expected_k_and_is_recorded():
    rows = [kto("p", "a", 1), kto("p", "b", 7), kto("q", "c", 0), kto("q", "d", 1)]
    (group,), report = load_groups(rows, on_error="drop", expected_k=2)
    assert group.prompt == "q"
    assert [str(row) for row, _ in report.rows] == ["1", "0 (prompt 'p')"]
    assert "expected K = 2" in report.rows[1][1]


def test_nothing_disappears():
    """Every source row is either in a kept group or named in the report."""
    rows = [kto("p", "a", 1), kto("p", "", 1), kto("q", "b", "x"), kto("q", "c", 0), kto("r", "d", True)]
    groups, report = load_groups(rows, on_error="drop")
    kept = sorted(r for g in groups for r in g.meta["rows"])
    assert sorted(kept + [row for row, _ in report.rows]) == list(range(len(rows)))
