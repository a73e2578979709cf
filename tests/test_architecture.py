"""The layout is the architecture: settings -> common -> db -> (producer | consumer | viewer |
upload) with no arrows back up, no import cycles, and no torch where it is not needed.
Checked on the source (every import, lazy ones included; TYPE_CHECKING blocks excluded)."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOP = ("settings", "common", "db", "producer", "consumer", "viewer", "upload", "training")
# what each top-level part may import of the project (besides itself)
ALLOWED = {
    "settings": set(),
    "common": {"settings"},
    "db": {"settings", "common"},
    "producer": {"settings", "common", "db"},
    "consumer": {"settings", "common", "db"},
    "viewer": {"settings", "common", "db"},
    "upload": {"settings", "common", "db"},
    # training builds models for the workers with the workers' own model code and preprocessing,
    # so that what is validated is exactly what is served; the workers never import training
    "training": {"settings", "common", "db", "consumer"},
}
HEAVY = ("torch", "torchvision", "onnxruntime", "onnx")


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):  # `if TYPE_CHECKING:` blocks are for type checkers only
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            skip |= {id(n) for child in node.body for n in ast.walk(child)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    files = [
        REPO / "settings.py",
        REPO / "upload.py",
        *[p for top in TOP for p in (REPO / top).rglob("*.py") if (REPO / top).is_dir()],
    ]
    modules = {_module_name(p): p for p in files}
    graph = {}
    for name, path in modules.items():
        graph[name] = {i for i in _imports(path) if i in modules or i.split(".")[0] in HEAVY}
    return graph


GRAPH = _graph()


def test_no_part_imports_a_part_above_it_or_beside_it():
    wrong = [
        (m, i)
        for m, deps in GRAPH.items()
        for i in deps
        if i.split(".")[0] in TOP
        and i.split(".")[0] != m.split(".")[0]
        and i.split(".")[0] not in ALLOWED[m.split(".")[0]]
    ]
    assert wrong == []


def test_there_are_no_import_cycles():
    def cycle_from(start):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for dep in GRAPH.get(node, ()):
                if dep == start:
                    return path + [dep]
                if dep in GRAPH and dep not in seen:
                    seen.add(dep)
                    stack.append((dep, path + [dep]))
        return None

    cycles = [c for c in map(cycle_from, GRAPH) if c]
    assert cycles == []


@pytest.mark.parametrize(
    "module",
    [
        "viewer.app",
        "viewer.thumbnails",
        "upload",
        "producer.__main__",
        "common.imaging",
        "db.queries",
        "consumer.status",
    ],
)
def test_torch_free_parts_never_reach_torch(module):
    seen, todo, heavy = set(), [module], []
    while todo:
        m = todo.pop()
        for dep in GRAPH.get(m, ()):
            if dep.split(".")[0] in HEAVY:
                heavy.append((m, dep))
            elif dep not in seen:
                seen.add(dep)
                todo.append(dep)
    assert heavy == []


def test_pip_install_puts_no_project_module_into_site_packages(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert [n for n in names if ".dist-info/" not in n] == []


def test_benchmarks_run_as_modules_without_patching_the_import_path():
    """`python -m benchmarks.NAME` from the repository root finds the project's packages as the
    other commands do; a benchmark that edits sys.path hides an import that would fail."""
    patched = [p.name for p in (REPO / "benchmarks").glob("*.py") if "sys.path" in p.read_text()]
    assert patched == []


def test_no_test_file_marks_its_own_tier():
    """Tiers come from one rule in tests/conftest.py (the fixtures a test uses, where it lives)."""
    tiers = [f"pytest.mark.{tier}" for tier in ("integration", "e2e", "model")]
    marked = [
        str(p.relative_to(REPO))
        for p in (REPO / "tests").rglob("test_*.py")
        if any(tier in p.read_text() for tier in tiers)
    ]
    assert marked == []
