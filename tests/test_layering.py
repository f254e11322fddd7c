"""The package's layering, read from the source tree's imports (nothing is imported): the lower layers never import
the upper ones, and no modules import each other in a cycle. The checker is shown to fail on constructed violations."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOWER = ("data", "models", "losses", "metrics", "geometry", "utils")
UPPER = ("tasks", "inference", "cli", "callbacks", "train")


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the motionlab modules it imports (``import``/``from`` statements and ``"motionlab.x"`` strings,
    which Hydra targets are), each resolved to the longest existing module name."""
    modules = {}
    for path in (root / "motionlab").rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name if name not in ("", "motionlab") else None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        names: list[str] = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("motionlab."):
                names.append(node.value)
        graph[module] = {target for name in names if name.startswith("motionlab") and (target := resolve(name)) and target != module}
    return graph


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def violations(graph: dict[str, set[str]]) -> list[str]:
    found = [f"upward import: {m} -> {t}" for m, targets in sorted(graph.items()) if layer(m) in LOWER
             for t in sorted(targets) if layer(t) in UPPER]
    # cycles: a module that reaches itself
    for start in sorted(graph):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for target in sorted(graph.get(node, ())):
                if target == start:
                    cycle = path + [start]
                    if min(cycle[:-1]) == start:  # report each cycle once, from its smallest module
                        found.append("import cycle: " + " -> ".join(cycle))
                elif target not in seen:
                    seen.add(target)
                    stack.append((target, path + [target]))
    return found


def test_the_package_is_layered_without_cycles():
    graph = import_graph(ROOT)
    assert len(graph) > 50 and "motionlab.models.builder" in graph
    assert violations(graph) == []


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "motionlab" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(("files", "expected"), [
    ({"data/clips.py": "from motionlab.tasks.animator import AnimatorTask\n", "tasks/animator.py": ""},
     "upward import: motionlab.data.clips -> motionlab.tasks.animator"),
    ({"models/net.py": "TARGET = 'motionlab.inference.run.main'\n", "inference/run.py": ""},
     "upward import: motionlab.models.net -> motionlab.inference.run"),
    ({"tasks/a.py": "import motionlab.tasks.b\n", "tasks/b.py": "from motionlab.tasks import a\n", "tasks/__init__.py": ""},
     "import cycle: motionlab.tasks.a -> motionlab.tasks.b -> motionlab.tasks.a"),
])
def test_the_check_fails_on_a_constructed_violation(tmp_path, files, expected):
    assert expected in violations(import_graph(_write(tmp_path, files)))
