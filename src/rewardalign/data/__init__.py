"""Data: the group shape, loaders and format converters. The cached Arrow pipeline that tokenises them is
:mod:`rewardalign.data.pipeline` (``prepare_dataset``; numpy and datasets: imported only where used, so the
CLI's ``--help`` stays light); ``rewardalign data inspect`` is :mod:`rewardalign.commands.inspect`."""

from rewardalign.data.formats import FORMATS, detect_format
from rewardalign.data.loaders import iter_groups, load_groups, read_rows, write_groups_jsonl
from rewardalign.data.schema import DataError, DataSourceError, DropReport, Group, validate_group

__all__ = [
    "FORMATS",
    "DataError",
    "DataSourceError",
    "DropReport",
    "Group",
    "detect_format",
    "iter_groups",
    "load_groups",
    "read_rows",
    "validate_group",
    "write_groups_jsonl",
]
