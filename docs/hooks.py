"""MkDocs hook: publishes files that live outside docs/ with the site, so that pages can link
to them and `mkdocs build --strict` checks those links like any other: the benchmarks'
results (JSON and PNG, written by the benchmarks themselves) and the viewer's screenshot."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parent.parent
# site folder -> the repository's files published there
PUBLISHED = {
    "results": sorted(p for p in (REPO / "benchmarks" / "results").iterdir() if p.suffix in (".json", ".png")),
    "images": [REPO / "viewer" / "fleet.png"],
}


def on_files(files: Files, config) -> Files:
    for folder, paths in PUBLISHED.items():
        for path in paths:
            files.append(File.generated(config, f"{folder}/{path.name}", abs_src_path=str(path)))
    return files
