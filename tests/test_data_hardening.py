"""Data hardening: malformed JSON Lines, unreadable sources, invalid text and rewards training cannot represent.

Every error is a one-line DataError naming the file (where there is one), the line or row, and the field."""

import json
import math
import pickle

import datasets
import pytest

from rewardalign.cli import main
from rewardalign.data import DataError, load_groups
from rewardalign.data.schema import REWARD_LIMIT, DataFileNotFoundError, DataSourceError

GOOD = {"prompt": "p", "chosen": "good", "rejected": "bad"}


def write_lines(path, lines: list[bytes]):
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def jsonl(obj) -> bytes:
    return json.dumps(obj).encode()


def test_malformed_lines_are_dropped_counted_and_reported_with_file_and_line(tmp_path):
    path = write_lines(tmp_path / "mixed.jsonl", [
        jsonl(GOOD | {"prompt": "p0"}),
        b'{"prompt": "p1", "chosen": "a", ',  # truncated
        jsonl(GOOD | {"prompt": "p2"}),
        b"[1, 2]",  # not an object
        b'{"prompt": "p4", "chosen": "caf\xe9", "rejected": "b"}',  # Latin-1, not UTF-8
        b"",
        jsonl(GOOD | {"prompt": "p6"}),
    ])
    groups, report = load_groups(path, on_error="drop")
    assert [g.prompt for g in groups] == ["p0", "p2", "p6"]
    assert [g.meta["row"] for g in groups] == [0, 1, 2]
    assert [row for row, _ in report.rows] == ["line 2", "line 4", "line 5"]
    reasons = [reason for _, reason in report.rows]
    assert all(f"{path}, line {n}:" in r for n, r in zip((2, 4, 5), reasons))
    assert "invalid JSON" in reasons[0] and "expected a JSON object, got list" in reasons[1]
    assert "invalid UTF-8 at byte offset" in reasons[2]
    assert report.counts() == {"malformed line": 3}


def test_malformed_line_raises_naming_file_line_and_problem(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", [jsonl(GOOD), jsonl(GOOD | {"prompt": "q"}), b'{"prompt": oops}'])
    with pytest.raises(DataSourceError) as err:
        load_groups(path)
    message = one_line(err)
    assert message.startswith(f"{path}, line 3: invalid JSON (Expecting value at column 12)")


def test_drop_also_keeps_row_level_drops(tmp_path):
    path = write_lines(tmp_path / "rows.jsonl", [jsonl(GOOD), b"{oops", jsonl(GOOD | {"prompt": "", "chosen": "x"})])
    groups, report = load_groups(path, on_error="drop")
    assert len(groups) == 1 and report.rows[0][0] == "line 2"
    assert report.rows[1] == (1, "prompt: is empty")


def test_every_line_malformed(tmp_path):
    path = write_lines(tmp_path / "all_bad.jsonl", [b"{", b"nope"])
    with pytest.raises(DataSourceError, match="has no rows left after dropping malformed lines"):
        load_groups(path, on_error="drop")


def test_missing_file(tmp_path):
    with pytest.raises(DataFileNotFoundError) as err:
        load_groups(tmp_path / "nothing.jsonl")
    assert one_line(err) == f"{tmp_path / 'nothing.jsonl'}: no such file or directory"
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, DataError)


def test_directory_is_not_a_file_unless_saved_by_save_to_disk(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "pairs.jsonl").write_text(json.dumps(GOOD) + "\n")
    with pytest.raises(DataSourceError) as err:
        load_groups(tmp_path / "folder")
    assert one_line(err).startswith(f"{tmp_path / 'folder'}: is a directory, not a data file")
    datasets.Dataset.from_list([GOOD]).save_to_disk(tmp_path / "saved")
    assert len(load_groups(tmp_path / "saved")[0]) == 1


@pytest.mark.parametrize("suffix, content", [("jsonl", b""), ("json", b"  \n"), ("csv", b""),
                                             ("jsonl", b"\xef\xbb\xbf\n")])
def test_empty_file(tmp_path, suffix, content):
    path = tmp_path / f"empty.{suffix}"
    path.write_bytes(content)
    with pytest.raises(DataSourceError) as err:
        load_groups(path)
    assert one_line(err) == f"{path}: the file is empty"


def test_invalid_utf8_names_line_and_byte_offset(tmp_path):
    lines = [jsonl(GOOD), b'{"prompt": "p", "chosen": "caf\xe9", "rejected": "b"}']
    path = write_lines(tmp_path / "latin1.jsonl", lines)
    offset = len(lines[0]) + 1 + lines[1].index(b"\xe9")
    with pytest.raises(DataSourceError) as err:
        load_groups(path)
    assert one_line(err).startswith(f"{path}, line 2: invalid UTF-8 at byte offset {offset} (byte 0xe9)")
    for name, content, line in [
        ("latin1.json", b'\xef\xbb\xbf[\n {"prompt": "p", "chosen": "a", "rejected": "b"},\n {"prompt": "\xe9"}\n]', 3),
        ("latin1.csv", b"prompt,chosen,rejected\np,caf\xe9,b\n", 2),
    ]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataSourceError) as err:
            load_groups(tmp_path / name)
        offset = content.index(b"\xe9")
        assert one_line(err).startswith(f"{tmp_path / name}, line {line}: invalid UTF-8 at byte offset {offset}")


