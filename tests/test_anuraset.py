import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from conftest import shared_data
from mix2.config import DataConfig
from mix2.data.anuraset import ANURASET_SPECIES, FREQUENT, NO_OVERLAP_SPECIES, read_anuraset
from mix2.data.sources import read_source
from mix2.errors import Mix2Error


@pytest.fixture(scope="module")
def anuraset_folder(tmp_path_factory):
    """A folder laid out as the published download, from the real sample metadata, with generated audio."""
    metadata = pd.read_csv(shared_data("anuraset_sample") / "metadata_sample.csv")
    root = tmp_path_factory.mktemp("anuraset")
    rng = np.random.default_rng(0)
    for site, name in zip(metadata["site"], metadata["sample_name"]):
        (root / "audio" / site).mkdir(parents=True, exist_ok=True)
        sf.write(root / "audio" / site / name, rng.normal(scale=0.05, size=3 * 22_050), 22_050, subtype="PCM_16")
    # Shuffle the species columns: they must be taken by name, never by position.
    columns = list(metadata.columns[:8]) + list(np.random.default_rng(1).permutation(metadata.columns[8:]))
    metadata[columns].to_csv(root / "metadata.csv", index=False)
    return root


def test_reads_42_species_by_name_with_published_splits(anuraset_folder):
    metadata = pd.read_csv(shared_data("anuraset_sample") / "metadata_sample.csv")
    table = read_anuraset(anuraset_folder)
    assert table.classes == ANURASET_SPECIES and len(table) == len(metadata) == 343
    np.testing.assert_array_equal(table.labels, metadata[ANURASET_SPECIES].to_numpy())
    assert table.clips["split"].tolist() == metadata["subset"].tolist()
    assert table.clips["group"].tolist() == metadata["fname"].tolist()
    assert table.clips["file"][0] == f"audio/{metadata['site'][0]}/{metadata['sample_name'][0]}"
    assert table.class_groups["frequent"] == FREQUENT


def test_variants(anuraset_folder):
    full = read_anuraset(anuraset_folder, "anuraset")
    no_overlap = read_anuraset(anuraset_folder, "anuraset36n")
    assert len(no_overlap.classes) == 36 and not set(NO_OVERLAP_SPECIES) & set(no_overlap.classes)
    assert len(no_overlap) == len(full)
    nonempty = read_anuraset(anuraset_folder, "anuraset36")
    expected = (full.drop_classes(NO_OVERLAP_SPECIES).labels.sum(axis=1) > 0).sum()
    assert len(nonempty) == expected and (nonempty.labels.sum(axis=1) > 0).all()
    assert (
        read_source(DataConfig(source=str(anuraset_folder), variant="anuraset36n"), anuraset_folder).classes == no_overlap.classes
    )


def test_missing_audio_is_listed_and_missing_columns_refused(anuraset_folder, tmp_path):
    metadata = pd.read_csv(anuraset_folder / "metadata.csv")
    root = tmp_path / "partial"
    (root / "audio").mkdir(parents=True)
    site, name = metadata["site"][0], metadata["sample_name"][0]
    (root / "audio" / site).mkdir()
    (root / "audio" / site / name).symlink_to(anuraset_folder / "audio" / site / name)
    metadata.to_csv(root / "metadata.csv", index=False)
    table = read_anuraset(root)
    assert len(table) == 1 and len(table.failures) == 342
    metadata.drop(columns=["BOABIS", "subset"]).to_csv(root / "metadata.csv", index=False)
    with pytest.raises(Mix2Error, match=r"metadata.csv: missing column\(s\) subset, BOABIS"):
        read_anuraset(root)


def test_unknown_variant(anuraset_folder):
    with pytest.raises(Mix2Error, match="unknown AnuraSet variant 'anuraset40'"):
        read_anuraset(anuraset_folder, "anuraset40")
