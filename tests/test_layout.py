"""The layout's promise: imports run one way, from the command line down to configuration.

face (cli) -> the jobs (a run, an experiment, predict, report) -> training, inference and the
folders they write -> features, mixing, losses, models, data, metrics -> configuration, registry,
errors. A module may import its own layer and those below, never one above.
"""

import ast
import subprocess
import sys
from pathlib import Path

import mix2

SOURCE = Path(mix2.__file__).parent
LAYERS = [
    ["mix2.errors", "mix2.files", "mix2.heap", "mix2.registry", "mix2.config"],
    ["mix2.data", "mix2.features", "mix2.augment", "mix2.mixing", "mix2.losses", "mix2.models", "mix2.metrics",
     "mix2.distributed", "mix2.baseline"],
    ["mix2.training", "mix2.inference", "mix2.engines", "mix2.run_folder", "mix2.experiment_plan", "mix2.transfer",
     "mix2.contrastive"],
    ["mix2.run", "mix2.experiment", "mix2.predict", "mix2.reporting", "mix2.quantize", "mix2.pretrain"],
    ["mix2.cli", "mix2"],
]  # fmt: skip


def module_name(path: Path) -> str:
    parts = ("mix2", *path.relative_to(SOURCE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    """The layer of ``module``: that of the longest listed name it is, or sits inside."""
    matches = [(len(name), index) for index, names in enumerate(LAYERS) for name in names
               if module == name or module.startswith(name + ".")]  # fmt: skip
    assert matches, f"{module} is in no layer of LAYERS"
    return max(matches)[1]


def is_module(name: str) -> bool:
    path = SOURCE.joinpath(*name.split(".")[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def mix2_imports(path: Path) -> set[str]:
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # from a package, a name may be a submodule: from mix2.data import anuraset
                submodule = f"{node.module}.{alias.name}"
                imported.add(submodule if is_module(submodule) else node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    return {name for name in imported if name == "mix2" or name.startswith("mix2.")}


def test_every_module_imports_only_its_own_layer_and_those_below():
    upward = [
        f"{module_name(path)} (layer {layer(module_name(path))}) imports {name} (layer {layer(name)})"
        for path in sorted(SOURCE.rglob("*.py"))
        for name in sorted(mix2_imports(path))
        if layer(name) > layer(module_name(path))
    ]
    assert upward == []


def test_no_two_folders_or_modules_import_each_other():
    graph = {module_name(path): mix2_imports(path) for path in SOURCE.rglob("*.py")}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for name in graph.get(start, ()):
            if name == goal or (name not in seen and (seen.add(name) or reaches(name, goal, seen))):
                return True
        return False

    cycles = [module for module in graph if module != "mix2" and reaches(module, module, set())]
    assert cycles == []


def test_predict_and_the_command_line_start_without_training_or_plotting_libraries():
    # Every job of a cluster's array of predicts pays for what it imports: Lightning alone is some 200 MB.
    probe = "import sys, mix2.cli, mix2.predict; print(sorted({'lightning', 'matplotlib', 'sklearn'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
