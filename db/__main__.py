"""python -m db migrate                    create or update the schema in DATABASE_URL
python -m db recount                    recompute the viewer's running totals from the tables
python -m db create-worker-login NAME   a login in the least-privilege vs_worker role;
                                        its password is read from WORKER_DB_PASSWORD
python -m db create-viewer-login NAME   a read-only login (vs_viewer role) for the web viewer;
                                        its password is read from VIEWER_DB_PASSWORD
python -m db create-trainer-login NAME  a login for `python -m training` (vs_trainer role: reads
                                        embeddings and labels, writes the model registry);
                                        its password is read from TRAINER_DB_PASSWORD"""

from __future__ import annotations

import argparse
import os

from db.connection import connect
from db.counts import recount
from db.migrate import migrate
from db.roles import TRAINER_ROLE, VIEWER_ROLE, WORKER_ROLE, create_login
from settings import get_settings

LOGINS = {
    "create-worker-login": (WORKER_ROLE, "WORKER_DB_PASSWORD"),
    "create-viewer-login": (VIEWER_ROLE, "VIEWER_DB_PASSWORD"),
    "create-trainer-login": (TRAINER_ROLE, "TRAINER_DB_PASSWORD"),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m db", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("command", choices=["migrate", "recount", *LOGINS])
    ap.add_argument("name", nargs="?", help="login name for create-*-login")
    args = ap.parse_args(argv)
    if args.command in LOGINS:
        role, password_var = LOGINS[args.command]
        password = os.environ.get(password_var, "")
        if not args.name or not password:
            ap.error(f"{args.command} needs NAME and {password_var} in the environment")
    conn = connect(get_settings())
    try:
        if args.command == "migrate":
            applied = migrate(conn)
            print("applied: " + ", ".join(applied) if applied else "schema up to date")
        elif args.command == "recount":
            recount(conn)
            print("running totals recomputed")
        else:
            create_login(conn, args.name, password, role)
            print(f"login {args.name} is a member of {role}")
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    from common import cli

    cli.run(main)
