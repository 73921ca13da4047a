"""Converters of rewardalign.data.formats, each on its fixture file, and format detection."""

from pathlib import Path

import pytest

from rewardalign.data import FORMATS, DataError, Group, detect_format, load_groups

DATA = Path(__file__).parent / "fixtures" / "data"


def U(text):
    return {"role": "user", "content": text}


def A(text):
    return {"role": "assistant", "content": text}


def test_formats_registry():
    assert set(FORMATS) == {"pairs", "binary", "scores", "ultrafeedback", "helpsteer", "group"}


def test_pairs_with_prompt_column_and_rewards():
    groups, report = load_groups(DATA / "pairs.jsonl", "pairs")
    assert len(groups) == 4 and not report
    first = groups[0]
    assert first.prompt == "What is the capital of France?"
    assert first.responses == ["Paris is the capital of France.", "Lyon."]  # chosen at index 0
    assert first.rewards == [2.5, -1.0]
    assert first.scores is None and first.labels is None
    assert [g.meta["row"] for g in groups] == [0, 1, 2, 3]


def test_pairs_without_rewards_keep_the_chosen_first():
    rows = [{"prompt": "p", "chosen": "good", "rejected": "bad"}]
    (group,), _ = load_groups(rows, "pairs")
    assert group.responses == ["good", "bad"] and group.rewards is None and group.scores is None


def test_pairs_conversational_prompt_split_off():
    groups, _ = load_groups(DATA / "pairs_conversational.jsonl")
    assert [g.k for g in groups] == [2, 2, 2]
    assert groups[0].prompt == [U("What is 2 + 2?")]
    assert groups[0].responses == [[A("2 + 2 = 4.")], [A("It is 5.")]]
    assert groups[0].scores == pytest.approx([0.9, 0.1])
    assert groups[1].prompt[0] == {"role": "system", "content": "Be brief."} and len(groups[1].prompt) == 2
    # multi-turn: the shared turns are the prompt, which ends on the user's last message
    assert [m["content"] for m in groups[2].prompt] == ["Hi", "Hello! How can I help?", "Tell me a joke."]
    assert groups[2].responses[1] == [A("No.")]


def test_pairs_split_backs_off_to_a_user_turn():
    chosen = [U("q"), A("same"), U("follow-up one"), A("x")]
    rejected = [U("q"), A("same"), U("follow-up two"), A("y")]
    (group,), _ = load_groups([{"chosen": chosen, "rejected": rejected}])
    assert group.prompt == [U("q")]
    assert group.responses == [chosen[1:], rejected[1:]]


def test_pairs_prompt_column_with_embedded_conversation():
    """ultrafeedback_binarized: a prompt string and full conversations in chosen / rejected."""
    row = {"prompt": "hi?", "chosen": [U("hi?"), A("hello")], "rejected": [U("hi?"), A("go away")]}
    (group,), _ = load_groups([row])
    assert group.prompt == [U("hi?")] and group.responses == [[A("hello")], [A("go away")]]


def test_pairs_explicit_conversational_prompt():
    row = {"prompt": [U("hi?")], "chosen": [A("hello")], "rejected": [A("go away")]}
    (group,), _ = load_groups([row])
    assert group.prompt == [U("hi?")] and group.responses == [[A("hello")], [A("go away")]]


def test_pairs_plain_strings_split_at_a_word_boundary():
    groups, _ = load_groups(DATA / "pairs_hh.json", score_range=(1, 10))
    first = groups[0]
    assert first.prompt == "\n\nHuman: What is the boiling point of water?\n\nAssistant:"
    assert first.responses == [" 100 degrees Celsius at sea level.", " Water never boils."]
    assert first.scores == pytest.approx([8 / 9, 1 / 9])
    assert groups[1].prompt.endswith("Human: Recommend a book.\n\nAssistant:")
    assert groups[1].prompt.startswith("\n\nHuman: Hi there\n\nAssistant: Hello.")


def test_pairs_score_field_rewards_keeps_raw_values():
    groups, _ = load_groups(DATA / "pairs_hh.json", score_field="rewards")
    assert groups[0].rewards == [9.0, 2.0] and groups[0].scores is None


