import pandas as pd
import pytest

from conftest import write_tone
from mix2.config import DataConfig
from mix2.data.multihot import read_multihot
from mix2.data.sources import read_source
from mix2.errors import Mix2Error


def test_opensoundscape_table(tmp_path):
    write_tone(tmp_path / "a.wav", 6.0)
    write_tone(tmp_path / "b.wav", 3.0)
    pd.DataFrame(
        {
            "file": ["a.wav", "a.wav", "b.wav"],
            "start_time": [0, 3, 0],
            "end_time": [3, 6, 3],
            "frog": [1, 0, 1],
            "toad": [0, 1, 1],
        }
    ).to_csv(tmp_path / "labels.csv", index=False)
    table = read_source(DataConfig(source=str(tmp_path / "labels.csv")), tmp_path)
    assert table.classes == ["frog", "toad"] and table.labels.tolist() == [[1, 0], [0, 1], [1, 1]]
    assert table.clips["group"].tolist() == ["a.wav", "a.wav", "b.wav"] and (table.clips["split"] == "").all()
    assert table.to_multihot().loc[("a.wav", 3.0, 6.0), "toad"] == 1


@pytest.mark.parametrize("file", ["../../etc/passwd", "/etc/passwd"])
def test_paths_outside_the_data_folder_are_refused(tmp_path, file):
    pd.DataFrame({"file": [file], "start_s": [0], "end_s": [3], "frog": [1]}).to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(Mix2Error, match="points outside the data folder"):
        read_multihot(tmp_path / "labels.csv")


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("frog", 2, "class columns must hold only 0 and 1"),
        ("split", "holdout", "'split' must be one of"),
        ("start_s", -1, "row 2: times"),
    ],
)
def test_bad_values(tmp_path, column, value, message):
    write_tone(tmp_path / "a.wav", 3.0)
    frame = pd.DataFrame({"file": ["a.wav"], "start_s": [0], "end_s": [3], "split": ["train"], "frog": [1]})
    frame[column] = value
    frame.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(Mix2Error, match=message):
        read_multihot(tmp_path / "labels.csv")


def test_not_a_dataset(tmp_path):
    with pytest.raises(Mix2Error, match="not a dataset"):
        read_source(DataConfig(source=str(tmp_path)), tmp_path)
    with pytest.raises(Mix2Error, match="no such file or folder"):
        read_source(DataConfig(source=str(tmp_path / "nowhere")), tmp_path)
