"""Run ``mix2 train`` in this process and interrupt it from inside, for ``test_resume.py``.

    python interrupted_run.py CONFIG RUN_DIR HOW N

``HOW`` is ``kill`` (SIGKILL at global step N, mid-epoch), ``sigint`` (Ctrl-C at step N),
``sigterm`` (a cluster's SIGTERM at step N) or ``kill-in-save`` (SIGKILL with the N-th
``last.ckpt`` half written). The exit status is the command's own, or -9 after SIGKILL.
"""

import os
import signal
import sys
from pathlib import Path

from lightning.pytorch.plugins.io import TorchCheckpointIO

from mix2 import training
from mix2.cli import main

SIGNALS = {"kill": signal.SIGKILL, "sigint": signal.SIGINT, "sigterm": signal.SIGTERM}


def interrupt(how: str, n: int) -> None:
    """Patch training so that it is interrupted as ``how`` says, at ``n``."""
    if how in SIGNALS:
        training_step = training.Classifier.training_step

        def interrupted_step(self, batch, batch_index):
            if self.global_step == n:
                os.kill(os.getpid(), SIGNALS[how])
            return training_step(self, batch, batch_index)

        training.Classifier.training_step = interrupted_step
    elif how == "kill-in-save":
        save_checkpoint, saves = TorchCheckpointIO.save_checkpoint, []

        def killed_while_saving(self, checkpoint, path, storage_options=None):
            save_checkpoint(self, checkpoint, path, storage_options)
            if Path(path).name == "last.ckpt.partial":
                saves.append(path)
                if len(saves) == n:
                    os.truncate(path, Path(path).stat().st_size // 2)
                    os.kill(os.getpid(), signal.SIGKILL)

        TorchCheckpointIO.save_checkpoint = killed_while_saving
    else:
        raise ValueError(f"unknown interruption {how!r}")


if __name__ == "__main__":
    config, run_dir, how, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    # A shell starts background jobs with SIGINT ignored, and children inherit that; Ctrl-C at a
    # terminal raises KeyboardInterrupt, so give this process Python's own handler back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupt(how, n)
    sys.exit(main(["train", "--config", config, "--run-dir", run_dir, "--quiet"]))
