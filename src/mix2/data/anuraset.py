"""AnuraSet as published on Zenodo: ``metadata.csv`` plus ``audio/<site>/<sample_name>``.

Species columns are taken by name from the 42 codes below, never by column position. The
``subset`` column gives train and test. Three variants, as in Moummad et al. (2024):

- ``anuraset``: all 42 species;
- ``anuraset36n``: without the 6 species that have no train/test overlap;
- ``anuraset36``: also without the clips left with no species.

The metadata's ``species_number`` column is not used: polyphony is counted from the species
columns themselves.

Example:
    >>> table = read_anuraset("path/to/anuraset", variant="anuraset36n")  # doctest: +SKIP
    >>> len(table.classes)  # doctest: +SKIP
    36
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mix2.data.clips import (
    ClipTable,
    check_binary,
    drop_duplicate_clips,
    read_csv,
    relative_audio_path,
    require_columns,
    require_nonempty,
    without_missing_audio,
)
from mix2.data.formats import DATA_FORMATS, DataFormat
from mix2.errors import Mix2Error, input_error

ANURASET_SPECIES = [
    "SPHSUR", "BOABIS", "SCIPER", "DENNAH", "LEPLAT", "RHIICT", "BOALEP", "BOAFAB", "PHYCUV",
    "DENMIN", "ELABIC", "BOAPRA", "DENCRU", "BOALUN", "BOAALB", "PHYMAR", "PITAZU", "PHYSAU",
    "LEPFUS", "DENNAN", "PHYALB", "LEPLAB", "SCIFUS", "BOARAN", "SCIFUV", "AMEPIC", "LEPPOD",
    "ADEDIP", "ELAMAT", "PHYNAT", "LEPELE", "RHISCI", "SCINAS", "LEPNOT", "ADEMAR", "BOAALM",
    "PHYDIS", "RHIORN", "LEPFLA", "SCIRIZ", "DENELE", "SCIALT",
]  # fmt: skip
NO_OVERLAP_SPECIES = ["SCIFUS", "LEPELE", "RHISCI", "SCINAS", "LEPFLA", "SCIRIZ"]
FREQUENT = ["SPHSUR", "BOABIS", "BOAFAB", "LEPPOD"]
COMMON = ["PITAZU", "DENMIN", "PHYCUV", "LEPLAT", "PHYALB", "SCIPER", "DENNAN", "BOAALB"]
VARIANTS = ("anuraset", "anuraset36n", "anuraset36")
METADATA_COLUMNS = ["sample_name", "fname", "min_t", "max_t", "site", "subset"]
CLIP_LENGTH_S = 3.0


def is_anuraset_folder(path: Path) -> bool:
    """An AnuraSet folder has ``metadata.csv`` and an ``audio`` folder."""
    return (path / "metadata.csv").is_file() and (path / "audio").is_dir()


def read_anuraset(root: str | Path, variant: str = "anuraset") -> ClipTable:
    """Read an AnuraSet folder into a :class:`ClipTable` of 3 s clips.

    Args:
        root: the unpacked download, holding ``metadata.csv`` and ``audio/<site>/*.wav``.
        variant: ``anuraset`` (42 species), ``anuraset36n`` or ``anuraset36``.

    Clips whose audio file is missing are left out and listed in ``failures``.
    """
    if variant not in VARIANTS:
        raise Mix2Error(f"unknown AnuraSet variant '{variant}'; choose one of: {', '.join(VARIANTS)}")
    root = Path(root)
    metadata_path = root / "metadata.csv"
    metadata = read_csv(metadata_path, dtype={"sample_name": str, "fname": str, "site": str, "subset": str})
    require_columns(metadata, METADATA_COLUMNS + ANURASET_SPECIES, metadata_path)
    subsets = set(metadata["subset"].unique())
    if not subsets <= {"train", "test"}:
        raise input_error(metadata_path, f"'subset' must be train or test, found {sorted(subsets - {'train', 'test'})}")
    labels = check_binary(metadata[ANURASET_SPECIES].to_numpy(), metadata_path, "species columns")

    files = [
        relative_audio_path(root, f"audio/{site}/{_with_extension(name)}", metadata_path)
        for site, name in zip(metadata["site"], metadata["sample_name"])
    ]
    clips = pd.DataFrame(
        {
            "file": files,
            "start_s": 0.0,
            "end_s": CLIP_LENGTH_S,
            "group": metadata["fname"].astype(str),
            "split": metadata["subset"].astype(str),
        }
    )
    table = ClipTable(
        clips=clips,
        labels=labels,
        classes=list(ANURASET_SPECIES),
        root=root,
        class_groups={"frequent": FREQUENT, "common": COMMON},
        name=variant,
    )
    table = without_missing_audio(drop_duplicate_clips(table, metadata_path))
    if variant != "anuraset":
        table = table.drop_classes(NO_OVERLAP_SPECIES)
    if variant == "anuraset36":
        table = table.select(table.labels.sum(axis=1) > 0)
    return require_nonempty(table, metadata_path)


def _with_extension(sample_name: str) -> str:
    return sample_name if Path(sample_name).suffix else f"{sample_name}.wav"


DATA_FORMATS.register("anuraset")(
    DataFormat(
        "an AnuraSet folder (metadata.csv and audio/)", is_anuraset_folder, lambda path, data: read_anuraset(path, data.variant)
    )
)
