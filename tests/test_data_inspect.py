"""``rewardalign data inspect``: the statistics of inspect_groups and the report of run_inspect."""

import argparse
import statistics
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from rewardalign import cli
from rewardalign.config import ConfigError
from rewardalign.data import load_groups
from rewardalign.data.inspect import inspect_groups

DATA = Path(__file__).parent / "fixtures" / "data"
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def word_tokenizer(with_template: bool) -> PreTrainedTokenizerFast:
    """A word-level tokenizer trained on the fixtures: one token per whitespace-separated word."""
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    texts = [p.read_text(errors="ignore") for p in DATA.iterdir() if p.suffix != ".parquet"]
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    if with_template:
        fast.chat_template = CHAT_TEMPLATE
    return fast


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("word_tokenizer")
    word_tokenizer(with_template=True).save_pretrained(path)
    return path


def inspect_cli(capsys, *argv):
    code = cli.main(["data", "inspect", *[str(a) for a in argv]])
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_groups_statistics():
    groups, report = load_groups(DATA / "pairs.jsonl")
    stats = inspect_groups(groups, report)
    assert stats["groups"] == 4 and stats["responses"] == 8 and stats["k"] == {2: 4}
    rewards = [2.5, -1.0, 1.0, 0.0, 3.0, -2.0, 0.5, 0.5]
    assert stats["rewards"] == pytest.approx(
        {"count": 8, "mean": 0.5625, "std": statistics.pstdev(rewards), "min": -2.0, "max": 3.0}
    )
    assert stats["scores"] is None and stats["labels"] is None and stats["tokens"] is None
    assert stats["rejected"] == [] and stats["rejected_counts"] == {}


def test_inspect_groups_labels_and_rejections():
    groups, report = load_groups(DATA / "binary.csv")
    stats = inspect_groups(groups, report)
    assert stats["k"] == {1: 1, 2: 1, 3: 1}
    assert stats["labels"] == pytest.approx(
        {"count": 6, "mean": 4 / 6, "std": (2 / 9) ** 0.5, "min": 0, "max": 1}
    )
    groups, report = load_groups(DATA / "pairs_bad.jsonl", on_error="drop")
    stats = inspect_groups(groups, report)
    assert [r["row"] for r in stats["rejected"]] == [1, 2, 3]
    assert stats["rejected_counts"] == {"rejected_reward": 1, "rejected": 2}


def test_token_lengths_of_plain_text():
    groups, _ = load_groups(DATA / "pairs.jsonl")
    tokens = inspect_groups(groups, tokenizer=word_tokenizer(with_template=False))["tokens"]
    # prompt word counts 6, 4, 7, 2; nearest-rank percentiles of [2, 4, 6, 7]
    assert tokens["prompt"] == {"p50": 4, "p90": 7, "p99": 7, "max": 7}
    # response word counts 6, 1, 5, 1, 5, 1, 1, 1 -> sorted [1] * 5 + [5, 5, 6]
    assert tokens["response"] == {"p50": 1, "p90": 6, "p99": 6, "max": 6}


def test_token_lengths_of_conversations():
    groups, _ = load_groups(DATA / "pairs_conversational.jsonl")
    joined = inspect_groups(groups, tokenizer=word_tokenizer(with_template=False))["tokens"]
    # no chat template: contents joined, "Be brief." + "Capital of Italy?" = 5 words
    assert joined["prompt"]["max"] == len("Hi Hello! How can I help? Tell me a joke.".split())
    templated = inspect_groups(groups, tokenizer=word_tokenizer(with_template=True))["tokens"]
    # prompts with the generation prompt: "user: What is 2 + 2?\nassistant:" = 7 words,
    # "system: Be brief.\nuser: Capital of Italy?\nassistant:" = 8, the multi-turn one 2 + 6 + 5 + 1 = 14
    assert templated["prompt"] == {"p50": 8, "p90": 14, "p99": 14, "max": 14}
    # a response counts the words the conversation adds to its prompt: 5, 3, 1, 3, 13, 1
    assert templated["response"] == {"p50": 3, "p90": 13, "p99": 13, "max": 13}


