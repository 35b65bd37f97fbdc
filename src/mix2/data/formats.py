"""The forms of dataset mix2 reads, registered by name in :data:`mix2.registry.DATA_FORMATS`.

A new form is one reader module in ``data/`` that registers a :class:`DataFormat` (how to
recognise a path in that form, and how to read it), and one import in :mod:`mix2.data.sources`.

Example:
    >>> DATA_FORMATS.register("my_table")(DataFormat(
    ...     "a my_table folder", lambda path: (path / "my_table.tsv").is_file(), read_my_table))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mix2.config import DataConfig
from mix2.data.clips import ClipTable
from mix2.registry import DATA_FORMATS


@dataclass(frozen=True)
class DataFormat:
    """A form of dataset: ``describe`` (for messages), ``recognises(path)`` and ``read(path, data)``."""

    describe: str
    recognises: Callable[[Path], bool]
    read: Callable[[Path, DataConfig], ClipTable]


__all__ = ["DATA_FORMATS", "DataFormat"]
