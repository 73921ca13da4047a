"""Evaluation: seeded generation, metrics on hand values, the KL estimate against the exact KL, likelihood
displacement, judges and ``rewardalign evaluate`` end to end on a tiny model."""

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from rewardalign import cli
from rewardalign.config import ConfigError
from rewardalign.data.prompts import load_prompts
from rewardalign.data.schema import Group
from rewardalign.data.tokenize import TokenizeConfig, tokenize_group
from rewardalign.evaluate import metrics
from rewardalign.evaluate.evaluator import evaluate_model
from rewardalign.modeling.generation import SamplingConfig, cut_at_stop, encode_prompt, generate_samples
from rewardalign.modeling.tiny import save_tiny
from rewardalign.rewards.base import BadReward, RewardSource, score_finite
from rewardalign.rewards.sources import build_source

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["add 3 and 4 =", "hello world, what is the answer?", "sort: d a c b ->"]
CORPUS = ["add 3 and 4 = 7. add 12 and 9 = 21. hello world, what is the answer? sort: d a c b -> a b c d"] * 20


def judge(prompt, response):
    """The rule judge of the end-to-end test: the number of digits in the response."""
    return float(sum(c.isdigit() for c in response))


def perturbed(model, scale=0.05, seed=1):
    other = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * scale)
    return other


def eos_biased(model, tokenizer, bias=3.0):
    """The model with a bias on the EOS logit, so that samples stop early and at different lengths."""
    old = model.lm_head
    head = nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(old.weight)
        head.bias.zero_()
        head.bias[tokenizer.eos_token_id] = bias
    model.lm_head = head
    return model


# ------------------------------------------------------------------------------------------------ generation


def test_prompts_are_encoded_as_training_encodes_them(tokenizer):
    chat = [{"role": "user", "content": "hello world"}]
    for prompt in ("add 3 and 4 =", chat):
        trained = tokenize_group(Group(prompt=prompt, responses=[" 7"]), tokenizer, TokenizeConfig(), 0)
        assert encode_prompt(tokenizer, prompt) == trained.prompt_ids
    chat_text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert encode_prompt(tokenizer, chat) == tokenizer(chat_text, add_special_tokens=False)["input_ids"]
    assert encode_prompt(tokenizer, "add 3 and 4 =", max_prompt_length=2) == encode_prompt(tokenizer, "add 3 and 4 =")[-2:]


def test_generation_is_seeded_deterministic_and_n_per_prompt(model, tokenizer):
    cfg = SamplingConfig(n_samples=3, max_new_tokens=6, batch_size=4, seed=7)
    state = torch.get_rng_state()
    first = generate_samples(model, tokenizer, PROMPTS, cfg)
    assert torch.equal(state, torch.get_rng_state())  # the caller's RNG is left alone
    again = generate_samples(model, tokenizer, PROMPTS, cfg)
    other = generate_samples(model, tokenizer, PROMPTS, SamplingConfig(n_samples=3, max_new_tokens=6, batch_size=4,
                                                                       seed=8))
    assert len(first.texts) == 3 and all(len(row) == 3 for row in first.texts)
    assert [len(row) for row in first.response_ids] == [3, 3, 3]
    assert first.texts == again.texts and first.response_ids == again.response_ids
    assert first.response_ids != other.response_ids
    assert len({tuple(r) for r in first.response_ids[0]}) > 1  # the copies of a prompt differ


def test_greedy_left_padded_batch_matches_single_prompt(model, tokenizer):
    cfg = SamplingConfig(n_samples=2, temperature=0.0, max_new_tokens=5, batch_size=8)
    batched = generate_samples(model, tokenizer, PROMPTS, cfg)
    alone = generate_samples(model, tokenizer, PROMPTS[:1], cfg)
    assert batched.response_ids[0] == alone.response_ids[0]
    assert all(row[0] == row[1] for row in batched.response_ids)  # greedy: every copy the same


