"""python -m db migrate — create or update the schema in DATABASE_URL."""
from __future__ import annotations

import argparse
import sys

from db.connection import connect
from db.migrate import migrate
from settings import get_settings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m db", description=__doc__)
    ap.add_argument("command", choices=["migrate"])
    ap.parse_args(argv)
    conn = connect(get_settings())
    try:
        applied = migrate(conn)
    finally:
        conn.close()
    print("applied: " + ", ".join(applied) if applied else "schema up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
