"""The registry commands of python -m training: list, show, promote, shadow, retire, compare."""

from __future__ import annotations

import json
import sys


def registry_command(args, settings) -> int:
    """list, show, promote, shadow, retire: exit 0, or 2 with a one-line error when the
    registry cannot do it (nothing changed)."""
    from db import registry
    from db.connection import connect

    conn = connect(settings)
    try:
        if args.command == "list":
            with conn:
                rows = registry.list_versions(conn, args.name)
            print(f"{'model':<32} {'stage':<11} {'top1':>6} {'images':>7}  created")
            for mv in rows:
                top1 = mv.metrics.get("top1")
                images = mv.metrics.get("train_images", 0) + mv.metrics.get("val_images", 0)
                print(
                    f"{mv.ref:<32} {mv.stage:<11} {top1 if top1 is not None else '-':>6} {images:>7}  "
                    f"{mv.created_at:%Y-%m-%d %H:%M}"
                )
            return 0
        name, version = registry.parse_ref(args.ref)
        if args.command == "show":
            with conn:
                mv = registry.get(conn, name, version)
            print(
                json.dumps(
                    {k: (str(v) if k.endswith("_at") else v) for k, v in mv.__dict__.items()},
                    indent=2,
                    ensure_ascii=True,
                )
            )
            return 0
        if version is None:
            raise registry.RegistryError(f"{args.command} needs a version: {name}@N")
        stage = {"promote": "production", "shadow": "shadow", "retire": "retired"}[args.command]
        mv = registry.set_stage(conn, name, version, stage)
        print(f"{mv.ref} is now {mv.stage}")
        return 0
    except registry.RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        conn.close()


def compare(args, settings) -> int:
    """Agreement of the shadow version with production; exit 2 when there is nothing to compare."""
    from db.connection import in_transaction
    from training.compare import compare as agreement
    from training.compare import render

    result = in_transaction(settings, lambda conn: agreement(conn, args.name))
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0 if result.get("images") else 2