def test_responses_are_cut_at_eos(model, tokenizer):
    eos = tokenizer.eos_token_id
    assert cut_at_stop([5, 6, eos, 0, 0], [eos]) == ([5, 6, eos], True)
    assert cut_at_stop([5, 6, 7], [eos]) == ([5, 6, 7], False)
    model = eos_biased(model, tokenizer)
    samples = generate_samples(model, tokenizer, PROMPTS, SamplingConfig(n_samples=4, max_new_tokens=8, seed=0))
    flat = [(ids, done, text) for i in range(3) for ids, done, text in
            zip(samples.response_ids[i], samples.finished[i], samples.texts[i])]
    assert any(done for _, done, _ in flat) and len({len(ids) for ids, _, _ in flat}) > 1
    for ids, done, text in flat:
        assert (ids[-1] == eos) == done and eos not in ids[:-1]
        assert tokenizer.pad_token_id not in ids or not done
        assert "</s>" not in text and "<pad>" not in text
        if done:
            assert text == tokenizer.decode(ids[:-1], skip_special_tokens=True)
    lengths = samples.lengths([eos])
    assert all(t == len(ids) - done for (ids, done, _), t in zip(flat, [t for row in lengths for t in row]))


# ------------------------------------------------------------------------------------------------ metrics


def test_mean_ci_on_hand_values():
    # mean 2.5, s = sqrt(5/3) = 1.29099, half width = 1.959964 * 1.290994 / 2 = 1.265151
    est = metrics.mean_ci([1, 2, 3, 4])
    assert est.mean == 2.5 and est.n == 4
    assert est.lo == pytest.approx(2.5 - 1.265151, abs=1e-6) and est.hi == pytest.approx(2.5 + 1.265151, abs=1e-6)
    assert math.isnan(metrics.mean_ci([3.0]).lo)
    boot = metrics.mean_ci([1, 2, 3, 4], method="bootstrap", seed=0)
    assert boot == metrics.mean_ci([1, 2, 3, 4], method="bootstrap", seed=0) and boot.lo < 2.5 < boot.hi
    assert metrics.mean_ci([2, 2, 2], method="bootstrap").ci == (2.0, 2.0)
    with pytest.raises(ValueError, match="not finite"):
        metrics.mean_ci([1.0, math.nan])


def test_clustered_ci_uses_prompts_as_units():
    # per-prompt means 2, 2, 5: mean 3, s = sqrt(3), half width = 1.959964 * sqrt(3) / sqrt(3) = 1.959964
    est = metrics.clustered_mean_ci([[1, 3], [2, 2], [6, 4]])
    assert est.mean == 3.0 and est.n == 3
    assert est.ci == pytest.approx((3 - 1.959964, 3 + 1.959964), abs=1e-6)
    assert metrics.clustered_mean_ci([[1, 2, 3, 4]]) == metrics.mean_ci([1, 2, 3, 4])  # one prompt: samples


def test_win_rate_ties_count_half():
    # outcomes [[1, 0.5], [0.5, 0]] -> per prompt 0.75, 0.25 -> 0.5; s = 0.353553, half = 1.959964 * s / sqrt(2)
    est, counts = metrics.win_rate([[1, 2], [3, 0]], [[0, 2], [3, 5]])
    assert est.mean == 0.5 and counts == {"wins": 1, "ties": 2, "losses": 1}
    assert est.hi - 0.5 == pytest.approx(1.959964 * 0.353553 / math.sqrt(2), abs=1e-5)
    assert metrics.win_outcomes([[1.0, 1.05]], [[1.02, 1.0]], tie_tolerance=0.03) == [[0.5, 1.0]]
    with pytest.raises(ValueError, match="prompt 0 has 2 samples against 1"):
        metrics.win_rate([[1, 2]], [[1]])


