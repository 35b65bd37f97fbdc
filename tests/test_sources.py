"""Data formats by name: a new form is one registration, and a path read as two forms is refused."""

from pathlib import Path

import pytest

from mix2.config import DataConfig
from mix2.data.clips import ClipTable
from mix2.data.formats import DataFormat
from mix2.data.sources import read_source
from mix2.errors import Mix2Error
from mix2.registry import DATA_FORMATS


@pytest.fixture
def registry(monkeypatch):
    """The registry of data formats, restored after the test."""
    monkeypatch.setattr(DATA_FORMATS, "_factories", dict(DATA_FORMATS._factories))
    return DATA_FORMATS


def test_a_registered_format_is_read_by_read_source(registry, tmp_path):
    (tmp_path / "mine.tsv").write_text("x")
    table = ClipTable.__new__(ClipTable)  # any table: only its identity is checked
    read = []
    registry.register("mine")(
        DataFormat("a mine.tsv folder", lambda path: (path / "mine.tsv").is_file(), lambda path, data: read.append(path) or table)
    )
    assert read_source(DataConfig(source=str(tmp_path)), tmp_path) is table and read == [tmp_path]
    with pytest.raises(Mix2Error, match="or a mine.tsv folder$"):  # the message lists every form
        read_source(DataConfig(source=str(tmp_path / "mine.tsv")), tmp_path)


def test_a_folder_in_two_forms_is_refused_in_one_line(tmp_path):
    (tmp_path / "metadata.csv").write_text("x")
    (tmp_path / "audio").mkdir()
    (tmp_path / "annotations.csv").write_text("x")
    with pytest.raises(Mix2Error) as raised:
        read_source(DataConfig(source=str(tmp_path)), Path(tmp_path))
    assert str(raised.value) == (
        f"{tmp_path}: reads as more than one form of dataset: an AnuraSet folder (metadata.csv and audio/) and an "
        "events folder (annotations.csv, recordings.csv or Raven *.selections.txt); keep one of them in this folder"
    )