def test_utf8_bom_is_stripped(tmp_path):
    rows = [GOOD, GOOD | {"prompt": "q"}]
    expected = load_groups(rows)[0]
    bom = b"\xef\xbb\xbf"
    (tmp_path / "a.jsonl").write_bytes(bom + b"\n".join(jsonl(r) for r in rows))
    (tmp_path / "a.json").write_bytes(bom + json.dumps(rows).encode())
    (tmp_path / "a.csv").write_bytes(bom + b"prompt,chosen,rejected\np,good,bad\nq,good,bad\n")
    for name in ("a.jsonl", "a.json", "a.csv"):
        groups, report = load_groups(tmp_path / name)
        assert groups == expected and not report, name


def test_pairs_without_rejected_names_the_missing_column_and_the_columns_found(tmp_path):
    path = write_lines(tmp_path / "half.jsonl", [jsonl({"prompt": "p", "chosen": "a"})])
    with pytest.raises(DataSourceError) as err:
        load_groups(path)
    message = one_line(err)
    assert message.startswith(str(path)) and "['prompt', 'chosen']" in message
    assert "the closest, pairs, misses the column(s) rejected" in message
    with pytest.raises(DataSourceError) as err:
        load_groups(path, "pairs")
    assert "needs the column(s) rejected; found columns: prompt, chosen" in one_line(err)


def test_lone_surrogate_is_rejected_with_row_and_field(tmp_path):
    path = tmp_path / "surrogate.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + '{"prompt": "p", "chosen": "x \\ud800 y", "rejected": "b"}\n')
    with pytest.raises(DataError) as err:
        load_groups(path)
    assert one_line(err).startswith("row 1, field 'chosen': holds a lone UTF-16 surrogate U+D800 at character 2")
    groups, report = load_groups(path, on_error="drop")
    assert len(groups) == 1 and report.rows[0][0] == 1
    chat = {"chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "\udfff"}],
            "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "no"}]}
    with pytest.raises(DataError, match=r"row 0, field 'chosen\[0\].content': holds a lone UTF-16 surrogate U\+DFFF"):
        load_groups([chat])
    with pytest.raises(DataError, match=r"row 0, field 'responses\[1\]': holds a lone"):
        load_groups([{"prompt": "p", "responses": ["a", "b\ud83d"]}])


@pytest.mark.parametrize("value", [1e7, -2e6, 1e38, 1e308])
def test_rewards_beyond_the_limit_are_rejected_with_row_and_field(value):
    rows = [GOOD | {"chosen_reward": 1.0, "rejected_reward": 0.0},
            GOOD | {"prompt": "q", "chosen_reward": 1.0, "rejected_reward": value}]
    with pytest.raises(DataError) as err:
        load_groups(rows)
    assert one_line(err).startswith(f"row 1, field 'rejected_reward': is {value:g}, beyond +-1e+06")
    group = {"prompt": "p", "responses": ["a", "b"], "rewards": [0.0, 0.0], "reward_members": [[0.0, value]]}
    with pytest.raises(DataError, match=r"row 0, field 'reward_members\[0\]\[1\]'"):
        load_groups([group], "group")


def test_rewards_at_the_limit_load():
    rows = [GOOD | {"chosen_reward": REWARD_LIMIT, "rejected_reward": -REWARD_LIMIT}]
    assert load_groups(rows)[0][0].rewards == [1e6, -1e6]
    assert math.isfinite(float(REWARD_LIMIT) ** 2 * 4)


def test_data_errors_survive_pickling():
    """Errors raised in worker processes (datasets map, num_proc) reach the caller whole."""
    for err in (DataError(3, "rewards[0]", "bad", file="f.jsonl", line=4), DataSourceError("f.jsonl", "empty", line=2),
                DataFileNotFoundError("g.jsonl", "no such file or directory")):
        again = pickle.loads(pickle.dumps(err))
        assert type(again) is type(err) and str(again) == str(err)
        assert (again.row, again.field, again.file, again.line) == (err.row, err.field, err.file, err.line)


def test_inspect_lists_dropped_lines_and_exits_2_on_unreadable_sources(tmp_path, capsys):
    path = write_lines(tmp_path / "mixed.jsonl", [jsonl(GOOD), b"{oops", jsonl(GOOD | {"prompt": "q"})])
    assert main(["data", "inspect", str(path)]) == 1
    out = capsys.readouterr().out
    assert "groups: 2" in out and f"row line 2: malformed line: {path}, line 2: invalid JSON" in out
    assert main(["data", "inspect", str(path), "--on_error", "raise"]) == 2
    assert f"{path}, line 2: invalid JSON" in capsys.readouterr().err
    (tmp_path / "dir").mkdir()
    assert main(["data", "inspect", str(tmp_path / "dir")]) == 2
    assert "is a directory" in capsys.readouterr().err
