"""Data: the group shape, loaders and format converters, and the cached Arrow pipeline that tokenises them
(:func:`prepare_dataset`; ``rewardalign data inspect`` lives in :mod:`rewardalign.data.inspect`)."""

from rewardalign.data.formats import FORMATS, detect_format
from rewardalign.data.loaders import iter_groups, load_groups, read_rows, write_groups_jsonl
from rewardalign.data.pipeline import TokenizedDataset, prepare_dataset
from rewardalign.data.schema import DataError, DataSourceError, DropReport, Group, validate_group

__all__ = [
    "FORMATS",
    "DataError",
    "DataSourceError",
    "DropReport",
    "Group",
    "TokenizedDataset",
    "detect_format",
    "iter_groups",
    "load_groups",
    "prepare_dataset",
    "read_rows",
    "validate_group",
    "write_groups_jsonl",
]