FIXTURES = [
    ("pairs.jsonl", [], 4, "K: 2 x4", ["rewards: count 8  mean 0.5625", "scores: -"]),
    (
        "pairs_conversational.jsonl",
        [],
        3,
        "K: 2 x3",
        ["scores: count 6  mean 0.5667  ", "min 0.1  max 1", "rewards: -"],
    ),
    (
        "pairs_hh.json",
        ["--format_options.score_range", "[1, 10]"],
        2,
        "K: 2 x2",
        ["scores: count 4  mean 0.4583  ", "min 0  max 0.8889"],
    ),
    ("binary.csv", [], 3, "K: 1 x1, 2 x1, 3 x1", ["labels: count 6  mean 0.6667"]),
    ("scores.parquet", [], 3, "K: 2 x2, 3 x1", ["scores: count 7  mean 0.6  ", "max 1"]),
    ("ultrafeedback.json", [], 2, "K: 4 x2", ["rewards: count 8  mean 5.188  ", "min 1  max 10"]),
    ("helpsteer.jsonl", [], 3, "K: 1 x1, 2 x2", ["rewards: count 5", "scores: count 5", "max 1"]),
    ("groups.jsonl", [], 3, "K: 2 x1, 3 x1, 4 x1", ["labels: count 4  mean 0.75", "rewards: count 6"]),
]


@pytest.mark.parametrize("name, args, n_groups, k_line, figures", FIXTURES, ids=[f[0] for f in FIXTURES])
def test_run_inspect_on_each_fixture(capsys, tokenizer_dir, name, args, n_groups, k_line, figures):
    code, out, err = inspect_cli(capsys, DATA / name, *args, "--tokenizer", tokenizer_dir)
    assert code == 0, err
    assert f"groups: {n_groups}\n" in out and k_line in out and "rejected rows: 0" in out
    for figure in figures:
        assert figure in out
    assert "token lengths:\n  prompt: p50 " in out and "  response: p50 " in out


def test_run_inspect_lists_every_rejected_row(capsys):
    code, out, _ = inspect_cli(capsys, DATA / "pairs_bad.jsonl")
    assert code == 1
    assert "groups: 2\n" in out
    assert "rejected rows: 3 (rejected_reward x1, rejected x2)" in out
    assert "  row 1: rejected_reward: is nan (NaN or infinite)" in out
    assert "  row 2: rejected: is empty" in out
    assert "  row 3: rejected: duplicates chosen in the same group" in out


def test_run_inspect_expected_k_and_format(capsys):
    code, out, _ = inspect_cli(capsys, DATA / "binary.csv", "--format", "binary", "--format_options.expected_k", "2")
    assert code == 1 and "format: binary" in out and "groups: 1\n" in out
    assert "row 0 (prompt 'What is 2 + 2?'): responses: has 3 responses, expected K = 2" in out


def test_run_inspect_raise_mode_and_unreadable_sources(capsys, tmp_path):
    code, out, err = inspect_cli(capsys, DATA / "pairs_bad.jsonl", "--on_error", "raise")
    assert code == 1 and "row 1, field 'rejected_reward'" in err and out == ""
    code, _, err = inspect_cli(capsys, DATA / "binary.csv", "--format", "pairs")
    assert code == 2 and "formats that fit: binary" in err
    code, _, err = inspect_cli(capsys, tmp_path / "missing.jsonl")
    assert code == 2 and "missing.jsonl' does not exist" in err
    code, _, err = inspect_cli(capsys, DATA / "pairs.jsonl", "--tokenizer", tmp_path / "no_tokenizer")
    assert code == 2 and "tokenizer '" in err and "does not exist" in err


def test_command_module_interface(capsys):
    """``add_arguments`` / ``run(args, overrides)``, as rewardalign.cli calls every command module; an unknown
    field is a ConfigError that lists the known ones."""
    from rewardalign.commands import inspect as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args([str(DATA / "groups.jsonl")])
    assert command.run(args, []) == 0 and "groups: 3" in capsys.readouterr().out
    with pytest.raises(ConfigError, match=r"unknown data inspect field\(s\) \['max_length'\]"):
        command.run(args, ["--max_length", "8"])
