"""Data on datasets: prepare_dataset's Arrow data set gives the per-group path's token ids, is cached by content
(a second call tokenises nothing; a changed row, tokenizer or max_length tokenises again), and is read lazily."""

import copy
import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from rewardalign.data import load_groups, pipeline
from rewardalign.data import tokenize as tokenize_module
from rewardalign.data.collate import GroupDataset, collate_groups
from rewardalign.data.pipeline import TokenizedDataset, prepare_dataset
from rewardalign.data.schema import DropReport, Group
from rewardalign.data.tokenize import TokenizeConfig, TokenizeStats, tokenize_group, tokenize_groups
from rewardalign.modeling.tiny import build_tiny_tokenizer

TEXTS = ["add 3 and 4 = 7. Answer: 7 and 8 ok.", "The quick brown fox jumps over the lazy dog. hello world?"] * 10

DATA = Path(__file__).parent / "fixtures" / "data"
FIXTURES = [
    ("pairs.jsonl", {}), ("pairs_conversational.jsonl", {}), ("pairs_hh.json", {"score_range": (1, 10)}),
    ("binary.csv", {}), ("scores.parquet", {}), ("ultrafeedback.json", {}), ("helpsteer.jsonl", {}),
    ("groups.jsonl", {}),
]


def per_group(groups, tokenizer, config):
    """The reference: tokenize_group on each group, one at a time."""
    stats, drops, out = TokenizeStats(), DropReport(), []
    for i, group in enumerate(groups):
        tokenized = tokenize_group(group, tokenizer, config, i, stats)
        if tokenized is None:
            drops.add(i, tokenize_module.too_long_reason(config))
        else:
            out.append(tokenized)
    return out, stats, drops


def as_tuples(groups):
    return [(g.index, g.prompt_ids, g.response_ids, g.rewards, g.scores, g.labels, g.reward_members) for g in groups]


@pytest.fixture()
def cache(tmp_path):
    return tmp_path / "cache"


@pytest.fixture()
def count_tokenisation(monkeypatch):
    """Counts the groups tokenize_batch is asked for (num_proc 1: the map runs in this process)."""
    calls = {"groups": 0}
    real = pipeline.tokenize_batch

    def counting(tokenizer, config, prompts, responses):
        calls["groups"] += len(prompts)
        return real(tokenizer, config, prompts, responses)

    monkeypatch.setattr(pipeline, "tokenize_batch", counting)
    return calls


@pytest.mark.parametrize("config", [
    TokenizeConfig(max_length=64),
    TokenizeConfig(max_length=24, max_prompt_length=10),
    TokenizeConfig(max_length=24, truncation="drop"),
    TokenizeConfig(max_length=64, chat_template="always"),
    TokenizeConfig(max_length=64, chat_template="never", add_eos=False),
], ids=["plain", "truncate", "drop", "chat-always", "never-no-eos"])
@pytest.mark.parametrize("name, options", FIXTURES, ids=[f for f, _ in FIXTURES])
def test_arrow_path_gives_the_per_group_ids(tokenizer, cache, name, options, config):
    groups, _ = load_groups(DATA / name, **options)
    expected, stats, drops = per_group(groups, tokenizer, config)
    got_drops = DropReport()
    dataset, got_stats = prepare_dataset(DATA / name, tokenizer, config, cache_dir=cache, drops=got_drops,
                                         num_proc=1, **options)
    assert as_tuples(dataset) == as_tuples(expected)
    assert as_tuples([dataset[i] for i in range(len(dataset))]) == as_tuples(expected)
    assert got_stats == stats and got_drops.rows == drops.rows
    assert dataset.lengths == [g.length for g in expected]
    assert dataset.row_lengths("shared_prompt") == [len(g.prompt_ids) + sum(map(len, g.response_ids))
                                                    for g in expected]
    # the batched list path agrees too
    listed, listed_stats = tokenize_groups(groups, tokenizer, config)
    assert as_tuples(listed) == as_tuples(expected) and listed_stats == stats


