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

from mix2.config import RunConfig, default_config
from mix2.data.download import download
from mix2.errors import Mix2Error
from mix2.experiment import Experiment, aggregate_experiment, run_experiment
from mix2.reporting.html import write_report
from mix2.run import evaluate, resume, train

__all__ = [
    "Experiment",
    "Mix2Error",
    "RunConfig",
    "aggregate_experiment",
    "default_config",
    "download",
    "evaluate",
    "resume",
    "run_experiment",
    "train",
    "write_report",
]
__version__ = "0.1.0"
