"""python -m viewer create-user|set-password|set-role|disable|enable|users — the viewer's
accounts from the command line (the Users page does the same in the browser).

A password is never an argument (it would sit in the shell's history and `ps`): it is read
from VIEWER_PASSWORD, else asked for twice at the prompt; `--generate` makes one and prints it
once. Every change is recorded in admin_actions as `cli:<OS user>`.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

import psycopg2

from db import accounts as store
from db.connection import connect
from settings import get_settings
from viewer.accounts import ROLES, AccountError, change_user, check_name, create_user, generate_password

COMMANDS = ("create-user", "set-password", "set-role", "disable", "enable", "users")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m viewer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-user", help="a new account")
    create.add_argument("name")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--generate", action="store_true", help="make a password and print it once")
    create.add_argument(
        "--if-no-accounts", action="store_true", help="only if no enabled account exists (a deployment's first admin)"
    )
    password = sub.add_parser("set-password", help="a new password (the user's sessions end)")
    password.add_argument("name")
    password.add_argument("--generate", action="store_true", help="make a password and print it once")
    role = sub.add_parser("set-role", help="another role (the user's sessions end)")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)
    for verb in ("disable", "enable"):
        sub.add_parser(
            verb, help=f"{verb} an account" + (" (its sessions end)" if verb == "disable" else "")
        ).add_argument("name")
    sub.add_parser("users", help="list the accounts")
    return ap


def read_password(generate: bool) -> tuple[str, bool]:
    """(password, shown): from --generate, VIEWER_PASSWORD, or the prompt."""
    if generate:
        return generate_password(), True
    if os.environ.get("VIEWER_PASSWORD"):
        return os.environ["VIEWER_PASSWORD"], False
    if not sys.stdin.isatty():
        raise AccountError("no password: set VIEWER_PASSWORD, use --generate, or run this in a terminal")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise AccountError("the two passwords differ")
    return first, False


def run(args: argparse.Namespace) -> str:
    actor = "cli:" + getpass.getuser()
    if getattr(args, "name", None) is not None:
        args.name = check_name(args.name)  # before a password is asked for
    password, shown = (None, False)
    if args.command in ("create-user", "set-password"):
        password, shown = read_password(args.generate)
    conn = connect(get_settings())
    try:
        with conn:
            if args.command == "users":
                users = store.list_users(conn)
                return (
                    "\n".join(f"{u['name']}\t{u['role']}\t{'disabled' if u['disabled'] else 'active'}" for u in users)
                    or "no accounts yet"
                )
            if args.command == "create-user" and args.if_no_accounts and store.count_enabled(conn):
                return f"accounts exist already: {args.name} not created"
            if args.command == "create-user":
                name = create_user(conn, actor, args.name, args.role, password)
                message = f"created {name} ({args.role})"
            elif args.command == "set-password":
                change_user(conn, actor, args.name, password=password)
                message = f"new password for {args.name}; its sessions ended"
            elif args.command == "set-role":
                change_user(conn, actor, args.name, role=args.role)
                message = f"{args.name} is now {args.role}; its sessions ended"
            else:
                change_user(conn, actor, args.name, disabled=args.command == "disable")
                message = f"{args.name} {args.command}d"
    finally:
        conn.close()
    return message + (f"\npassword (shown once): {password}" if shown else "")


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        print(run(args))
    except AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except psycopg2.errors.UndefinedTable:
        print("error: the database has no accounts table: run `python -m db migrate` first", file=sys.stderr)
        return 2
    except psycopg2.Error as exc:
        print(f"error: PostgreSQL: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, EOFError):
        print("error: cancelled", file=sys.stderr)
        return 1
    return 0
