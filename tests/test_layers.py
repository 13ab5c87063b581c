"""Imports point one way: the layering rules, read from the source's imports.

Layers, from the bottom: the top-level helpers (``lopt.atomic``,
``lopt.serialise``, ``lopt.summary``, ...), then ``envs`` and ``optim``, ``rl``,
``meta``, ``configs``, ``runs``, ``analysis``, ``studies`` (the paper's
experiments, imported by the command line alone), and the command line on top.
Optional suites are imported inside functions only, so ``import lopt`` never
needs them.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lopt"

#: package -> the packages it must not import.
FORBIDDEN = {
    # Multi-process mechanics serve any population code and know none of it.
    "distributed": {
        "optim",
        "envs",
        "rl",
        "meta",
        "configs",
        "runs",
        "analysis",
        "cli",
        "studies",
    },
    "optim": {"rl", "envs", "meta", "runs", "analysis", "cli", "configs", "studies"},
    "envs": {"optim", "rl", "meta", "runs", "analysis", "cli", "configs", "studies"},
    "rl": {"meta", "runs", "analysis", "cli", "configs", "studies"},
    "meta": {"runs", "analysis", "cli", "configs", "studies"},
    "configs": {"runs", "analysis", "cli", "studies"},
    "runs": {"analysis", "cli", "studies"},
    "analysis": {"cli", "studies"},
    "studies": {"cli"},
}
#: package -> the only layers (besides itself) that may import it.
ONLY_IMPORTED_BY = {"studies": {"cli"}}
#: Optional suites and tools: imported inside functions only.
OPTIONAL = {
    "brax",
    "craftax",
    "ale_py",
    "wandb",
    "torch",
    "tensorboardX",
    "gymnasium",
    "mujoco",
    "mujoco_playground",
}
#: Modules that are an optional suite's own entry point (``import lopt.torch``
#: asks for torch); nothing else may import them at module level.
OPTIONAL_ENTRY = {"torch"}


def unit(module: str) -> str:
    """The layer a module belongs to: its package under lopt (``rl``), or itself
    for a top-level module (``atomic``, ``cli``)."""
    return module.split(".")[1] if module.count(".") >= 1 else module


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_imports(root: Path) -> list[tuple[str, str, bool]]:
    """``(importer, imported, at_module_level)`` for every import under ``root``
    (a package directory); relative imports are resolved."""
    found = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        tree = ast.parse(path.read_text(), filename=str(path))
        top_level = {id(node) for node in tree.body}
        # Imports under `if` at module level (TYPE_CHECKING) count as module level.
        for node in tree.body:
            if isinstance(node, ast.If):
                top_level |= {id(n) for n in ast.walk(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".")
                    package = base if path.name == "__init__.py" else base[:-1]
                    prefix = ".".join(package[: len(package) - node.level + 1])
                    names = [f"{prefix}.{node.module}" if node.module else prefix]
                else:
                    names = [node.module or ""]
            else:
                continue
            for name in names:
                found.append((module, name, id(node) in top_level))
    return found


def violations(root: Path) -> list[str]:
    """Every broken rule under ``root``, as a sentence."""
    package = root.name
    problems = []
    edges = set()
    for importer, imported, module_level in read_imports(root):
        first = imported.split(".")[0]
        if first in OPTIONAL and module_level and unit(importer) not in OPTIONAL_ENTRY:
            problems.append(f"{importer} imports {imported} at module level")
        if first != package:
            continue
        source, target = unit(importer), unit(imported)
        if target in FORBIDDEN.get(source, ()):
            problems.append(f"{importer} imports {imported} ({source} -> {target})")
        elif target in ONLY_IMPORTED_BY and source not in (
            ONLY_IMPORTED_BY[target] | {target}
        ):
            problems.append(
                f"{importer} imports {imported} ({source} -> {target}: only "
                f"{', '.join(sorted(ONLY_IMPORTED_BY[target]))} may)"
            )
        if target in OPTIONAL_ENTRY and module_level and source != target:
            problems.append(f"{importer} imports the optional {imported}")
        if source != target:
            edges.add((source, target))
    nodes = {n for edge in edges for n in edge}
    reach = {n: {t for s, t in edges if s == n} for n in nodes}
    for _ in nodes:  # transitive closure
        for n in nodes:
            reach[n] |= set().union(*(reach[m] for m in reach[n]))
    for a, b in itertools.combinations(sorted(nodes), 2):
        if b in reach[a] and a in reach[b]:
            problems.append(f"a cycle between {a} and {b}")
    return problems


def test_lopt_keeps_its_layers():
    assert violations(SRC) == []


def _fake_package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "lopt"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"optim/a.py": "from lopt.rl import ppo\n"}, "optim -> rl"),
        ({"rl/a.py": "import lopt.meta.loop\n"}, "rl -> meta"),
        ({"meta/a.py": "from ..runs import records\n"}, "meta -> runs"),
        ({"runs/a.py": "from lopt.analysis.stats import iqm\n"}, "runs -> analysis"),
        ({"analysis/a.py": "from lopt.studies import claims\n"}, "analysis -> studies"),
        ({"summary.py": "import lopt.studies.common\n"}, "summary -> studies: only"),
        ({"studies/a.py": "from lopt.cli import main\n"}, "studies -> cli"),
        ({"envs/a.py": "import brax\n"}, "imports brax at module level"),
        (
            {
                "rl/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                "    import torch\n"
            },
            "imports torch at module level",
        ),
        (
            {"x/a.py": "import lopt.y.b\n", "y/b.py": "import lopt.x.a\n"},
            "a cycle between x and y",
        ),
    ],
)
def test_a_broken_rule_is_found(tmp_path, files, expected):
    found = violations(_fake_package(tmp_path, files))
    assert any(expected in v for v in found), found


def test_imports_inside_functions_are_allowed(tmp_path):
    root = _fake_package(
        tmp_path,
        {"envs/a.py": "def make():\n    import brax\n    return brax\n"},
    )
    assert violations(root) == []
