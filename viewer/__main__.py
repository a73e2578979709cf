"""python -m viewer [--host H] [--port P] — the web viewer (VIEWER_HOST / VIEWER_PORT).
python -m viewer create-user NAME --role viewer|labeller|admin, set-password, set-role,
disable, enable, users — its accounts (python -m viewer create-user --help).

Reads PostgreSQL (read-only sessions on the pipeline's tables; VIEWER_DATABASE_URL, else
DATABASE_URL) and S3 for the images; served by waitress, a production WSGI server. Everyone
logs in; with no account yet it serves only on a loopback address (its login page says how
to make the first one)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys

import psycopg2

from settings import get_settings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def accounts_ready(settings) -> str | None:
    """Why the viewer must not serve on a non-loopback address, or None."""
    from db import accounts

    try:
        conn = psycopg2.connect(settings.viewer_database_url or settings.database_url, connect_timeout=10)
    except psycopg2.Error as exc:
        return f"cannot check the accounts: PostgreSQL: {str(exc).strip().splitlines()[0]}"
    try:
        with conn:
            if accounts.count_enabled(conn) == 0:
                return "no accounts yet: create one with `python -m viewer create-user NAME --role admin`"
    except psycopg2.errors.UndefinedTable:
        return "the database has no accounts table: run `python -m db migrate` first"
    finally:
        conn.close()
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from viewer.users_cli import COMMANDS

    if argv and argv[0] in COMMANDS:
        from viewer.users_cli import main as users_main

        return users_main(argv)
    ap = argparse.ArgumentParser(
        prog="python -m viewer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--host", help="default: VIEWER_HOST (127.0.0.1)")
    ap.add_argument("--port", type=int, help="default: VIEWER_PORT (8080)")
    args = ap.parse_args(argv)
    settings = get_settings()
    args.host = args.host or settings.viewer_host
    args.port = settings.viewer_port if args.port is None else args.port
    if not is_loopback(args.host):
        why = accounts_ready(settings)
        if why:
            print(f"error: not serving on {args.host}: {why}", file=sys.stderr)
            return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from waitress import serve

    from viewer.app import create_app

    print(f"viewer on http://{args.host}:{args.port}/ (model {settings.model_name})", flush=True)
    serve(create_app(settings), host=args.host, port=args.port, threads=8)
    return 0


if __name__ == "__main__":
    from common import cli

    cli.run(main)