def test_pairs_score_field_rewards_conflicts_with_reward_columns():
    row = {
        "prompt": "p",
        "chosen": "a",
        "rejected": "b",
        "chosen_reward": 1,
        "rejected_reward": 0,
        "chosen_score": 1,
        "rejected_score": 0,
    }
    (group,), _ = load_groups([row])
    assert group.rewards == [1.0, 0.0] and group.scores == [1.0, 0.0]
    with pytest.raises(ValueError, match="already gives them"):
        load_groups([row], score_field="rewards")


@pytest.mark.parametrize(
    "row, field",
    [
        ({"chosen": "alpha", "rejected": "beta"}, "prompt"),
        ({"chosen": "same start", "rejected": "same end"}, "prompt"),  # a shared word is no prompt
        ({"chosen": "\n\nHuman: Hi", "rejected": "\n\nHuman: Yo"}, "prompt"),
        ({"chosen": [A("x")], "rejected": [A("y")]}, "prompt"),
        ({"chosen": [U("q"), A("x")], "rejected": [U("q")]}, "rejected"),
    ],
)
def test_pairs_without_a_splittable_prompt(row, field):
    with pytest.raises(DataError) as err:
        load_groups([row], "pairs")
    assert err.value.row == 0 and err.value.field == field


def test_pairs_plain_split_cuts_whole_words():
    row = {
        "chosen": "Q: name a number\nA: The answer is four",
        "rejected": "Q: name a number\nA: The answer is five",
    }
    (group,), _ = load_groups([row])
    assert group.prompt == "Q: name a number\nA: The answer is" and group.responses == [" four", " five"]


def test_binary_grouped_by_prompt():
    groups, report = load_groups(DATA / "binary.csv")
    assert not report
    assert [g.k for g in groups] == [3, 2, 1]
    assert groups[0].responses == ["4", "5", "Four, obviously."]  # CSV cells stay text
    assert groups[0].labels == [1, 0, 1]
    assert groups[1].labels == [1, 0] and groups[2].labels == [1]
    assert groups[0].meta == {"row": 0, "rows": [0, 1, 2]} and groups[1].meta["row"] == 3
    assert all(g.rewards is None and g.scores is None for g in groups)


def test_binary_bool_labels_and_response_column():
    rows = [{"prompt": "p", "response": "a", "label": True}, {"prompt": "p", "response": "b", "label": 0}]
    (group,), _ = load_groups(rows, "binary")
    assert group.responses == ["a", "b"] and group.labels == [1, 0]


def test_binary_conversational_grouping():
    rows = [{"prompt": [U("p")], "completion": [A(r)], "label": r == "a"} for r in "abc"]
    (group,), _ = load_groups(rows)
    assert group.prompt == [U("p")] and group.k == 3 and group.labels == [1, 0, 0]


def test_scores_parquet():
    groups, _ = load_groups(DATA / "scores.parquet")
    assert [g.k for g in groups] == [3, 2, 2]
    assert groups[0].scores == [1.0, 0.0, 0.9] and groups[0].rewards is None
    assert groups[2].responses == ["cold", "warm"] and groups[2].meta["rows"] == [5, 6]


def test_scores_range_and_score_field():
    rows = [{"prompt": "p", "response": "a", "score": 7}, {"prompt": "p", "response": "b", "score": 1}]
    (group,), _ = load_groups(rows, score_range=(1, 10))
    assert group.scores == pytest.approx([6 / 9, 0.0]) and group.rewards is None
    (group,), _ = load_groups(rows, score_field="rewards")
    assert group.rewards == [7.0, 1.0] and group.scores is None


def test_scores_reward_column_goes_to_rewards():
    rows = [
        {"prompt": "p", "completion": "a", "reward": -3.5},
        {"prompt": "p", "completion": "b", "reward": 2},
    ]
    (group,), _ = load_groups(rows)
    assert group.rewards == [-3.5, 2.0] and group.scores is None


def test_ultrafeedback_overall():
    groups, _ = load_groups(DATA / "ultrafeedback.json")
    assert [g.k for g in groups] == [4, 4]
    first = groups[0]
    assert first.prompt == "Explain why the sky is blue in one sentence."
    assert first.rewards == [9.0, 3.0, 7.5, 1.0]
    assert first.scores == pytest.approx([8 / 9, 2 / 9, 6.5 / 9, 0.0])
    assert groups[1].responses[0] == "Merci." and groups[1].scores[0] == 1.0


