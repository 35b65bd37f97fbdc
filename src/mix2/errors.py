"""The one exception type users see.

Every problem with a user's input (a missing file, unreadable audio, wrong columns, an unknown
label, an empty dataset), and every run that stops early (a NaN loss, Ctrl-C, a cluster's
SIGTERM), is raised as :class:`Mix2Error` with a one-line message that names the file or run
folder and the problem. The command line prints that line alone, never a traceback, and exits
with the error's ``exit_status``.
"""

from __future__ import annotations

from pathlib import Path


class Mix2Error(Exception):
    """A problem the user can act on (input, configuration, a run that stopped early), stated in one line."""

    exit_status = 2


class TrainingInterrupted(Mix2Error):
    """Training stopped by Ctrl-C or SIGTERM; the run folder can be resumed."""

    exit_status = 130


class SettingError(Mix2Error):
    """A setting that cannot run: ``"<section>.<name> <problem>"``, e.g. ``train.lr must be a positive number, got -1.0``.

    The command line names the flag as well where the setting has one (``--lr (train.lr) ...``).
    """

    def __init__(self, section: str, name: str, problem: str) -> None:
        super().__init__(f"{section}.{name} {problem}")
        self.section, self.name, self.problem = section, name, problem


def input_error(path: str | Path, problem: str) -> Mix2Error:
    """Build the standard ``"<path>: <problem>"`` error, on one line: line breaks that the user's
    data brings into ``problem`` (a column named by a quoted newline) are shown escaped.

    Example:
        >>> str(input_error("data/annotations.csv", "missing column 'label'"))
        "data/annotations.csv: missing column 'label'"
        >>> str(input_error("labels.csv", "found a" + chr(10) + "b"))
        'labels.csv: found a\\\\nb'
    """
    one_line = problem.replace("\r", "\\r").replace("\n", "\\n")
    return Mix2Error(f"{path}: {one_line}")
