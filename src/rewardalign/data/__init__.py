"""Data: the group shape, loaders and format converters (``rewardalign data inspect`` lives in
:mod:`rewardalign.data.inspect`)."""

from rewardalign.data.formats import FORMATS, detect_format
from rewardalign.data.loaders import load_groups, read_rows, write_groups_jsonl
from rewardalign.data.schema import DataError, DropReport, Group, validate_group

__all__ = [
    "FORMATS",
    "DataError",
    "DropReport",
    "Group",
    "detect_format",
    "load_groups",
    "read_rows",
    "validate_group",
    "write_groups_jsonl",
]
