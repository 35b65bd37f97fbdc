"""The README's "What happens when things go wrong" section: every test it cites exists."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cited_tests(section: str) -> list[tuple[str, str]]:
    """``(file, test)`` for each ``test_x.py::test_y`` in ``section``; ``::test_y`` continues the last file named."""
    cited, current = [], None
    for file, name in re.findall(r"(test_\w+\.py)?::(test_\w+)", section):
        current = file or current
        cited.append((current, name))
    return cited


def test_every_test_the_failure_section_cites_exists():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## What happens when things go wrong")[1].split("\n## ")[0]
    cited = cited_tests(section)
    assert len(cited) >= 20
    for file, name in cited:
        tree = ast.parse((ROOT / "tests" / file).read_text())
        defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        assert name in defined, f"README cites {file}::{name}, which does not exist"
