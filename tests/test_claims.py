"""benchmarks/claims.py and claims_measure.py: the tuning grid, the jobs, matched-KL pairs and the paired
measures, worked out by hand."""

import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import claims  # noqa: E402
import claims_measure as cm  # noqa: E402

from rewardalign.demo.config import METHODS  # noqa: E402

REVERSE = "examples/tasks/reverse.py:ReverseTask"
ROWS = [*claims.TUNED, "dpo_noisy", "drdo_noisy"]


def run(kl, rewards, shift=None, shift_ci=None):
    """A run's row: its per-prompt rewards [prompt][sample] and the eval headline they imply."""
    flat = [r for row in rewards for r in row]
    ev = {"kl": kl, "reward_mean": sum(flat) / len(flat), "chosen_logp_shift": shift, "chosen_logp_shift_ci": shift_ci}
    return {"eval": ev, "prompt_rewards": rewards}


def test_matched_pairs_compare_at_matched_kl():
    a = [(0.5, 0.45, "a1"), (2.0, 0.50, "a2"), (5.0, 0.52, "a3")]
    b = [(1.0, 0.40, "b1"), (4.0, 0.45, "b2"), (9.0, 0.30, "b3")]
    # each b run with the best a run within its KL, then each a run with the best b run within its KL
    assert cm.matched_pairs(a, b) == [("a1", "b1"), ("a2", "b2"), ("a3", "b3"), ("a2", "b1"), ("a3", "b2")]
    assert cm.matched_pairs([(0.5, 0.35, "x")], [(3.0, 0.45, "y")]) == [("x", "y")]
    assert cm.matched_pairs([(1.0, 0.5, "x")], []) == []


def test_gap_units_average_the_matched_differences_per_prompt():
    rows = {"a@1": run(0.5, [[0.5], [0.4]]), "a@2": run(2.0, [[0.6], [0.4]]), "b@1": run(1.0, [[0.3], [0.5]]),
            "b_other": run(0.1, [[9.0], [9.0]])}  # not of b's sweep (no @)
    # pairs: (a@1, b@1) for b@1; a@1 has no b within KL 0.5; (a@2, b@1) for a@2
    units = cm.gap_units(rows, "a", "b")
    assert units.values == pytest.approx((0.25, -0.1))  # prompt 0: (0.2 + 0.3) / 2; prompt 1: (-0.1 - 0.1) / 2
    assert cm.gap_units(rows, "a", "nothing") is None


def test_difference_and_shift_units():
    rows = {"x": run(1.0, [[1.0, 0.0], [0.5, 0.5]], shift=0.3, shift_ci=[0.3 - cm.Z95 * 0.1, 0.3 + cm.Z95 * 0.1]),
            "y": run(1.0, [[0.0, 0.0], [1.0, 1.0]])}
    assert cm.difference_units(rows, "x", "y").values == (0.5, -0.5)
    assert cm.difference_units(rows, "x", "z") is None
    shift = cm.shift_units(rows, "x")
    assert shift.mean == 0.3 and shift.se == pytest.approx(0.1)
    assert cm.shift_units(rows, "y") is None


def test_measure_gives_per_task_and_pooled_verdicts():
    def world(gap):
        # spo's runs beat dpo's by `gap` on both prompts at the same KLs; the others are not run
        return {"dpo@0.1": run(1.0, [[0.4], [0.5]], shift=-0.2, shift_ci=[-0.3, -0.1]),
                "spo@1": run(1.0, [[0.4 + gap], [0.5 + gap]])}

    by_task = {"t1": {0: world(0.1), 1: world(0.2)}, "t2": {0: world(-0.1)}}
    cs = cm.measure(by_task, lambda m: {"dpo": "dpo@0.1"}.get(m, m), "30%", n_boot=500)
    by_name = {c.measure.split(" at ")[0]: c for c in cs}
    spo = by_name["gold reward gap SPO − DPO"]
    assert spo.estimate("t1").mean == pytest.approx(0.15) and spo.verdict("t1") == "yes"
    assert spo.estimate("t2").mean == pytest.approx(-0.1) and spo.verdict("t2") == "no"
    assert spo.estimate().mean == pytest.approx((0.15 - 0.1) / 2) and spo.verdict() == "inconclusive"
    dpo_shift = next(c for c in cs if c.claim == "... while DPO lowers it")
    assert dpo_shift.verdict("t1") == "yes"
    every = cs[-1]  # composite: spo fails on t2, the other gaps are not measured
    assert every.verdict("t2") == "no" and every.verdict("t1") == "inconclusive"
    assert every.estimate("t2").mean == pytest.approx(-0.1)
    table = cm.pooled_table(cs, ["t1", "t2"]).splitlines()
    assert table[0].endswith("| holds, t1 | holds, t2 |") and len(table) == 2 + len(cs)


