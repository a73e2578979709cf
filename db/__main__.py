"""python -m db migrate                    create or update the schema in DATABASE_URL
python -m db create-worker-login NAME   a login in the least-privilege vs_worker role;
                                        its password is read from WORKER_DB_PASSWORD"""
from __future__ import annotations

import argparse
import os
import sys

from db.connection import connect
from db.migrate import migrate
from db.roles import create_worker_login
from settings import get_settings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m db", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["migrate", "create-worker-login"])
    ap.add_argument("name", nargs="?", help="login name for create-worker-login")
    args = ap.parse_args(argv)
    conn = connect(get_settings())
    try:
        if args.command == "migrate":
            applied = migrate(conn)
            print("applied: " + ", ".join(applied) if applied else "schema up to date")
        else:
            password = os.environ.get("WORKER_DB_PASSWORD", "")
            if not args.name or not password:
                ap.error("create-worker-login needs NAME and WORKER_DB_PASSWORD in the environment")
            create_worker_login(conn, args.name, password)
            print(f"login {args.name} is a member of vs_worker")
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
