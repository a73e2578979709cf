"""Timings live in the benchmarks' results files and docs/performance.md, where a new run
replaces them; the code's docstrings and comments say what and why, and name the benchmark
that measures it. A figure quoted in code goes stale with the next change to the machine or
the code, and nobody reruns a docstring."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STAGES = ("producer", "consumer", "db", "training", "viewer", "common")
TIMING = re.compile(
    r"\d[\d.,]*\s*(?:ms|µs|s|sec|seconds?|minutes?|img/s|images/s|rows/s|GET/s)\b"
    r"|\bmeasured\b(?!\s+by\b)|\bobserved\b"  # "measured by benchmarks/X.py" is the pointer wanted
    r"|\d[\d.]*\s*[x×]\s+(?:faster|slower|fp32)",
    re.IGNORECASE,
)


def _prose(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every docstring and comment of a Python file, and comment of a SQL one."""
    source = path.read_text()
    if path.suffix == ".sql":
        return [(n, line.split("--", 1)[1]) for n, line in enumerate(source.splitlines(), 1) if "--" in line]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                found.append((getattr(node, "lineno", 1), doc))
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            found.append((tok.start[0], tok.string))
    return found


FILES = sorted(p for stage in STAGES for p in (REPO / stage).rglob("*") if p.suffix in (".py", ".sql"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_docstring_or_comment_quotes_a_timing(path):
    quoted = [(line, m.group(0)) for line, text in _prose(path) for m in TIMING.finditer(text)]
    assert quoted == [], "timings belong in docs/performance.md (or benchmarks/HISTORY.md)"


def test_the_scan_sees_a_timing():
    assert TIMING.search("0.35 instead of 0.92 ms per photo")
    assert TIMING.search("307 img/s") and TIMING.search("(90 s observed)") and TIMING.search("Measured on 2 cores")
    assert not TIMING.search("measured by benchmarks/pipeline.py; figures in docs/performance.md")
    assert not TIMING.search("shorter side >= 2x the reference size, 1,024-byte keys, 60 MP")
