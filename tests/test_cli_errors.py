"""Every mistake through every command that can receive it: exit code 2, one line naming the file, row or field,
no traceback, and nothing loaded (model loading is replaced by a sentinel that fails the test if reached).

The commands run in-process (``rewardalign.cli.main``) in a workspace holding the tiny example (``examples/tiny``)
and a tiny model at ``runs/tiny-sft``, as the README lays them out.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import transformers
from transformers.integrations.integration_utils import (
    INTEGRATION_TO_CALLBACK,
    get_available_reporting_integrations,
)

from rewardalign import cli
from rewardalign.config import ConfigError, check_model_path, could_be_hub_id
from rewardalign.modeling.tiny import save_tiny

ROOT = Path(__file__).resolve().parents[1]
SCORES_1_10 = ('{"prompt": "add 1 and 2 =", "chosen": " 3", "rejected": " 4", "chosen_score": 9, "rejected_score": 2}\n'
               '{"prompt": "add 2 and 2 =", "chosen": " 4", "rejected": " 5", "chosen_score": 8, "rejected_score": 3}\n')


class ModelLoaded(Exception):
    """Raised where a model or tokenizer would load: every check must have passed before."""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("workspace")
    shutil.copytree(ROOT / "examples", root / "examples")
    texts = [line for line in (ROOT / "examples/tiny/data/sft.jsonl").read_text().splitlines()][:50]
    save_tiny(texts, root / "runs" / "tiny-sft", vocab_size=128, hidden_size=16, num_layers=1, num_heads=2)
    (root / "bad").mkdir()
    (root / "bad" / "broken.yaml").write_text("model: runs/tiny-sft\nobjective: dpo: ipo\n")
    (root / "bad" / "scores_1_10.jsonl").write_text(SCORES_1_10)
    return root


@pytest.fixture()
def run(workspace, monkeypatch, capsys):
    """``run(argv) -> (exit code, stderr)`` in the workspace, with model loading replaced by :class:`ModelLoaded`."""
    monkeypatch.chdir(workspace)

    def loaded(*args, **kwargs):
        raise ModelLoaded()

    real_tokenizer = transformers.AutoTokenizer.from_pretrained
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", loaded)

    def call(argv, tokenizer=False):
        """``tokenizer``: the tokenizer may load (align reads and tokenises its data in one pass, so what the
        data hold is known only after the tokenizer, still before any model)."""
        monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", real_tokenizer if tokenizer else loaded)
        capsys.readouterr()
        code = cli.main(argv)
        return code, capsys.readouterr().err

    return call


BASE = {
    "align": ["align", "--config", "examples/tiny/align.yaml"],
    "sft": ["sft", "--model", "runs/tiny-sft", "--data", "examples/tiny/data/sft.jsonl", "--output_dir", "runs/s"],
    "train-rm": ["train-rm", "--config", "examples/tiny/rm.yaml"],
    "annotate": ["annotate", "--config", "examples/tiny/annotate.yaml"],
    "evaluate": ["evaluate", "--model", "runs/tiny-sft", "--prompts", "examples/tiny/data/groups.jsonl",
                 "--judge", "gym:arithmetic", "--output_dir", "runs/e"],
    "online": ["online", "--config", "examples/tiny/online.yaml"],
    "demo": ["demo", "--quick", "--output", "runs/demo"],
    "data inspect": ["data", "inspect", "examples/tiny/data/groups.jsonl"],
}
TRAINING = ("align", "sft", "train-rm", "online")
MISSING_DATA = "examples/tiny/data/nope.jsonl"
NOT_INSTALLED = next((n for n in INTEGRATION_TO_CALLBACK if n not in get_available_reporting_integrations()
                      and n not in ("azure_ml", "flyte")), None)


def model_slots(path):
    """Every way a command takes a model (or a tokenizer / reward model) path."""
    out = [(c, ["--model", path]) for c in TRAINING] + [("evaluate", [f"--{slot}", path])
                                                        for slot in ("model", "reference", "baseline")]
    return out + [("annotate", ["--source", f"rm:{path}"]), ("data inspect", ["--tokenizer", path])]


CASES = (
    [(c, "missing config", ["--config", "nope.yaml"], ["config file nope.yaml does not exist"])
     for c in BASE if c != "data inspect"]
    + [(c, "broken YAML", ["--config", "bad/broken.yaml"], ["bad/broken.yaml, line 2, column 15: not valid YAML (mapping values are not allowed here)"])
       for c in BASE if c != "data inspect"]
    + [(c, "unknown field", ["--bogus_field", "1"], ["field(s) ['bogus_field']"]) for c in BASE]
    + [(c, "batch size 0", ["--per_device_train_batch_size", "0"], ["per_device_train_batch_size must be >= 1, got 0"])
       for c in TRAINING]
    + [(c, "negative learning rate", ["--learning_rate", "-1"], ["learning_rate must be >= 0, got -1"])
       for c in TRAINING]
    + [(c, "not a number", ["--max_steps", "two"], ["max_steps must be an integer, got 'two'"]) for c in TRAINING]
    + [("evaluate", "not a number", ["--max_new_tokens", "many"], ["max_new_tokens must be an integer"]),
       ("demo", "not a number", ["--align_steps", "many"], ["align_steps must be an integer"]),
       ("annotate", "bad value", ["--on_error", "maybe"], ["on_error must be 'raise' or 'drop', got 'maybe'"]),
       ("data inspect", "bad value", ["--on_error", "maybe"], ["on_error must be 'raise' or 'drop', got 'maybe'"]),
       ("evaluate", "bad value", ["--n_samples", "0"], ["n_samples must be >= 1"]),
       ("align", "unknown objective", ["--objective", "dpoo"], ["unknown objective 'dpoo'"]),
       ("online", "unknown objective", ["--objective", "dpoo"], ["unknown objective 'dpoo'"]),
       ("demo", "unknown objective", ["--methods", "[dpoo]"], ["unknown demo method(s) ['dpoo']"]),
       ("align", "bad layout", ["--layout", "diagonal"], ["layout must be one of", "'diagonal'"])]
    + [(c, "missing model dir", argv, [f"'{path}' does not exist"])
       for path in ("runs/nope", "./runs/nope") for c, argv in model_slots(path)]
    + [(c, "model path is a file", argv, ["'examples/tiny/sft.yaml' is a file"])
       for c, argv in model_slots("examples/tiny/sft.yaml")]
    + [(c, "missing data file", ["--data", MISSING_DATA], [f"data file '{MISSING_DATA}' does not exist"])
       for c in ("align", "sft", "train-rm", "annotate")]
    + [(c, "missing data file", ["--prompts", MISSING_DATA], [f"prompts file '{MISSING_DATA}' does not exist"])
       for c in ("evaluate", "online")]
    + [("data inspect", "missing data file", [], [f"data file '{MISSING_DATA}' does not exist"])]
    + [("align", "data lacks what the objective needs",
        ["--objective", "dro", "--data", "examples/tiny/data/pairs.jsonl", "--format", "pairs", "--eval_fraction", "0"],
        ["row 0", "field 'rewards'", "objective 'dro' needs rewards",
         "examples/tiny/data/pairs.jsonl"]),
       ("align", "data lacks what the objective needs",
        ["--objective", "kto", "--data", "examples/tiny/data/pairs.jsonl", "--format", "pairs"],
        ["field 'labels'", "objective 'kto' needs labels"])]
    + [("evaluate", "bad judge spec", ["--judge", "rule:examples/tiny/judge.py:exact"],
        ["examples/tiny/judge.py has no attribute 'exact'"]),
       ("evaluate", "bad judge spec", ["--judge", "rule:nope.py:f"], ["rule module file nope.py does not exist"]),
       ("online", "bad reward spec", ["--reward", "rule:nope.py:f"], ["rule module file nope.py does not exist"]),
       ("online", "bad reward spec", ["--reward", "rule:examples/tiny/judge.py"],
        ["a rule is given as 'module:function' or 'path/file.py:function'"]),
       ("annotate", "bad reward spec", ["--source", "rule:nope.py:f"], ["rule module file nope.py does not exist"]),
       ("annotate", "bad reward spec", ["--source.type", "oracle"], ["unknown reward source type 'oracle'"])]
    + [("evaluate", "unknown gym task", ["--judge", "gym:chess"], ["unknown gym task 'chess'"]),
       ("online", "unknown gym task", ["--reward", "gym:chess"], ["unknown gym task 'chess'"]),
       ("online", "unknown gym task", ["--prompts", "gym:chess"], ["unknown gym task 'chess'"]),
       ("annotate", "unknown gym task", ["--source", "gym:chess"], ["unknown gym task 'chess'"]),
       ("demo", "unknown gym task", ["--task", "chess"], ["unknown gym task 'chess'"])]
    + [(c, "output_dir is a file", ["--output_dir", "examples/tiny/sft.yaml"],
        ["output_dir 'examples/tiny/sft.yaml' is a file, not a folder"]) for c in TRAINING]
    + [(c, "unknown report_to", ["--report_to", "carrier_pigeon"],
        ["report_to 'carrier_pigeon' is not a transformers integration"]) for c in TRAINING]
    + ([(c, "report_to not installed", ["--report_to", NOT_INSTALLED], [f"pip install {NOT_INSTALLED}"])
        for c in TRAINING] if NOT_INSTALLED else [])
)


def argv_of(command, extra):
    if command == "data inspect" and not extra:
        return ["data", "inspect", MISSING_DATA]
    if "--config" in extra:  # the mistake replaces the config file
        return command.split() + extra
    return BASE[command] + extra


@pytest.mark.parametrize("command, mistake, extra, words", CASES,
                         ids=[f"{c}: {m}: {' '.join(e)}" for c, m, e, _ in CASES])
def test_mistake_is_one_line_and_exit_2(run, command, mistake, extra, words):
    code, err = run(argv_of(command, extra), tokenizer=mistake == "data lacks what the objective needs")
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith(f"rewardalign {command}: error: ")
    for word in words:
        assert word in lines[-1]


def test_every_command_receives_every_mistake_it_can():
    covered = {(c, m) for c, m, _, _ in CASES}
    assert {c for c, _ in covered} == set(BASE)
    for mistake in ("missing model dir", "model path is a file", "missing data file"):
        assert {c for c, m in covered if m == mistake} == set(BASE) - {"demo"}
    for mistake in ("missing config", "broken YAML"):
        assert {c for c, m in covered if m == mistake} == set(BASE) - {"data inspect"}


@pytest.mark.parametrize("command", ["align", "sft", "train-rm", "annotate", "evaluate", "online", "data inspect"])
def test_score_range_hint_names_a_flag_the_command_accepts(run, command):
    """The hint of an out-of-range score column, followed as written, gets the same command past the data."""
    slot = {"evaluate": "--prompts", "online": "--prompts"}.get(command, "--data")
    extra = ["bad/scores_1_10.jsonl"] if command == "data inspect" else [slot, "bad/scores_1_10.jsonl"]
    argv = BASE[command][:2] + extra + BASE[command][3:] if command == "data inspect" else BASE[command] + extra
    if command == "align":
        argv += ["--format", "pairs", "--eval_fraction", "0"]
    if command == "annotate":
        argv += ["--format", "pairs", "--source", "gym:arithmetic", "--output", "runs/annotated.jsonl",
                 "--progress", "false"]
    code, err = run(argv, tokenizer=command == "align")
    if command == "data inspect":  # inspect reports bad rows (exit 1) and names the same flag
        assert code == 1
    else:
        assert code == 2 and "field 'chosen_score': 9 is outside the declared range [0.0, 1.0]" in err
    flag = '--format_options.score_range "[LO, HI]"'
    hint = err if code == 2 else run(argv + ["--on_error", "raise"])[1]
    assert flag in hint
    fixed = argv + [flag.split()[0], "[1, 10]"]
    if command in ("annotate", "data inspect"):
        assert run(fixed)[0] == 0
    else:
        with pytest.raises(ModelLoaded):
            run(fixed, tokenizer=command == "align")


def test_debug_shows_the_traceback_and_a_bug_is_not_a_user_error(run, monkeypatch):
    code, err = run(["--debug", "align", "--config", "nope.yaml"])
    assert code == 2 and "Traceback" in err and err.strip().splitlines()[-1].endswith("nope.yaml does not exist")
    from rewardalign.commands import align

    def bug(args, overrides):
        raise ValueError("an internal bug")

    monkeypatch.setattr(align, "run", bug)
    with pytest.raises(ValueError, match="an internal bug"):
        cli.main(["align", "--config", "examples/tiny/align.yaml"])


def test_model_paths_and_hub_ids(workspace, monkeypatch):
    """Only ``org/name`` whose ``org`` is not a local directory may go to the Hub, never when HF_HUB_OFFLINE."""
    monkeypatch.chdir(workspace)
    assert could_be_hub_id("Qwen/Qwen2.5-0.5B") and not could_be_hub_id("runs/nope")
    assert not any(could_be_hub_id(p) for p in ("gpt2", "./runs/nope", "/abs/model", "a/b/c", "~/model"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    check_model_path("Qwen/Qwen2.5-0.5B")  # left to transformers
    check_model_path("runs/tiny-sft")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE is set"):
        check_model_path("no-such-org-here/no-such-model")
    with pytest.raises(ConfigError, match="'gpt2' does not exist .*a Hub model is named org/name"):
        check_model_path("gpt2")


def test_console_script_runs_nope_fails_at_once(workspace):
    """The issue's case as a user meets it: a fresh process, no network call, one line, exit 2."""
    proc = subprocess.run([sys.executable, "-m", "rewardalign.cli", "align", "--config", "examples/tiny/align.yaml",
                           "--model", "runs/nope"], cwd=workspace, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "rewardalign align: error: model 'runs/nope' does not exist (no such directory; a Hub model is named "
        "org/name)")


def test_a_missing_model_directory_is_said_to_have_been_tried_as_a_hub_id(tmp_path):
    from rewardalign.modeling.loading import _cannot_load

    missing = str(tmp_path / "runs" / "sft")  # looks like org/name to the Hub once it is not here
    assert "no directory" in str(_cannot_load("the model", missing, OSError("offline")))
    assert "tried as a Hub id" in str(_cannot_load("the model", missing, OSError("offline")))
    assert "Hub id" not in str(_cannot_load("the model", str(tmp_path), OSError("no config.json")))
