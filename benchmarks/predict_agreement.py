"""How far predict's fast paths move a trained network's scores, against the exact path, on real recordings.

The exact path is PyTorch with each window read and transformed alone (``--engine torch
--exact-windows``), as training and evaluation see windows. Against it, for each checkpoint
given: every other inference engine installed (exact windows), and the default path (``auto``
engine, windows cut from their block's log-mel). Printed per path: the largest and the median
absolute difference of a score, and how many decisions at 0.5 differ.

    python benchmarks/predict_agreement.py runs/nips4b/checkpoints/best.ckpt [more.ckpt ...]
    python benchmarks/predict_agreement.py CKPT --data recordings/
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from mix2.engines import engine_names, installed
from mix2.predict import predict

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "frogs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path, help="checkpoints written by mix2 train")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="recordings (../shared/data/frogs)")
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"skipped: {args.data} is absent (the benchmark reads ../shared/data/frogs by default)")
        return 0
    exported = [name for name in engine_names() if name not in ("auto", "torch") and installed(name)]
    paths = {f"{name}, exact windows": {"engine": name, "exact_windows": True} for name in exported}
    paths["default: auto engine, windows cut from blocks"] = {"engine": "auto", "exact_windows": False}
    print("| checkpoint | path | largest difference | median difference | decisions at 0.5 that differ |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for index, checkpoint in enumerate(args.checkpoints):
            copy = Path(folder) / f"{index}.ckpt"  # exports go beside the copy, not beside the user's checkpoint
            shutil.copy(checkpoint, copy)
            exact = predict(copy, [args.data], engine="torch", exact_windows=True, progress=False).iloc[:, 3:].to_numpy()
            for label, settings in paths.items():
                scores = predict(copy, [args.data], progress=False, **settings).iloc[:, 3:].to_numpy()
                difference = np.abs(scores - exact)
                flipped = int(((scores >= 0.5) != (exact >= 0.5)).sum())
                print(
                    f"| {checkpoint} | {label} | {difference.max():.2g} | {np.median(difference):.2g} | {flipped} of {exact.size} |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
