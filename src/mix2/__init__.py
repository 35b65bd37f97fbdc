"""mix2: multi-label animal-sound classifiers that hold up on rare species.

Example:
    >>> import mix2
    >>> run_dir = mix2.train(mix2.default_config("chorus"))  # doctest: +SKIP
    >>> mix2.evaluate(run_dir)["groups"]  # doctest: +SKIP
    >>> mix2.resume(run_dir)  # after a kill: go on from the last checkpoint  # doctest: +SKIP
    >>> plan = mix2.Experiment(mix2.default_config("path/to/data"), presets=["timeshift", "mix2"])
    >>> mix2.run_experiment("runs/experiments/mine", plan)  # doctest: +SKIP
    >>> mix2.write_report(["runs/experiments/mine"], "report.html")  # doctest: +SKIP
"""

import importlib
from typing import Any

from mix2.config import RunConfig, default_config
from mix2.data.download import download
from mix2.errors import Mix2Error

_LAZY = {
    "Experiment": "mix2.experiment_plan",
    "aggregate_experiment": "mix2.experiment",
    "run_experiment": "mix2.experiment",
    "write_report": "mix2.reporting.html",
    "embed": "mix2.predict",
    "evaluate": "mix2.run",
    "quantize": "mix2.quantize",
    "resume": "mix2.run",
    "train": "mix2.run",
}
"""Names imported on first use (PEP 562), so that ``import mix2.predict`` does not load Lightning."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mix2' has no attribute {name!r}")


__all__ = [
    "Experiment",
    "Mix2Error",
    "RunConfig",
    "aggregate_experiment",
    "default_config",
    "download",
    "embed",
    "evaluate",
    "quantize",
    "resume",
    "run_experiment",
    "train",
    "write_report",
]
__version__ = "0.1.0"