def test_kl_shift_and_length_on_hand_values():
    # one prompt: log-ratios 0.5 and -0.5 (one negative: a single term can be); mean 0
    assert metrics.kl_estimate([[-1.0, -2.0]], [[-1.5, -1.5]]).mean == 0.0
    assert metrics.kl_estimate([[-1.0], [-3.0]], [[-2.0], [-3.5]]).mean == pytest.approx(0.75)
    assert metrics.logp_shift([-10.0, -12.0], [-9.0, -9.0]).mean == -2.0
    stats = metrics.length_stats([[2, 4]], [[10, 20]])
    assert stats == {"tokens_mean": 3.0, "tokens_max": 4, "chars_mean": 15.0}


def test_chosen_rejected_conventions():
    assert metrics.chosen_rejected(rewards=[0.1, 0.9, 0.3]) == ([1], [0])
    assert metrics.chosen_rejected(rewards=[0.0, 1.0, 0.0]) == ([1], [2])  # worst: last on a tie
    assert metrics.chosen_rejected(scores=[0.5, 0.5]) == ([], [])
    assert metrics.chosen_rejected(labels=[1, 0, 1], k=3) == ([0, 2], [1])
    assert metrics.chosen_rejected(k=2) == ([0], [1])
    with pytest.raises(ValueError, match="no chosen/rejected order"):
        metrics.chosen_rejected(k=3)


# ------------------------------------------------------------------------------------- KL and displacement


def test_kl_is_zero_for_the_reference_itself(model, tokenizer):
    cfg = SamplingConfig(n_samples=3, max_new_tokens=5)
    for reference in (model, copy.deepcopy(model)):
        out = evaluate_model(model, PROMPTS, tokenizer=tokenizer, reference=reference, sampling=cfg)
        assert out["kl"] == 0.0 and out["kl_ci"] == [0.0, 0.0] and out["kl_exact_sampling"] is True
        assert all(s["logp"] == s["ref_logp"] for s in out["samples"])


def test_kl_estimate_matches_the_exact_kl_on_one_token_responses(model, tokenizer):
    """With one-token responses, KL(pi || pi_ref) = sum_y pi(y|x) (log pi(y|x) - log pi_ref(y|x)) over the
    whole vocabulary; the sampled estimate must be within its own 95% interval's width of it."""
    policy = perturbed(model)
    prompt = PROMPTS[0]
    with torch.no_grad():
        ids = torch.tensor([encode_prompt(tokenizer, prompt)])
        logp, logq = (m(ids).logits[0, -1].log_softmax(-1) for m in (policy, model))
        exact = float((logp.exp() * (logp - logq)).sum())
    out = evaluate_model(policy, [prompt], tokenizer=tokenizer, reference=model,
                         sampling=SamplingConfig(n_samples=1000, max_new_tokens=1, batch_size=500, seed=0))
    lo, hi = out["kl_ci"]
    assert exact > 0.01 and out["kl"] > 0
    assert abs(out["kl"] - exact) <= hi - lo, (out["kl"], exact, lo, hi)
    assert out["ci"]["unit"] == "sample"


def test_likelihood_displacement(model, tokenizer):
    pairs = [Group(prompt="add 3 and 4 =", responses=[" 7", " 8"]),
             Group(prompt="sort: d a c b ->", responses=[" a b c d", " d c b a", " a"], rewards=[1.0, 0.0, 0.5]),
             Group(prompt="hello", responses=[" world", " there"], rewards=[1.0, 1.0])]  # a tie: skipped
    cfg = SamplingConfig(n_samples=1, max_new_tokens=2)
    same = evaluate_model(model, PROMPTS[:1], tokenizer=tokenizer, reference=model, pairs=pairs, sampling=cfg)
    assert same["chosen_logp_shift"] == 0.0 and same["rejected_logp_shift"] == 0.0
    assert same["n_pair_groups"] == 3 and same["pair_groups_tied"] == 1
    other = evaluate_model(perturbed(model), PROMPTS[:1], tokenizer=tokenizer, reference=model, pairs=pairs,
                           sampling=cfg)
    assert other["chosen_logp_shift"] != 0.0
    assert other["margin_shift"] == pytest.approx(other["chosen_logp_shift"] - other["rejected_logp_shift"])