def test_boundary_merge_and_chat_templates(tokenizer, cache):
    """'Answer: ' + '7' merges across the boundary (see test_tokenize.py): the response ids are then the
    response tokenised on its own; chat groups go through the template."""
    rows = [
        {"prompt": "Answer: ", "responses": ["7", " 7 and 8", "yes"]},
        {"prompt": "add 3 and 4 =", "responses": [" 7", "7", "  7."]},
        {"prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what is the answer?"}],
         "responses": ["yes", [{"role": "assistant", "content": "no, it is not."}]]},
        {"prompt": "hello world, what is the answer?", "responses": ["\n\nthe answer is yes", " no"]},
    ]
    groups, _ = load_groups(rows, "group")
    config = TokenizeConfig(max_length=128)
    expected, stats, _ = per_group(groups, tokenizer, config)
    assert stats.boundary_fixes >= 1
    dataset, got = prepare_dataset(rows, tokenizer, config, format="group", cache_dir=cache, num_proc=1)
    assert as_tuples(dataset) == as_tuples(expected) and got == stats
    assert tokenizer.decode(dataset[2].prompt_ids).endswith("<|assistant|>\n")


def llama3_style_tokenizer(texts):
    """A byte-level BPE pre-tokenised by a Llama-3-like split regex, with a BOS in front."""
    pattern = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")


def random_groups(seed, n):
    """Texts built to stress the boundary: whitespace runs, newlines, digits, contractions, added tokens."""
    rng = random.Random(seed)
    pieces = ["a", "b", " ", "  ", "\n", "\n\n", "7", "12", "345", ":", ".", "'s", "'", "'ll", "re", "é", "日本",
              "\t", " \n", "<s>", "</s>", "<|user|>", "!", "?", "x", "hello", " world", "Answer", "\r\n",
              "\u3000", "🙂", "   ", "-", ",", "the", " the", "ing"]

    def text():
        return "".join(rng.choice(pieces) for _ in range(rng.randint(3, 40)))

    groups = []
    while len(groups) < n:
        prompt, responses = text(), list(dict.fromkeys(text() for _ in range(3)))
        responses = [r for r in responses if r.strip()]
        if prompt.strip() and responses:
            groups.append(Group(prompt, responses))
    return groups


@pytest.mark.parametrize("kind", ["gpt2-style", "llama3-style"])
def test_batched_ids_match_per_group_ids_on_adversarial_text(tokenizer, kind):
    groups = random_groups(0 if kind == "gpt2-style" else 1, 400)
    tok = tokenizer if kind == "gpt2-style" else llama3_style_tokenizer([g.prompt for g in groups] + TEXTS)
    assert tokenize_module._window_for(tok) is not None, "the window check must apply to this tokenizer"
    config = TokenizeConfig(max_length=4096)
    expected, stats, _ = per_group(groups, tok, config)
    got, got_stats = tokenize_groups(groups, tok, config, batch_size=128)
    assert as_tuples(got) == as_tuples(expected) and got_stats == stats
    assert stats.boundary_fixes > 10  # the merge path is exercised


def test_tokenizers_outside_the_window_check_tokenise_jointly(tokenizer):
    """A normaliser (or anything else not known to be local) turns the window check off: every response goes
    through the joint tokenisation, with the same ids."""
    from tokenizers import normalizers

    tok = copy.deepcopy(tokenizer)

    tok.backend_tokenizer.normalizer = normalizers.Lowercase()
    assert tokenize_module._window_for(tok) is None
    groups = random_groups(2, 100)
    expected, stats, _ = per_group(groups, tok, TokenizeConfig(max_length=4096))
    got, got_stats = tokenize_groups(groups, tok, TokenizeConfig(max_length=4096))
    assert as_tuples(got) == as_tuples(expected) and got_stats == stats