def test_ultrafeedback_fine_grained():
    groups, _ = load_groups(DATA / "ultrafeedback.json", rating="fine_grained")
    # completion 1 rates 2, 1, 3 and N/A: the mean of the three numbers
    assert groups[0].rewards == pytest.approx([5.0, 2.0, 4.25, 1.0])
    assert groups[0].scores == pytest.approx([1.0, 0.25, 3.25 / 4, 0.0])


def test_ultrafeedback_detects_fine_grained_without_overall_score():
    completion = {"response": "r", "annotations": {"honesty": {"Rating": "3"}}}
    (group,), _ = load_groups([{"prompt": "p", "completions": [completion]}], "ultrafeedback")
    assert group.rewards == [3.0] and group.scores == [0.5]


def test_helpsteer_default_weights():
    groups, _ = load_groups(DATA / "helpsteer.jsonl")
    assert [g.k for g in groups] == [2, 2, 1]
    # 0.65*4 + 0.8*4 + 0.45*4 = 7.6 (the maximum); 0.65*0 + 0.8*0 + 0.45*3 = 1.35
    assert groups[0].rewards == pytest.approx([7.6, 1.35])
    assert groups[0].scores == pytest.approx([1.0, 1.35 / 7.6])
    assert groups[1].rewards == pytest.approx([0.65 * 3 + 0.8 * 4 + 0.45 * 4, 0.65 * 1 + 0.8 * 2 + 0.45 * 4])


def test_helpsteer_custom_weights_with_a_negative_one():
    weights = {"helpfulness": 1.0, "verbosity": -1.0}
    groups, _ = load_groups(DATA / "helpsteer.jsonl", weights=weights)
    # reward range [-4, 4]: score = (r + 4) / 8
    assert groups[0].rewards == [3.0, -1.0] and groups[0].scores == pytest.approx([7 / 8, 3 / 8])


def test_native_groups():
    groups, _ = load_groups(DATA / "groups.jsonl")
    assert [g.k for g in groups] == [4, 2, 3]
    assert groups[0].labels == [1, 1, 0, 1] and groups[0].scores == [1.0, 0.9, 0.0, 0.95]
    conv = groups[1]
    assert conv.prompt[1] == U("Is water wet?") and conv.responses[0] == [A("Yes.")]
    assert conv.reward_members == [[0.1, 0.7], [0.3, 0.5]]
    assert conv.meta == {"id": "conv-1", "row": 1}
    assert groups[2].rewards is None and groups[2].scores == [1.0, 1.0, 0.0]


def test_converters_work_on_plain_rows():
    items = list(
        FORMATS["binary"](
            [{"prompt": "p", "completion": "a", "label": 1}, {"prompt": "p", "completion": "", "label": 0}]
        )
    )
    assert isinstance(items[0], DataError) and items[0].row == 1
    assert isinstance(items[1], Group) and items[1].k == 1


@pytest.mark.parametrize(
    "columns, expected",
    [
        (["prompt", "chosen", "rejected"], "pairs"),
        (["chosen", "rejected", "chosen_reward", "rejected_reward"], "pairs"),
        (["prompt", "completion", "label"], "binary"),
        (["prompt", "response", "score"], "scores"),
        (["prompt", "response", "reward"], "scores"),
        (["instruction", "completions", "source"], "ultrafeedback"),
        (
            ["prompt", "response", "helpfulness", "correctness", "coherence", "complexity", "verbosity"],
            "helpsteer",
        ),
        (["prompt", "responses", "rewards"], "group"),
    ],
)
def test_detect_format(columns, expected):
    assert detect_format(columns) == expected


def test_detect_format_failure_lists_what_each_format_needs():
    with pytest.raises(ValueError, match=r"no format fits the columns \['text'\].*pairs: chosen, rejected"):
        detect_format(["text"])


@pytest.mark.parametrize(
    "name, expected",
    [
        ("pairs.jsonl", "pairs"),
        ("pairs_conversational.jsonl", "pairs"),
        ("binary.csv", "binary"),
        ("scores.parquet", "scores"),
        ("ultrafeedback.json", "ultrafeedback"),
        ("helpsteer.jsonl", "helpsteer"),
        ("groups.jsonl", "group"),
    ],
)
def test_auto_detection_matches_explicit_format(name, expected):
    auto, _ = load_groups(DATA / name)
    explicit, _ = load_groups(DATA / name, expected)
    assert auto == explicit