def test_reward_and_win_rate_against_a_baseline(model, tokenizer):
    cfg = SamplingConfig(n_samples=2, max_new_tokens=4)
    out = evaluate_model(model, PROMPTS, judge, tokenizer=tokenizer, baseline=model, sampling=cfg)
    assert out["win_rate"] == 0.5 and out["ties"] == 6  # same model, same seed: the same samples
    rewards = [s["reward"] for s in out["samples"]]
    assert out["reward_mean"] == pytest.approx(sum(rewards) / len(rewards))
    assert all(s["reward"] == judge(s["prompt"], s["response"]) for s in out["samples"])
    assert "kl" not in out and set(out["length"]) >= {"tokens_mean", "chars_mean"}


# ------------------------------------------------------------------------------------------------ judges


def test_judge_specs(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    assert build_source("rule:tests.test_evaluate:judge").score(["p"], ["a1b22"]).tolist() == [3.0]
    (tmp_path / "my_judge.py").write_text("def score(prompt, response):\n    return float(len(response))\n")
    assert build_source(f"rule:{tmp_path / 'my_judge.py'}:score").score(["p"], ["abc"]).tolist() == [3.0]
    for bad in ("nothing", "rule:tests.test_evaluate", "rule:tests.test_evaluate:missing", "rm:"):
        with pytest.raises(ConfigError):
            build_source(bad)
    gold = build_source("gym:sort")
    assert gold.name == "gym:sort" and gold.task.name == "sort"
    with pytest.raises(ConfigError, match="unknown gym task"):
        build_source("gym:no_such_task")


def test_rm_judge_scores_with_a_reward_model(tokenizer, tmp_path, monkeypatch):
    from rewardalign.modeling.tiny import build_tiny_reward_model

    path = tmp_path / "rm"
    build_tiny_reward_model(tokenizer, hidden_size=32, num_layers=1, num_heads=4).save_pretrained(path)
    tokenizer.save_pretrained(path)
    rm = build_source(f"rm:{path}")
    assert rm.name == f"rm:{path}"
    values = score_finite(rm, ["add 3 and 4 =", "hello"], [" 7", " world"]).tolist()
    assert len(values) == 2 and all(math.isfinite(v) for v in values) and values[0] != values[1]
    with pytest.raises(BadReward, match="gave nan for prompt 'p', response 'x'"):
        score_finite(build_source(lambda p, r: math.nan if r == "x" else 1.0), ["p", "p"], ["a", "x"])


def test_an_ensemble_judge_scores_the_member_mean(model_dir, tmp_path):
    """evaluate's reward of a sample under an ensemble is the mean of its members' rewards."""

    class Ensemble(RewardSource):
        kind, columns = "ensemble", ["a", "b"]

        def _identity(self):
            return {}

        def score(self, prompts, responses, progress=None):
            return np.stack([np.full(len(prompts), 1.0), np.arange(len(prompts), dtype=float)], axis=1)

    result = evaluate_model(model_dir, PROMPTS[:2], Ensemble(), sampling=SamplingConfig(n_samples=2, max_new_tokens=4))
    flat = [rec["reward"] for rec in result["samples"]]
    assert flat == [(1.0 + i) / 2 for i in range(4)]


# --------------------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(save_tiny(CORPUS, tmp_path_factory.mktemp("evaluate") / "model", vocab_size=300, hidden_size=32,
                         num_layers=1, num_heads=4))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_load_prompts_from_prompt_rows_and_from_groups(tmp_path):
    plain = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "a"}])
    assert load_prompts(plain) == ["a", "b"]
    assert load_prompts(plain, max_prompts=1) == ["a"]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "x", "chosen": " 1", "rejected": " 2"},
                                                   {"prompt": "y", "chosen": " 3", "rejected": " 4"},
                                                   {"prompt": "x", "chosen": " 5", "rejected": " 6"}])
    assert load_prompts(pairs) == ["x", "y"]
    with pytest.raises(ConfigError, match="no 'prompt' column"):
        load_prompts(write_jsonl(tmp_path / "bad.jsonl", [{"text": "a"}]))


