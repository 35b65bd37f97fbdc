"""The mixing benchmark's table: mean ± sample std over seeds, in the paper's column order."""

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location("mixing_nips4b", Path(__file__).parents[1] / "benchmarks" / "mixing_nips4b.py")
benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark)


def test_table_is_mean_and_sample_std_in_percent():
    rows = [
        {"method": "none", "seed": 0, "frequent": 0.5, "common": 0.2, "rare": 0.0, "all": 0.1, "map": 0.3},
        {"method": "none", "seed": 1, "frequent": 0.7, "common": 0.4, "rare": 0.1, "all": 0.2, "map": 0.5},
        {"method": "mix2", "seed": 0, "frequent": 0.6, "common": 0.3, "rare": 0.2, "all": 0.3, "map": 0.4},
    ]
    table = benchmark.summarise(rows)
    assert list(table.columns) == ["Frequent", "Common", "Rare", "All", "mAP"] and list(table.index) == ["none", "mix2"]
    assert table.loc["none", "Frequent"] == "60.0 ± 14.1" and table.loc["mix2", "Rare"] == "20.0 ± 0.0"
    markdown = benchmark.to_markdown(table).splitlines()
    assert markdown[0] == "| method | Frequent | Common | Rare | All | mAP |" and markdown[2].startswith("| none | 60.0 ± 14.1 |")