def test_second_call_is_a_cache_hit_that_tokenises_nothing(tokenizer, cache, tmp_path, count_tokenisation):
    path = tmp_path / "pairs.jsonl"
    shutil.copy(DATA / "pairs.jsonl", path)
    config = TokenizeConfig(max_length=24, truncation="drop")
    drops = DropReport()
    first, stats = prepare_dataset(path, tokenizer, config, cache_dir=cache, drops=drops)
    assert count_tokenisation["groups"] == 4
    again_drops = DropReport()
    second, again = prepare_dataset(path, tokenizer, config, cache_dir=cache, drops=again_drops)
    assert count_tokenisation["groups"] == 4  # nothing tokenised
    assert as_tuples(second) == as_tuples(first) and again == stats
    assert again_drops.rows == drops.rows and len(drops) == stats.dropped > 0  # drops reported from the cache
    assert second.fingerprint == first.fingerprint
    # the key is the content: the same bytes elsewhere, a freshly loaded copy of the tokenizer hit it too
    moved = tmp_path / "elsewhere.jsonl"
    shutil.copy(path, moved)
    tokenizer.save_pretrained(tmp_path / "tok")
    reloaded = PreTrainedTokenizerFast.from_pretrained(tmp_path / "tok")
    prepare_dataset(moved, reloaded, config, cache_dir=cache)
    assert count_tokenisation["groups"] == 4


def test_cache_invalidation(tokenizer, cache, tmp_path, count_tokenisation):
    path = tmp_path / "pairs.jsonl"
    shutil.copy(DATA / "pairs.jsonl", path)
    config = TokenizeConfig(max_length=64)
    base, _ = prepare_dataset(path, tokenizer, config, cache_dir=cache)
    seen = count_tokenisation["groups"]

    def tokenised_again(*args, **kwargs):
        nonlocal seen
        dataset, _ = prepare_dataset(*args, cache_dir=cache, **kwargs)
        fresh, seen = count_tokenisation["groups"] - seen, count_tokenisation["groups"]
        return fresh > 0, dataset

    # one data row changes
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[2]["chosen"] += " (edited)"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    missed, edited = tokenised_again(path, tokenizer, config)
    assert missed and edited[2].response_ids[0] != base[2].response_ids[0]
    assert not tokenised_again(path, tokenizer, config)[0]
    # the tokenizer changes: another vocabulary, or only its chat template
    other = build_tiny_tokenizer(TEXTS, vocab_size=280)
    assert tokenised_again(path, other, config)[0]
    templated = copy.deepcopy(tokenizer)
    templated.chat_template = templated.chat_template.replace("<|", "[|")
    assert tokenised_again(path, templated, config)[0]
    # a tokenise setting changes
    missed, shorter = tokenised_again(path, tokenizer, TokenizeConfig(max_length=16))
    assert missed and max(shorter.lengths) <= 16
    assert tokenised_again(path, tokenizer, TokenizeConfig(max_length=64, chat_template="always"))[0]
    # a load option changes
    assert tokenised_again(path, tokenizer, config, on_error="drop")[0]
    # and the first entry is still there
    assert not tokenised_again(path, tokenizer, TokenizeConfig(max_length=16))[0]


def test_group_dataset_reads_lazily_and_collates(tokenizer, cache):
    dataset, _ = prepare_dataset(DATA / "pairs.jsonl", tokenizer, TokenizeConfig(max_length=64), cache_dir=cache)
    assert isinstance(dataset, TokenizedDataset)
    wrapped = GroupDataset(dataset)
    assert wrapped.groups is dataset  # not copied into a list
    assert wrapped.lengths == [g.length for g in dataset]
    assert wrapped.row_lengths("packed_shared_prompt") == dataset.row_lengths("shared_prompt")
    loader = torch.utils.data.DataLoader(wrapped, batch_size=2, collate_fn=lambda b: collate_groups(b, 0))
    batches = list(loader)
    expected = collate_groups([dataset[0], dataset[1]], 0)
    assert all(torch.equal(batches[0][k], v) for k, v in expected.items() if v.dtype != torch.float32)
    assert [g.rewards for g in dataset.feedback()] == [g.rewards for g in dataset]
    groups, _ = prepare_dataset(DATA / "groups.jsonl", tokenizer, TokenizeConfig(max_length=64), cache_dir=cache)
    assert [g.k for g in groups.feedback()] == groups.ks == [4, 2, 3]
    assert groups.first_missing("rewards") == 2 and groups.first_missing("labels") == 1
    assert groups.first_missing("scores") == 1 and groups.split(0.0, 0)[0].first_missing("reward_members") == 0


