"""``rewardalign compare``: run folders written by hand become a Markdown table, JSON and PNG plots."""

import json
import sys

import pytest
import yaml

from rewardalign import cli
from rewardalign.config import ConfigError
from rewardalign.evaluate import plots
from rewardalign.evaluate.report import compare_runs, load_run, markdown_table, table_row, unique_names

PNG = b"\x89PNG\r\n\x1a\n"


def make_run(root, name, objective, beta, kl, reward, chosen, rejected, steps=4, with_eval=True):
    run = root / name
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"objective": objective, "steps": steps, "train_loss": 0.6,
                                                  "final_eval": {"eval_ranking_accuracy": 0.75}}))
    (run / "config.yaml").write_text(yaml.safe_dump({"objective": objective, "objective_args": {"beta": beta}}))
    rows = [{"step": s, "loss": 0.7 - 0.05 * s, "logps/chosen": -20.0 - s, "rewards/chosen": 0.1 * s}
            for s in range(1, steps + 1)]
    rows.append({"step": steps, "eval_loss": 0.5, "eval_ranking_accuracy": 0.75})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if with_eval:
        (run / "eval.json").write_text(json.dumps({
            "judge": "gold:arithmetic", "reward_mean": reward, "reward_ci": [reward - 0.05, reward + 0.05],
            "kl": kl, "kl_ci": [kl - 0.1, kl + 0.1], "win_rate": 0.6, "win_rate_ci": [0.5, 0.7],
            "chosen_logp_shift": chosen, "rejected_logp_shift": rejected, "length": {"tokens_mean": 5.5},
            "eos_missing_fraction": 0.25,
        }))
    return run


@pytest.fixture()
def runs(tmp_path):
    return [
        make_run(tmp_path / "runs", "dpo_b0.1", "dpo", 0.1, kl=2.0, reward=0.7, chosen=-3.0, rejected=-9.0),
        make_run(tmp_path / "runs", "dpo_b0.5", "dpo", 0.5, kl=0.5, reward=0.55, chosen=-1.0, rejected=-4.0),
        make_run(tmp_path / "runs", "dro_b0.1", "dro", 0.1, kl=1.0, reward=0.72, chosen=0.5, rejected=-2.0),
    ]


def test_load_run_reads_every_file(runs):
    run = load_run(runs[0])
    assert run.objective == "dpo" and run.beta == 0.1 and run.eval["kl"] == 2.0
    assert run.curves["loss"][0] == (1.0, pytest.approx(0.65)) and len(run.curves["logps/chosen"]) == 4
    assert run.curves["eval_ranking_accuracy"] == [(4.0, 0.75)]
    row = table_row(run)
    assert row["train_loss"] == 0.6 and row["eval_ranking_accuracy"] == 0.75 and row["tokens_mean"] == 5.5
    assert row["eos_missing_fraction"] == 0.25
    lines = markdown_table([row]).splitlines()
    assert lines[0].endswith("| tokens | no EOS |") and lines[2].endswith("| 5.5 | 0.25 |")


def test_markdown_table_leaves_out_empty_columns():
    table = markdown_table([{"run": "a", "kl": 1.5, "kl_ci": [1.0, 2.0]}, {"run": "b|c", "reward_mean": None}])
    lines = table.splitlines()
    assert lines[0] == "| run | KL |" and lines[2] == "| a | 1.5 [1, 2] |" and lines[3] == "| b\\|c | – |"


def test_compare_writes_table_json_and_pngs(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert cli.main(["compare", *map(str, runs), "--output", str(out)]) == 0
    md = (out / "compare.md").read_text()
    assert "| run | objective | β |" in md and "dro_b0.1" in md and "0.7 [0.65, 0.75]" in md
    report = json.loads((out / "compare.json").read_text())
    assert [r["name"] for r in report["runs"]] == ["dpo_b0.1", "dpo_b0.5", "dro_b0.1"]
    assert report["runs"][2]["objective"] == "dro" and report["runs"][0]["eval"]["win_rate"] == 0.6
    assert report["runs"][0]["curves"]["loss"][-1] == [4, pytest.approx(0.5)]
    for name in ("training_curves", "reward_kl_frontier", "likelihood_drift"):
        png = out / f"{name}.png"
        assert report["plots"][name] == png.name and f"]({png.name})" in md
        assert png.stat().st_size > 1000 and png.read_bytes()[:8] == PNG
    assert "dro_b0.1" in capsys.readouterr().out


def test_frontier_points_are_sorted_by_kl_per_objective(runs, tmp_path, monkeypatch):
    seen = {}

    def fake(points, path, label):
        seen["points"], seen["label"] = points, label
        return None

    monkeypatch.setattr(plots, "reward_kl_frontier", fake)
    report = compare_runs(runs, tmp_path / "r")
    assert seen["label"] == "reward (gold:arithmetic)"
    assert {p["objective"] for p in seen["points"]} == {"dpo", "dro"}
    assert any("no reward kl frontier plot" in n for n in report["notes"])
    curves = plots.frontier_curves(seen["points"])
    assert list(curves) == ["dpo", "dro"]
    assert [(p["kl"], p["beta"]) for p in curves["dpo"]] == [(0.5, 0.5), (2.0, 0.1)]


def test_compare_without_matplotlib_still_writes_table_and_json(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert not plots.have_matplotlib()
    out = tmp_path / "report"
    assert cli.main(["compare", *map(str, runs), "--output", str(out)]) == 0
    assert (out / "compare.md").is_file() and (out / "compare.json").is_file()
    assert not list(out.glob("*.png"))
    assert "rewardalign[plots]" in (out / "compare.md").read_text()
    assert "matplotlib is not installed" in capsys.readouterr().out


def test_runs_without_eval_or_with_the_same_name(tmp_path):
    a = make_run(tmp_path / "x", "run", "dpo", 0.1, 1, 1, 1, 1, with_eval=False)
    b = make_run(tmp_path / "y", "run", "dpo", 0.2, 1, 1, 1, 1, with_eval=False)
    assert unique_names([a, b]) == ["x/run", "y/run"]
    report = compare_runs([a, b], tmp_path / "out")
    assert set(report["plots"]) == {"training_curves"}
    assert any("evaluate with pairs" in n for n in report["notes"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a run folder"):
        load_run(tmp_path / "empty")
    with pytest.raises(ConfigError, match="does not exist"):
        load_run(tmp_path / "nowhere")
