"""Loaders of rewardalign.data.loaders: files, datasets objects, save_to_disk directories, JSONL output."""

import json
from pathlib import Path

import datasets
import pytest

from rewardalign.data import load_groups, read_rows, write_groups_jsonl
from rewardalign.data.schema import DataSourceError

DATA = Path(__file__).parent / "fixtures" / "data"
PAIRS = [json.loads(line) for line in (DATA / "pairs.jsonl").read_text().splitlines()]


def test_list_of_dicts_and_path_types():
    from_rows, _ = load_groups(PAIRS)
    from_str, _ = load_groups(str(DATA / "pairs.jsonl"))
    from_path, _ = load_groups(DATA / "pairs.jsonl")
    assert from_rows == from_str == from_path and len(from_rows) == 4


@pytest.mark.parametrize("suffix", ["jsonl", "json", "csv", "parquet"])
def test_every_file_type_gives_the_same_groups(tmp_path, suffix):
    path = tmp_path / f"pairs.{suffix}"
    ds = datasets.Dataset.from_list(PAIRS)
    {
        "jsonl": lambda: ds.to_json(path),
        "json": lambda: path.write_text(json.dumps(PAIRS)),
        "csv": lambda: ds.to_csv(path, index=False),
        "parquet": lambda: ds.to_parquet(path),
    }[suffix]()
    groups, _ = load_groups(path)
    assert groups == load_groups(PAIRS)[0]


def test_json_file_holding_json_lines(tmp_path):
    """``Dataset.to_json`` writes JSON Lines, whatever the suffix."""
    path = tmp_path / "pairs.json"
    datasets.Dataset.from_list(PAIRS).to_json(path)
    assert load_groups(path)[0] == load_groups(PAIRS)[0]


def test_dataset_and_dataset_dict():
    ds = datasets.Dataset.from_list(PAIRS)
    assert load_groups(ds)[0] == load_groups(PAIRS)[0]
    dd = datasets.DatasetDict({"train": ds, "test": ds.select([0])})
    assert len(load_groups(dd, split="test")[0]) == 1
    assert len(load_groups(datasets.DatasetDict({"train": ds}))[0]) == 4  # a single split needs no name
    with pytest.raises(ValueError, match="choose a split.*train, test"):
        load_groups(dd)


def test_conversational_dataset_round_trips_through_arrow():
    rows = [json.loads(line) for line in (DATA / "pairs_conversational.jsonl").read_text().splitlines()]
    assert load_groups(datasets.Dataset.from_list(rows))[0] == load_groups(rows)[0]


def test_save_to_disk_directories(tmp_path):
    ds = datasets.Dataset.from_list(PAIRS)
    ds.save_to_disk(tmp_path / "ds")
    assert load_groups(tmp_path / "ds")[0] == load_groups(PAIRS)[0]
    datasets.DatasetDict({"train": ds, "validation": ds.select([1, 2])}).save_to_disk(tmp_path / "dd")
    groups, _ = load_groups(tmp_path / "dd", split="validation")
    assert [g.prompt for g in groups] == [PAIRS[1]["prompt"], PAIRS[2]["prompt"]]
    assert [g.meta["row"] for g in groups] == [0, 1]


def test_read_rows_columns():
    rows, columns = read_rows(DATA / "binary.csv")
    assert columns == ["prompt", "completion", "label"] and rows[0]["label"] == "true"
    _, columns = read_rows([{"a": 1}, {"b": 2, "a": 3}])
    assert columns == ["a", "b"]


def test_missing_file_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_groups(tmp_path / "nothing.jsonl")
    with pytest.raises(FileNotFoundError):
        load_groups("./not_here")


def test_unsupported_file_type(tmp_path):
    (tmp_path / "data.txt").write_text("hello")
    with pytest.raises(ValueError, match="unsupported file type.*.jsonl"):
        load_groups(tmp_path / "data.txt")


def test_invalid_json_line_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n\n{"prompt": oops}\n')
    with pytest.raises(ValueError, match="line 3: invalid JSON"):
        load_groups(path)


def test_empty_source(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataSourceError, match="empty.jsonl: the file is empty"):
        load_groups(tmp_path / "empty.jsonl")
    (tmp_path / "blank.jsonl").write_text("\n  \n")
    with pytest.raises(DataSourceError, match="blank.jsonl: the file is empty"):
        load_groups(tmp_path / "blank.jsonl")
    (tmp_path / "header.csv").write_text("prompt,chosen,rejected\n")
    with pytest.raises(DataSourceError, match="header.csv: has no rows"):
        load_groups(tmp_path / "header.csv")


def test_missing_column_lists_columns_found_and_formats_that_fit():
    rows = [{"prompt": "p", "completion": "c", "label": 1}]
    with pytest.raises(ValueError) as err:
        load_groups(rows, "pairs")
    message = str(err.value)
    assert "needs the column(s) chosen, rejected" in message
    assert "found columns: prompt, completion, label" in message
    assert "formats that fit: binary" in message


def test_missing_column_with_no_fitting_format():
    with pytest.raises(ValueError, match="needs the column.*label.*formats that fit: none"):
        load_groups([{"prompt": "p", "text": "t"}], "binary")


def test_bad_options():
    with pytest.raises(ValueError, match="unknown format 'kto'"):
        load_groups(PAIRS, "kto")
    with pytest.raises(ValueError, match="on_error"):
        load_groups(PAIRS, on_error="ignore")
    with pytest.raises(ValueError, match="score_range"):
        load_groups(PAIRS, score_range=(1, 1))
    with pytest.raises(ValueError, match="derives its scores from ratings"):
        load_groups(DATA / "ultrafeedback.json", score_range=(1, 10))
    with pytest.raises(TypeError):
        load_groups(PAIRS, weights={"helpfulness": 1.0})
    with pytest.raises(TypeError, match="cannot read rows"):
        load_groups(42)


def test_write_groups_jsonl_round_trip(tmp_path):
    for name in ("pairs_conversational.jsonl", "ultrafeedback.json", "binary.csv", "groups.jsonl"):
        groups, _ = load_groups(DATA / name)
        write_groups_jsonl(groups, tmp_path / "out" / "groups.jsonl")
        again, _ = load_groups(tmp_path / "out" / "groups.jsonl", "group")
        assert [g.meta.pop("row") for g in again] == list(range(len(groups)))
        for group in groups:
            group.meta.pop("row")
            group.meta.pop("rows", None)
        assert [g.to_dict() for g in again] == [g.to_dict() for g in groups]
    assert again[1].meta == {"id": "conv-1"}


def test_json_lines_are_read_as_they_are_used_not_all_at_once(tmp_path):
    import tracemalloc

    path = tmp_path / "big.jsonl"
    response = "x" * 2000
    with path.open("w") as f:
        for i in range(4000):  # 16 MB of responses
            f.write(json.dumps({"prompt": f"p{i}", "chosen": response + "a", "rejected": response + "b"}) + "\n")
        f.write(json.dumps({"prompt": "last", "chosen": "a", "rejected": "b", "note": "only here"}) + "\n")
    tracemalloc.start()
    rows, columns = read_rows(path)
    assert columns == ["prompt", "chosen", "rejected", "note"] and len(rows) == 4001
    seen = sum(1 for row in rows if row["note"] is None)  # every row has every column
    groups, _ = load_groups(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seen == 4000 and len(groups) == 4001 and groups[-1].prompt == "last"
    # the groups hold their texts (~16 MB); the rows were never held besides them
    assert peak < 24e6, peak