def test_reference_log_probs_as_columns(tokenizer, cache):
    dataset, _ = prepare_dataset(DATA / "pairs.jsonl", tokenizer, TokenizeConfig(max_length=64), cache_dir=cache)
    assert dataset.reference() is None
    ref = torch.arange(8, dtype=torch.float32) * -1.0
    pipeline.add_reference_logps(dataset, ref, [-1.0, -2.0, -3.0, -4.0])
    assert dataset[1].extra == {"ref_logps": [-2.0, -3.0], "prompt_ref_logps": -2.0}
    flat, prompts = pipeline.reference_logps(dataset)
    assert flat.tolist() == ref.tolist() and prompts.tolist() == [-1.0, -2.0, -3.0, -4.0]
    assert "ref_logps" in dataset.data.column_names
    batch = collate_groups([dataset[0], dataset[2]], 0)
    assert batch["ref_logps"].tolist() == [[0.0, -1.0], [-4.0, -5.0]]
    assert batch["prompt_ref_logps"].tolist() == [-1.0, -3.0]
    fresh, _ = prepare_dataset(DATA / "pairs.jsonl", tokenizer, TokenizeConfig(max_length=64), cache_dir=cache)
    train, held = fresh.split(0.5, 0)
    train.add_reference([0.5] * 4)  # a view stores its own rows only
    assert [g.extra["ref_logps"] for g in train] == [[0.5, 0.5]] * 2 and "ref_logps" not in held[0].extra
    with pytest.raises(ValueError, match="7 values for 8 responses"):
        dataset.add_reference(ref[:7])


def test_precompute_reference_stores_columns_and_keys_on_the_fingerprint(tokenizer, cache, model, tmp_path):
    from rewardalign.modeling.reference import precompute_reference, reference_cache_key

    dataset, _ = prepare_dataset(DATA / "pairs.jsonl", tokenizer, TokenizeConfig(max_length=64), cache_dir=cache)
    listed, _ = tokenize_groups(load_groups(DATA / "pairs.jsonl")[0], tokenizer, TokenizeConfig(max_length=64))
    assert reference_cache_key("m", dataset, {}) != reference_cache_key("m", dataset.split(0.5, 0)[0], {})
    hit = precompute_reference(model, dataset, tokenizer.pad_token_id, batch_size=2, progress=False,
                               cache_file=tmp_path / "ref.safetensors")
    precompute_reference(model, listed, tokenizer.pad_token_id, batch_size=2, progress=False)
    assert not hit
    for arrow, plain in zip(dataset, listed):
        assert arrow.extra["ref_logps"] == pytest.approx(plain.extra["ref_logps"], abs=1e-5)


