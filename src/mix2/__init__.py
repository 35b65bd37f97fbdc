"""mix2: multi-label animal-sound classifiers that hold up on rare species.

Example:
    >>> import mix2
    >>> run_dir = mix2.train(mix2.default_config("chorus"))  # doctest: +SKIP
    >>> mix2.evaluate(run_dir)["groups"]  # doctest: +SKIP
"""

from mix2.config import RunConfig, default_config
from mix2.errors import Mix2Error
from mix2.jobs import evaluate, train

__all__ = ["Mix2Error", "RunConfig", "default_config", "evaluate", "train"]
__version__ = "0.1.0"
