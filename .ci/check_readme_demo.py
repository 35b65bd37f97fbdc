"""Compare the demonstration's summary that the README quotes with the one CI's main job just printed.

    python .ci/check_readme_demo.py MAIN_JOB_LOG

Prints whether they agree, and both versions where they do not. It warns rather than fails: the
same seed gives the same run on one machine, but another CPU can sum floats in another order.
"""

import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
SUMMARY_STARTS = ("kept epoch", "test macro F1", "baseline (", "the network")


def summary_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith(SUMMARY_STARTS)]


def main() -> int:
    quoted = summary_lines(README.read_text().split("**The demonstration**")[1].split("```")[1])
    printed = summary_lines(Path(sys.argv[1]).read_text())
    if quoted == printed:
        print("README's demonstration output: the same as this run's")
        return 0
    print("WARNING: README's demonstration output differs from this run's (re-measure it, or another CPU):")
    for old, new in zip(quoted, printed):
        if old != new:
            print(f"  README: {old}\n  run:    {new}")
    if len(quoted) != len(printed):
        print(f"  README quotes {len(quoted)} summary lines; the run printed {len(printed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
