import dataclasses

import pytest

from rewardalign.cli import main
from rewardalign.config import ConfigError, apply_overrides, from_dict, parse_overrides, resolve


def test_overrides_are_yaml_scalars_with_only_true_false_as_booleans():
    got = parse_overrides(["--eval_strategy", "no", "--learning_rate", "1e-5", "--bf16", "--a.b=[1, 2]",
                           "--name", "off"])
    assert got == {"eval_strategy": "no", "learning_rate": 1e-5, "bf16": True, "a.b": [1, 2], "name": "off"}


def test_overrides_reach_into_nested_fields_without_touching_the_original(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("objective: dpo\nobjective_args: {beta: 0.1}\nlearning_rate: 1e-6\neval_strategy: no\n")
    base = resolve(path, [])
    assert base == {"objective": "dpo", "objective_args": {"beta": 0.1}, "learning_rate": 1e-6,
                    "eval_strategy": "no"}
    merged = apply_overrides(base, {"objective_args.beta": 0.3, "objective_args.pairs": "all_pairs"})
    assert merged["objective_args"] == {"beta": 0.3, "pairs": "all_pairs"}
    assert base["objective_args"] == {"beta": 0.1}


def test_bad_overrides_and_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="overrides are written --field value"):
        parse_overrides(["beta", "0.1"])
    with pytest.raises(ConfigError, match="does not exist"):
        resolve(tmp_path / "missing.yaml", [])
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        resolve(tmp_path / "list.yaml", [])
    with pytest.raises(ConfigError, match="is not a mapping"):
        apply_overrides({"objective": "dpo"}, {"objective.beta": 1})


def test_from_dict_names_unknown_fields():
    @dataclasses.dataclass
    class C:
        alpha: float = 1.0

    assert from_dict(C, {"alpha": 2.0}, "demo").alpha == 2.0
    with pytest.raises(ConfigError, match=r"unknown demo field\(s\) \['alpah'\]; known fields: \['alpha'\]"):
        from_dict(C, {"alpah": 2.0}, "demo")


def test_cli_help_and_errors(capsys, tmp_path):
    assert main([]) == 0
    assert "align" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["align", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "objective_args" in out and "dro" in out
    assert main(["align", "--objective", "nope", "--output_dir", str(tmp_path)]) == 2
    assert "unknown objective 'nope'" in capsys.readouterr().err