def test_tuning_grid_gives_every_row_the_same_budget():
    jobs = claims.tune_jobs(1000)
    per_row = {}
    for row, lr, beta, job in jobs:
        per_row.setdefault(row, set()).add((lr, beta))
        assert job.spec.learning_rate == lr and job.spec.objective_args["beta"] == beta
    assert set(per_row) == {*ROWS, *claims.DRO_OFFSETS}
    assert all(j.spec.objective_args["prompt_normalization"] for r, *_, j in jobs if r in claims.DRO_OFFSETS)
    assert {len(v) for v in per_row.values()} == {len(claims.TUNE_LRS) * len(claims.BETA_MULTIPLIERS)}
    dpo_betas = sorted({b for _, b in per_row["dpo"]})
    assert dpo_betas == [0.0333, 0.1, 0.3]
    noisy = {job.name: job for row, *_, job in jobs if row == "drdo_noisy"}
    assert all(j.data == claims.NOISY_DATA and j.spec.objective_args["order_by"] == "position" for j in noisy.values())


def test_claims_jobs_use_the_tuned_settings():
    tuned = {r: {"learning_rate": 1e-4, "beta": 0.3} for r in ROWS}
    tuned["spo"] = {"learning_rate": 3e-5, "beta": 3.0}
    jobs = {job.name: job for job in claims.seed_jobs(0, tuned)}
    assert {"spo@1", "spo@3", "spo@9"} <= set(jobs) and jobs["spo@9"].spec.learning_rate == 3e-5
    for method in claims.SWEEP:
        assert len([n for n in jobs if n.startswith(method + "@")]) == 3
    assert jobs["drdo_noisy"].data == claims.NOISY_DATA and jobs["una_binary_bce"].data is None
    with pytest.raises(SystemExit, match="--tune"):
        claims.seed_jobs(0, {})


def test_claims_take_tasks_and_seed_lists():
    assert claims.seed_list("3", 0) == [0, 1, 2] and claims.seed_list("3", 1000) == [1000, 1001, 1002]
    assert claims.seed_list("0,4", 0) == [0, 4] and claims.seed_list("7,", 0) == [7]
    with pytest.raises(Exception, match="one seed: '1000,'"):
        claims.seed_list("1000", 0)
    with pytest.raises(SystemExit) as stop:  # on the command line: argparse's one line, not a traceback
        claims.main(["--stages", "--seeds", "1000"])
    assert stop.value.code == 2
    assert claims.task_folder(REVERSE) == "examples_tasks_reverse.py_ReverseTask"
    cfg = claims.seed_config(2, Path("w"), True, REVERSE)
    assert cfg.task == REVERSE and cfg.output == str(Path("w") / "examples_tasks_reverse.py_ReverseTask" / "seed2")


def test_claims_stages_table():
    stats = {"data": {"demonstration_gold_mean": 0.6, "random_gold_mean": 0.1},
             "sft": {"heldout_gold": 0.48, "steps": 900, "best_step": 600},
             "reward_model": {"heldout_accuracy": 0.7, "steps": 120}, "annotation": {"heldout_rm_gold_agreement": 0.8}}
    lines = claims.stages_table({("sort", 1): stats, ("arithmetic", 0): stats}).splitlines()
    assert lines[2] == "| arithmetic | 0 | 0.480 | 0.600 | 0.100 | 0.80 | 900 (600) | 0.700 | 0.800 | 120 |"
    assert lines[3].startswith("| sort | 1 |") and len(lines) == 4


