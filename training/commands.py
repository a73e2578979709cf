"""The registry commands of python -m training: list, show, promote, shadow, retire, compare."""

from __future__ import annotations

import json
import sys
from typing import Optional

STAGE_OF = {"promote": "production", "shadow": "shadow", "retire": "retired"}


def registry_command(args, settings) -> int:
    """list, show, promote, shadow, retire: exit 0, or 2 with a one-line error when the
    registry cannot do it (nothing changed). A malformed NAME@N is refused before connecting."""
    from db import registry
    from db.connection import connect

    try:
        name, version = (args.name, None) if args.command == "list" else registry.parse_ref(args.ref)
        if args.command in STAGE_OF and version is None:
            raise registry.RegistryError(f"{args.command} needs a version: {name}@N")
        conn = connect(settings)
        try:
            if args.command == "list":
                _list(conn, name)
            elif args.command == "show":
                _show(conn, name, version)
            else:
                mv = registry.set_stage(conn, name, version, STAGE_OF[args.command])
                print(f"{mv.ref} is now {mv.stage}")
        finally:
            conn.close()
        return 0
    except registry.RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _list(conn, name: Optional[str]) -> None:
    """A table of every version (of `name`, or of all names) and its stage."""
    from db import registry

    with conn:
        rows = registry.list_versions(conn, name)
    print(f"{'model':<32} {'stage':<11} {'top1':>6} {'images':>7}  created")
    for mv in rows:
        top1 = mv.metrics.get("top1")
        images = mv.metrics.get("train_images", 0) + mv.metrics.get("val_images", 0)
        print(
            f"{mv.ref:<32} {mv.stage:<11} {top1 if top1 is not None else '-':>6} {images:>7}  "
            f"{mv.created_at:%Y-%m-%d %H:%M}"
        )


def _show(conn, name: str, version: Optional[int]) -> None:
    """One version's registry row as JSON (no version: production, else the latest)."""
    from db import registry

    with conn:
        mv = registry.get(conn, name, version)
    print(json.dumps({k: (str(v) if k.endswith("_at") else v) for k, v in mv.__dict__.items()}, indent=2))


def compare(args, settings) -> int:
    """Agreement of the shadow version with production; exit 2 when there is nothing to compare."""
    from db.connection import in_transaction
    from training.compare import compare as agreement
    from training.compare import render

    result = in_transaction(settings, lambda conn: agreement(conn, args.name))
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0 if result.get("images") else 2