def test_split_matches_splitting_the_groups_first(tokenizer, cache):
    """A held-out split of the tokenised data set is what tokenising each part of the split groups gives."""
    rows = [{"prompt": f"hello world {i} what is the answer?", "responses": ["yes", "no"]} for i in range(20)]
    rows[3]["prompt"] = "the quick brown fox " * 8  # dropped as too long
    config = TokenizeConfig(max_length=64, truncation="drop")
    dataset, _ = prepare_dataset(rows, tokenizer, config, format="group", cache_dir=cache)
    groups, _ = load_groups(rows, "group")
    order = list(range(len(groups)))
    random.Random(7).shuffle(order)
    held = set(order[:5])
    train, held_out = dataset.split(0.25, 7)
    for part, members in ((train, [g for i, g in enumerate(groups) if i not in held]),
                          (held_out, [g for i, g in enumerate(groups) if i in held])):
        expected, _ = tokenize_groups(members, tokenizer, config)
        assert as_tuples(part) == as_tuples(expected)
    assert len(train) + len(held_out) == len(dataset) == 19
    again, rest = train.split(0.5, 3)  # a view splits its own groups, numbered within it
    assert len(again) + len(rest) == len(train) and [g.index for g in rest] == sorted(g.index for g in rest)
    assert {g.prompt_ids[0] for g in again} | {g.prompt_ids[0] for g in rest} == {g.prompt_ids[0] for g in train}
    assert train.fingerprint != held_out.fingerprint != dataset.fingerprint
    with pytest.raises(ValueError, match="eval_fraction"):
        dataset.split(1.0, 0)


def test_two_processes_give_the_same_data_set(tokenizer, cache):
    rows = [{"prompt": f"add {i} and {i + 1} =", "responses": [f" {2 * i + 1}", f"{2 * i}"]} for i in range(60)]
    one, stats = prepare_dataset(rows, tokenizer, TokenizeConfig(max_length=32), format="group",
                                 cache_dir=cache / "one", num_proc=1)
    two, stats_two = prepare_dataset(rows, tokenizer, TokenizeConfig(max_length=32), format="group",
                                     cache_dir=cache / "two", num_proc=2)
    assert as_tuples(one) == as_tuples(two) and stats == stats_two
    assert len(list((cache / "two").glob("*/tokenized_*.arrow"))) == 2