def test_evaluate_command_end_to_end(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT))
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "add 3 and 4 =", "chosen": " 7", "rejected": " 8"},
                                                   {"prompt": "sort: b a ->", "chosen": " a b", "rejected": " b"}])
    config = tmp_path / "eval.yaml"
    config.write_text(
        f"model: {model_dir}\nprompts: {prompts}\njudge: rule:tests.test_evaluate:judge\n"
        f"reference: {model_dir}\nbaseline: {model_dir}\npairs: {pairs}\nn_samples: 3\nmax_new_tokens: 6\n"
        f"generation_batch_size: 4\nseed: 3\noutput_dir: {tmp_path / 'out'}\n"
    )
    assert cli.main(["evaluate", "--config", str(config), "--max_prompts", "2"]) == 0
    out = tmp_path / "out"
    result = json.loads((out / "eval.json").read_text())
    assert result["n_prompts"] == 2 and result["n_samples"] == 3
    assert result["kl"] == 0.0 and result["win_rate"] == 0.5 and result["ties"] == 6
    assert result["chosen_logp_shift"] == 0.0 and result["rejected_logp_shift"] == 0.0
    assert len(result["reward_ci"]) == 2 and result["judge"] == "rule:tests.test_evaluate:judge"
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6 and {"prompt", "response", "reward"} <= set(samples[0])
    assert all(s["reward"] == judge(s["prompt"], s["response"]) for s in samples)
    assert (out / "eval_config.yaml").is_file() and not (out / "config.yaml").exists()
    missing = sum(not s["finished"] for s in samples) / len(samples)
    assert result["eos_missing_fraction"] == pytest.approx(missing)
    captured = capsys.readouterr()
    assert "reward_mean" in captured.out and "kl" in captured.out
    assert ("never emit EOS" in captured.err) == (missing > 0.1)


def test_eos_missing_fraction_on_hand_made_samples():
    assert metrics.eos_missing_fraction([[True, False], [False, False]]) == 0.75
    assert metrics.eos_missing_fraction([[True], [True]]) == 0.0
    assert metrics.eos_warning(0.1) is None and metrics.eos_warning(None) is None
    assert metrics.eos_warning(0.43).startswith("warning: 43% of the samples never emit EOS")
    with pytest.raises(ValueError, match="no responses"):
        metrics.eos_missing_fraction([[]])


def test_evaluate_command_errors_before_loading(model_dir, tmp_path, capsys):
    base = ["evaluate", "--model", model_dir, "--output_dir", str(tmp_path / "o")]
    assert cli.main(base + ["--prompts", str(tmp_path / "missing.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a"}])
    assert cli.main(base + ["--prompts", prompts, "--n_samples", "0"]) == 2
    assert "n_samples must be >= 1" in capsys.readouterr().err
    assert cli.main(base + ["--prompts", prompts, "--temprature", "1"]) == 2
    assert "unknown evaluate field(s) ['temprature']" in capsys.readouterr().err
    assert cli.main(base + ["--prompts", prompts, "--pairs", prompts]) == 2
    assert "need a reference" in capsys.readouterr().err
    other = save_tiny(["zzz yyy xxx"] * 5, tmp_path / "other", vocab_size=280, hidden_size=32, num_layers=1,
                      num_heads=4)
    assert cli.main(base + ["--prompts", prompts, "--reference", str(other), "--max_new_tokens", "1"]) == 2
    assert "another tokenizer" in capsys.readouterr().err
