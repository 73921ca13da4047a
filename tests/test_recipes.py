"""examples/recipes: every recipe runs a few steps through the run_* function its command calls, with the real
model swapped for a tiny one and each public data set for a small fixture of its shape (tests/fixtures/recipes),
in pipeline order (a recipe that reads runs/... runs after the recipe that writes it). An unknown field in a recipe
fails its run. The accelerate configs load with accelerate's own reader, every nested key a launch option."""

import re
from pathlib import Path

import pytest
import torch
import yaml

from rewardalign.modeling.tiny import save_tiny
from rewardalign.rewards.annotate import run_annotate
from rewardalign.train.align import run_align
from rewardalign.train.online import run_online
from rewardalign.train.reward_model import run_train_rm
from rewardalign.train.sft import run_sft

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "examples" / "recipes"
FIXTURES = ROOT / "tests" / "fixtures" / "recipes"
DATA = {
    "HuggingFaceH4/ultrafeedback_binarized": FIXTURES / "ultrafeedback_binarized.jsonl",
    "openbmb/UltraFeedback": FIXTURES / "ultrafeedback.jsonl",
    "nvidia/HelpSteer2": FIXTURES / "helpsteer2.jsonl",
}
BASE_MODELS = ("Qwen/Qwen2.5-0.5B-Instruct",)
RUNS = {"sft": run_sft, "train-rm": run_train_rm, "annotate": run_annotate, "align": run_align, "online": run_online}
TRAINING = {"max_steps": 2, "per_device_train_batch_size": 2, "per_device_eval_batch_size": 4,
            "gradient_accumulation_steps": 1, "bf16": False, "save_strategy": "no", "logging_steps": 1,
            "disable_tqdm": True}
SHORTER = {"max_length": 64, "max_prompt_length": 32, "max_new_tokens": 4, "max_prompts": 8, "sampler": "hf",
           "eval_fraction": 0.25}  # where a recipe sets them; eval_fraction: of 24 fixture groups, not of 60k


def command_of(path: Path) -> str:
    """The command named on the recipe's first line: ``# rewardalign <command> --config <this file>``."""
    first = path.read_text().splitlines()[0]
    match = re.match(r"# rewardalign (\S+) --config (\S+)", first)
    assert match, f"{path.name}: the first line must be '# rewardalign <command> --config {path.relative_to(ROOT)}'"
    assert match.group(2) == str(path.relative_to(ROOT)), f"{path.name}: the first line names {match.group(2)}"
    assert match.group(1) in RUNS, f"{path.name}: unknown command {match.group(1)}"
    return match.group(1)


def local_paths(value) -> set[str]:
    """The runs/... paths a recipe's values name (rm:runs/... included)."""
    if isinstance(value, dict):
        return set().union(*map(local_paths, value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*map(local_paths, value)) if value else set()
    if isinstance(value, str) and value.removeprefix("rm:").startswith("runs/"):
        return {value.removeprefix("rm:")}
    return set()


def swap(value, runs: Path, tiny: Path):
    """The recipe with public data sets as fixtures, the base model as the tiny one, runs/ under ``runs``."""
    if isinstance(value, dict):
        return {k: swap(v, runs, tiny) for k, v in value.items()}
    if isinstance(value, list):
        return [swap(v, runs, tiny) for v in value]
    if isinstance(value, str):
        if value in DATA:
            return str(DATA[value])
        if value in BASE_MODELS:
            return str(tiny)
        prefix = "rm:" if value.startswith("rm:") else ""
        if value.removeprefix(prefix).startswith("runs/"):
            return prefix + str(runs / value.removeprefix(prefix)[len("runs/"):])
    return value


def fast(command: str, recipe: dict) -> dict:
    if command == "annotate":
        return recipe | {"progress": False, "source": recipe["source"] | {"max_length": 64, "batch_size": 4}}
    extra = {k: v for k, v in SHORTER.items() if k in recipe}
    if recipe.get("eval_strategy") == "steps":
        extra["eval_steps"] = 1
    return recipe | TRAINING | extra


def pipeline_order(recipes: dict[str, dict]) -> list[str]:
    """Recipe names so that each runs after the recipes whose output it reads."""
    outputs = {name: r.get("output_dir") or r.get("output") for name, r in recipes.items()}
    order: list[str] = []

    def written(path: str) -> bool:
        return any(path == outputs[m] or path.startswith(f"{outputs[m]}/") for m in order)

    while len(order) < len(recipes):
        ready = [n for n in sorted(recipes) if n not in order
                 and all(map(written, local_paths(recipes[n]) - {outputs[n]}))]
        assert ready, f"no recipe writes what these read: {sorted(set(recipes) - set(order))}"
        order.append(ready[0])
    return order


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_recipe_runs_on_tiny_substitutes(tmp_path):
    files = sorted(RECIPES.glob("*.yaml"))
    recipes = {p.stem: yaml.safe_load(p.read_text()) for p in files}
    commands = {p.stem: command_of(p) for p in files}
    assert {"sft", "train-rm", "annotate", "align", "online"} <= set(commands.values())
    objectives = {r.get("objective") for n, r in recipes.items() if commands[n] == "align"}
    assert {"dpo", "dro", "drdo", "una_score_mse", "spo"} <= objectives
    texts = [line for fixture in DATA.values() for line in fixture.read_text().splitlines()]
    tiny = save_tiny(texts, tmp_path / "tiny", vocab_size=400, hidden_size=32, num_layers=1, num_heads=2)
    runs = tmp_path / "runs"
    for name in pipeline_order(recipes):
        command = commands[name]
        summary = RUNS[command](fast(command, swap(recipes[name], runs, tiny)))
        out = Path(swap(recipes[name].get("output_dir") or recipes[name]["output"], runs, tiny))
        assert out.exists(), f"{name}: no output at {out}"
        if command != "annotate":
            steps = summary.get("steps") or summary["members"][0]["steps"]
            assert steps == 2, f"{name}: {steps} steps"
            assert (out / "README.md").is_file(), f"{name}: no model card"


@pytest.mark.parametrize("name", ["ddp", "fsdp", "deepspeed_zero3"])
def test_accelerate_configs_are_what_accelerate_reads(name):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    path = RECIPES / "accelerate" / f"{name}.yaml"
    config = load_config_from_file(str(path))  # an unknown top-level key is an error here
    options = {s.lstrip("-").replace("-", "_") for a in launch_command_parser()._actions for s in a.option_strings}
    nested = {**config.fsdp_config, **config.deepspeed_config}
    assert set(nested) <= options, f"{name}: not accelerate launch options: {sorted(set(nested) - options)}"
    expected = {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed_zero3": "DEEPSPEED"}[name]
    assert config.distributed_type.value == expected
    if name == "fsdp":
        assert config.fsdp_config["fsdp_version"] == 2
    if name == "deepspeed_zero3":
        assert config.deepspeed_config["zero_stage"] == 3