def test_prompt_rewards_reads_samples(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text('{"prompt_index": 1, "sample_index": 0, "reward": 0.5}\n'
                    '{"prompt_index": 0, "sample_index": 1, "reward": 1.0}\n')
    rewards = claims.prompt_rewards(path)
    assert rewards[0][1] == 1.0 and rewards[1][0] == 0.5 and math.isnan(rewards[0][0])
    assert set(METHODS) >= set(claims.TUNED)


def test_demo_seeds_table_is_mean_and_std_over_seeds():
    import demo_seeds

    def result(gold, win, sft_gold):
        return {"stats": {"sft": {"heldout_gold": sft_gold}, "data": {"demonstration_gold_mean": 0.6,
                                                                      "random_gold_mean": 0.2},
                          "annotation": {"heldout_rm_gold_agreement": 0.7}},
                "rows": [{"name": "sft", "eval": {"reward_mean": 0.5, "kl": 0.0}},
                         {"name": "dpo", "eval": {"reward_mean": gold, "win_rate": win, "kl": 1.0,
                                                  "eos_missing_fraction": 0.0, "chosen_logp_shift": 0.1}}]}

    lines = demo_seeds.table([result(0.5, 0.6, 0.4), result(0.7, 0.8, 0.6)]).splitlines()
    # gold 0.5 and 0.7: mean 0.6, sample std 0.1414
    assert lines[3] == "| dpo | 0.600 ± 0.141 | 0.700 ± 0.141 | 1.00 ± 0.00 | 0.00 ± 0.00 | 0.10 ± 0.00 |"
    assert lines[2].startswith("| sft | 0.500 ± 0.000 | – |")
    assert "SFT gold 0.500 ± 0.141" in demo_seeds.stages_line([result(0.5, 0.6, 0.4), result(0.7, 0.8, 0.6)])

    # the SFT policy sampled at a lower temperature comes right after SFT's row
    sharpened = [result(0.5, 0.6, 0.4) | {"sharpened_sft": {"name": "sft (T = 0.5)", "eval": {"reward_mean": r}}}
                 for r in (0.6, 0.8)]
    lines = demo_seeds.table(sharpened).splitlines()
    assert lines[3].startswith("| sft (T = 0.5) | 0.700 ± 0.141 | – |") and lines[4].startswith("| dpo |")


def test_demo_seeds_section_keeps_failed_seeds_out_unless_forced():
    import demo_seeds

    def result(gold, stopped=(), rows=True):
        return {"failed_gates": list(stopped),
                "stats": {"sft": {"heldout_gold": 0.5}, "data": {"demonstration_gold_mean": 0.6, "random_gold_mean": 0.2},
                          "annotation": {"heldout_rm_gold_agreement": 0.7}},
                "rows": [{"name": "sft", "eval": {"reward_mean": 0.5}}, {"name": "dpo", "eval": {"reward_mean": gold}}]
                if rows else []}

    # without --force a seed that failed its gates stopped (no rows): named, and out of the table
    md = demo_seeds.task_section("t", {0: result(0.4), 1: result(0.0, ["the reward model did not learn"], rows=False)},
                                 forced=False)
    assert md[0] == "## `t`: 1 of 2 seeds passed the quality gates"
    assert "- stopped, seed 1: the reward model did not learn" in md
    assert any(line.startswith("| dpo | 0.400 |") for line in "\n".join(md).splitlines())
    # with --force it ran on: still counted as failed, and its figures join the table
    md = demo_seeds.task_section("t", {0: result(0.4), 1: result(0.6, ["the reward model did not learn"])}, forced=True)
    assert md[0] == "## `t`: 1 of 2 seeds passed the quality gates"
    assert "- failed, run on with --force, seed 1: the reward model did not learn" in md
    assert any(line.startswith("| dpo | 0.500 ± 0.141 |") for line in "\n".join(md).splitlines())


def test_claims_refuse_settings_tuned_on_another_reward_model(tmp_path):
    """Settings tuned on score-head worlds do not measure likelihood worlds, nor the other way (a tune.json from
    before --rm-kind is the score head's)."""
    import json

    settings = tmp_path / "tune.json"
    settings.write_text(json.dumps({"best": {}, "seeds": [1000]}))
    args = ["--tasks", "arithmetic", "--seeds", "0,", "--work", str(tmp_path), "--settings", str(settings)]
    with pytest.raises(SystemExit, match="tuned with --rm-kind bt, not likelihood"):
        claims.main(args + ["--rm-kind", "likelihood"])
    settings.write_text(json.dumps({"best": {}, "seeds": [1000], "rm_kind": "likelihood"}))
    with pytest.raises(SystemExit, match="tuned with --rm-kind likelihood, not bt"):
        claims.main(args)


def test_tune_picks_the_best_cell_averaged_over_tasks(monkeypatch, tmp_path):
    def fake_worlds(pool, tasks, seeds, *args):
        return {(t, s): (None, None, None, None) for t in tasks for s in seeds}, {}

    def fake_run(cfg, world, baseline, job):
        lr, beta = job.spec.learning_rate, job.spec.objective_args["beta"]
        # gold peaks at lr 1e-4; beta matters only for DPO (smaller is better), the tasks differ by a constant
        gold = 0.5 - abs(math.log10(lr) + 4) / 10 - (beta if job.spec.objective == "dpo" else 0.0)
        gold += 0.1 if job.seed == 1001 else 0.0
        return {"eval": {"reward_mean": gold, "kl": 1.0, "eos_missing_fraction": 0.0}}

    monkeypatch.setattr(claims, "prepare_worlds", fake_worlds)
    monkeypatch.setattr(claims, "_run_job", fake_run)
    result = claims.tune(["a", "b"], [1000, 1001], tmp_path, True, workers=1, log=lambda _m: None)
    assert result["best"]["dpo"]["learning_rate"] == 1e-4 and result["best"]["dpo"]["beta"] == 0.0333
    assert result["best"]["dpo"]["reward_mean"] == pytest.approx(0.5 - 0.0333 + 0.05)
    assert len(result["grid"]["spo"]) == len(claims.TUNE_LRS) * len(claims.BETA_MULTIPLIERS)
    assert "| dpo | 0.0001 | 0.0333 |" in result["table"]


def test_a_mistyped_task_is_one_line_before_any_worker():
    with pytest.raises(SystemExit, match="--tasks: .*unknown gym task 'nope'"):
        claims.check_tasks(["sort", "nope"])
    claims.check_tasks(["sort", REVERSE])
    assert claims.mean_std([0.5, None, 0.7]) == "0.600 ± 0.141" and claims.mean_std([]) == "–"


def test_pair_agreement_by_hand():
    from rewardalign.evaluate.metrics import pair_agreement

    # pairs (0,1): gold 0.1 < 0.5 and scores 1 < 2, the same way; (0,2): gold 0.1 < 0.5 but scores 1 > 0;
    # (1,2): a gold tie, not counted. Second group: a tie in the scores is not an agreement.
    assert pair_agreement([[0.1, 0.5, 0.5]], [[1.0, 2.0, 0.0]]) == 0.5
    assert pair_agreement([[0.1, 0.5, 0.5], [0.0, 1.0]], [[1.0, 2.0, 0.0], [3.0, 3.0]]) == 1 / 3
    assert math.isnan(pair_agreement([[0.2, 0.2]], [[0.0, 1.0]]))


def test_rm_headroom_reads_a_world(tmp_path, tiny_model_dir):
    import json

    import rm_headroom

    (tmp_path / "data").mkdir()
    (tmp_path / "sft").symlink_to(tiny_model_dir)
    rows = [{"prompt": "add 1 and 2 =", "responses": [" 3", " 12 34", " 5"], "rewards": [2.0, 1.0, 0.0],
             "meta": {"gold_rewards": [1.0, 0.0, 0.5]}}]
    (tmp_path / "data" / "heldout_rm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = rm_headroom.orderings(tmp_path, max_length=64)
    assert out["reward model"] == pytest.approx(2 / 3)  # (0,1) and (0,2) agree, (1,2) does not
    assert all(0.0 <= out[k] <= 1.0 for k in rm_headroom.ORDERINGS)


def test_by_temperature_reads_the_aligned_policies_of_a_demo(tmp_path):
    import json

    import by_temperature

    with pytest.raises(SystemExit, match="demo_seeds.py"):  # the demo has not run there
        by_temperature.demo_policies(tmp_path)
    rows = [{"name": "sft"}, {"name": "dro"}, {"name": "dpo"}]
    (tmp_path / "demo.json").write_text(json.dumps({"rows": rows}))
    assert by_temperature.demo_policies(tmp_path) == ["dro", "dpo"]  # SFT is the baseline, not a policy to align


def test_tune_budget_picks_the_rate_of_the_best_mean_gold():
    import tune_budget

    def ev(gold, kl=0.5, eos=0.0):
        return {"reward_mean": gold, "kl": kl, "eos_missing_fraction": eos}

    # dpo: 1e-4 is best on task a (0.8) but poor on b (0.4): mean 0.6 < 3e-5's (0.7 + 0.6) / 2 = 0.65
    done = {("a", 0, "dpo", 3e-5, 1.0): ev(0.7), ("b", 0, "dpo", 3e-5, 1.0): ev(0.6),
            ("a", 0, "dpo", 1e-4, 1.0): ev(0.8), ("b", 0, "dpo", 1e-4, 1.0): ev(0.4, kl=3.0, eos=0.25)}
    best, rows = tune_budget.best_rates(done, ["a", "b"], [0], ["dpo"], [3e-5, 1e-4])
    assert best == {"dpo": (3e-5, 1.0)}
    assert rows == ["| dpo | 3e-05 | 0.700, 0.50, 0.00 | 0.600, 0.50, 0.00 | 0.650 | 0.00 |",
                    "| dpo | 0.0001 | 0.800, 0.50, 0.00 | 0.400, 3.00, 0.25 | 0.600 | 0.25 |"]
    # a joint grid: dpo's tuned beta is 0.3, so a factor 3 is beta 0.9, and 1e-4 there beats every cell above
    done |= {("a", 0, "dpo", 3e-5, 3.0): ev(0.5), ("b", 0, "dpo", 3e-5, 3.0): ev(0.5),
             ("a", 0, "dpo", 1e-4, 3.0): ev(0.7), ("b", 0, "dpo", 1e-4, 3.0): ev(0.7)}
    best, rows = tune_budget.best_rates(done, ["a", "b"], [0], ["dpo"], [3e-5, 1e-4], (1.0, 3.0))
    assert best == {"dpo": (1e-4, 3.0)}
    assert rows[2:] == ["| dpo beta 0.9 | 3e-05 | 0.500, 0.50, 0.00 | 0.500, 0.50, 0.00 | 0.500 | 0.00 |",
                        "| dpo beta 0.9 | 0.0001 | 0.700, 0.50, 0.00 | 0.700, 0.50, 0.00 | 0.700 | 0.00 |"]


def test_pool_workers_exit_when_the_benchmark_is_killed(tmp_path):
    """A benchmark killed mid-run (SIGKILL) leaves no worker running on through its queue."""
    import signal
    import subprocess
    import time

    script = tmp_path / "run.py"
    script.write_text(f"""import os, sys, time
sys.path.insert(0, {str(BENCH)!r})
import claims
if __name__ == "__main__":
    pool = claims._pool(2)
    jobs = [pool.submit(time.sleep, 600) for _ in range(4)]
    while len(pool._processes) < 2:
        time.sleep(0.1)
    print(" ".join(map(str, pool._processes)), flush=True)
    time.sleep(600)
""")
    run = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    workers = [int(p) for p in run.stdout.readline().split()]
    assert len(workers) == 2
    run.send_signal(signal.SIGKILL)
    run.wait()

    def running(pid: int) -> bool:
        try:
            return "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 60  # a worker still importing exits once its initializer runs
    while any(map(running, workers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(running, workers))


def test_claims_by_temperature_replaces_only_the_gold_rewards():
    import claims_by_temperature

    row = {"eval": {"reward_mean": 0.5, "reward_ci": [0.4, 0.6], "kl": 1.5, "chosen_logp_shift": 0.2},
           "prompt_rewards": [[0.5, 0.5]]}
    by_task = {"sort": {0: {"dro@0.3": row}}}
    out = claims_by_temperature.at_temperature(by_task, {("sort", 0): {"dro@0.3": {
        "reward_mean": 0.9, "prompt_rewards": [[1.0, 0.8]]}}})
    new = out["sort"][0]["dro@0.3"]
    assert new["eval"] == {"reward_mean": 0.9, "reward_ci": None, "kl": 1.5, "chosen_logp_shift": 0.2}
    assert new["prompt_rewards"] == [[1.0, 0.8]]
    assert row["eval"]["reward_mean"] == 0.5 and row["prompt_rewards"] == [[0.5, 0.5]]  # the input is left as it was


def test_demo_pairs_pairs_the_same_worlds_and_leaves_out_the_others():
    """benchmarks/demo_pairs.py: per seed the difference of the two runs' gold rewards; a seed whose SFT differs
    (another world) or that ranked nothing is named and left out."""
    import demo_pairs

    def result(sft: float, dro: float | None) -> dict:
        rows = [{"name": "sft", "eval": {"reward_mean": sft}}]
        return {"rows": rows + ([{"name": "dro", "eval": {"reward_mean": dro}}] if dro is not None else [])}

    first = {"t seed 0": result(0.5, 0.8), "t seed 1": result(0.6, 0.7), "t seed 2": result(0.5, 0.9),
             "t seed 3": result(0.5, 0.9)}
    second = {"t seed 0": result(0.5, 0.6), "t seed 1": result(0.6, 0.8), "t seed 2": result(0.4, 0.1),
              "t seed 3": {"rows": []}}
    paired, left_out = demo_pairs.pair_results(first, second)
    assert list(paired) == ["t"] and len(paired["t"]) == 2
    assert [line.split(":")[0] for line in left_out] == ["t seed 2", "t seed 3"]
    assert "not the same world" in left_out[0] and "ranked nothing in the second run" in left_out[1]
    table = demo_pairs.task_table(paired["t"], ("a", "b"))
    # differences +0.2 and -0.1: mean 0.05, sample std sqrt(0.045) = 0.212; a higher on one seed of two
    assert table[0] == "SFT 0.550 ± 0.071 in both."
    assert table[-1] == "| dro | 0.750 ± 0.071 | 0.700 ± 0.141 | 0.050 ± 0.212 | 1 of 2 |"


def test_tune_budget_takes_the_betas_of_a_tuning_of_the_same_reward_model(tmp_path):
    """--settings: each method's beta from a claims tune.json (the others keep METHODS'), refused when it was tuned
    on the other reward model or is not a tune.json."""
    import json

    import tune_budget

    settings = tmp_path / "tune.json"
    settings.write_text(json.dumps({"best": {"dpo": {"learning_rate": 3e-5, "beta": 0.9}}, "rm_kind": "likelihood"}))
    specs = tune_budget.tuned_specs(settings, "likelihood")
    assert specs["dpo"].objective_args["beta"] == 0.9 and specs["dpo"].learning_rate == METHODS["dpo"].learning_rate
    assert specs["dro"] == METHODS["dro"] and tune_budget.tuned_specs(None, "bt") is METHODS
    assert tune_budget.beta(specs["dpo"], 1 / 3) == 0.3
    with pytest.raises(SystemExit, match="tuned with --rm-kind likelihood, not bt"):
        tune_budget.tuned_specs(settings, "bt")
    settings.write_text("{}")
    with pytest.raises(SystemExit, match="not a tune.json"):
        tune_budget.tuned_specs(settings, "likelihood")