def test_plain_text_is_tokenised_here_and_chat_templates_in_processes(tokenizer, cache, monkeypatch,
                                                                       count_tokenisation):
    """By default a fast tokenizer on plain text works in this process (on its own threads: no copies of
    the process); chat templates, rendered in Python, and ``TOKENIZERS_PARALLELISM=false`` get processes."""
    monkeypatch.setattr(pipeline.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    n = 2 * pipeline.MIN_GROUPS_PER_PROCESS  # enough groups for two processes
    plain = [{"prompt": f"add {i} and 1 =", "responses": [f" {i + 1}", " no"]} for i in range(n)]
    prepare_dataset(plain, tokenizer, TokenizeConfig(max_length=32), format="group", cache_dir=cache)
    assert count_tokenisation["groups"] == n  # every group in this process
    chats = [{"prompt": [{"role": "user", "content": f"add {i} and 1"}], "responses": [f"{i + 1}", "no"]}
             for i in range(n)]
    dataset, _ = prepare_dataset(chats, tokenizer, TokenizeConfig(max_length=64), format="group", cache_dir=cache)
    assert count_tokenisation["groups"] == n and len(dataset) == n  # in two worker processes
    assert len(list(cache.glob("*/tokenized_*.arrow"))) == 2
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    prepare_dataset(plain, tokenizer, TokenizeConfig(max_length=31), format="group", cache_dir=cache)
    assert count_tokenisation["groups"] == n and len(list(cache.glob("*/tokenized_*.arrow"))) == 4


def test_a_data_file_is_read_once_for_its_fingerprint(tokenizer, cache, monkeypatch):
    """The cache key hashes the file's bytes once per call (0.15 s a pass on the 160 MB benchmark file)."""
    reads = []
    real = pipeline.file_digest
    monkeypatch.setattr(pipeline, "file_digest", lambda path: reads.append(path) or real(path))
    prepare_dataset(DATA / "groups.jsonl", tokenizer, TokenizeConfig(max_length=64), cache_dir=cache)
    prepare_dataset(DATA / "groups.jsonl", tokenizer, TokenizeConfig(max_length=64), cache_dir=cache)
    assert reads == [DATA / "groups.jsonl"] * 2


def test_an_objectives_needs_are_checked_on_the_columns(tokenizer, cache):
    """check_data_fits reads the data set's columns and names the first group, in view order, that lacks what
    the objective needs; an ensemble's members may stand in for rewards, rewards for members."""
    from rewardalign.data.schema import DataError
    from rewardalign.train.data import check_data_fits

    rows = [
        {"prompt": "a", "responses": [" x", " y"], "rewards": [1.0, 0.0], "labels": [1, 0]},
        {"prompt": "b", "responses": [" x", " y"], "reward_members": [[1.0, 0.0], [0.5, 0.5]]},
        {"prompt": "c", "responses": [" x", " y"], "scores": [0.2, 0.9]},
        {"prompt": "d", "responses": [" x"], "rewards": [1.0], "labels": [1], "scores": [0.5]},
    ]
    data, _ = prepare_dataset(rows, tokenizer, TokenizeConfig(max_length=32), format="group", cache_dir=cache)
    with pytest.raises(DataError, match=r"row 1, field 'rewards': objective 'dro' needs rewards"):
        check_data_fits("dro", {}, data, "g.jsonl")
    with pytest.raises(DataError, match=r"row 2, field 'reward_members': objective 'edpo' needs reward_members"):
        check_data_fits("edpo", {}, data, "g.jsonl")
    with pytest.raises(DataError, match=r"row 0, field 'scores'"):
        check_data_fits("una_score_mse", {}, data, "g.jsonl")
    with pytest.raises(DataError, match=r"row 3, field 'responses': objective 'dpo' needs K >= 2 .* has 1"):
        check_data_fits("dpo", {}, data, "g.jsonl")
    later = data.split(0.5, 0)[0]  # a view: positions and indices within it
    expected = next(g.index for g in later if g.rewards is None)
    with pytest.raises(DataError, match=rf"row {expected}, field 'rewards'"):
        check_data_fits("dro", {}, later, "g.jsonl")


def test_a_build_killed_mid_way_leaves_no_folder_behind_once_rebuilt(tokenizer, cache):
    rows = [{"prompt": f"add {i} and 1 =", "responses": [f" {i + 1}", " no"]} for i in range(8)]
    dataset, _ = prepare_dataset(rows, tokenizer, TokenizeConfig(max_length=32), format="group", cache_dir=cache)
    entry = cache / dataset.fingerprint
    shutil.rmtree(entry)  # as if the process had been killed before its build was moved in place
    (cache / f"{dataset.fingerprint}.tmp-99999" / "groups.arrow").parent.mkdir()
    again, _ = prepare_dataset(rows, tokenizer, TokenizeConfig(max_length=32), format="group", cache_dir=cache)
    assert as_tuples(again) == as_tuples(dataset) and entry.is_dir()
    assert not list(cache.glob("*.tmp-*"))


def test_load_errors_name_the_file_row_and_field(tokenizer, cache, tmp_path):
    from rewardalign.data.schema import DataError, DataFileNotFoundError

    with pytest.raises(DataFileNotFoundError, match="missing.jsonl: no such file"):
        prepare_dataset(tmp_path / "missing.jsonl", tokenizer, TokenizeConfig(), cache_dir=cache)
    with pytest.raises(DataError, match=r"row 1, field 'rejected_reward': is nan"):
        prepare_dataset(DATA / "pairs_bad.jsonl", tokenizer, TokenizeConfig(), cache_dir=cache)
    drops = DropReport()
    dataset, _ = prepare_dataset(DATA / "pairs_bad.jsonl", tokenizer, TokenizeConfig(), cache_dir=cache,
                                 on_error="drop", drops=drops)
    assert len(dataset) == 2 and [row for row, _ in drops.rows] == [1, 2, 3]
    assert not list(cache.glob("*.tmp-*"))  # a failed build leaves nothing behind
