"""The viewer's accounts, sessions and record of admin actions in PostgreSQL (migration 0011).

Only SQL lives here; the rules (names, roles, passwords, hashing) are viewer/accounts.py's.
A session is stored as the SHA-256 of its token, and a lookup checks the user is enabled, so
deleting a user's session rows (logout, disable, role change) ends them on the next request.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import NamedTuple, Optional

import psycopg2.extensions

Conn = psycopg2.extensions.connection


class User(NamedTuple):
    id: int
    name: str
    role: str
    password_hash: str
    disabled: bool


class SessionUser(NamedTuple):
    name: str
    role: str


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def get_user(conn: Conn, name: str) -> Optional[User]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, name, role, password_hash, disabled_at IS NOT NULL FROM viewer_users WHERE name = %s", (name,)
        )
        row = cur.fetchone()
    return User(*row) if row else None


def list_users(conn: Conn) -> list[dict]:
    with conn.cursor() as cur:
        cur.execute("""SELECT u.name, u.role, u.disabled_at IS NOT NULL, u.created_at,
                              (SELECT max(last_seen) FROM viewer_sessions s WHERE s.user_id = u.id)
                       FROM viewer_users u ORDER BY u.name""")
        return [
            {"name": n, "role": r, "disabled": d, "created_at": c.isoformat(), "last_seen": s and s.isoformat()}
            for n, r, d, c, s in cur.fetchall()
        ]


def count_enabled(conn: Conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM viewer_users WHERE disabled_at IS NULL")
        return cur.fetchone()[0]


def insert_user(conn: Conn, name: str, role: str, password_hash: str) -> bool:
    """False when the name is taken."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO viewer_users (name, role, password_hash) VALUES (%s, %s, %s) ON CONFLICT (name) DO NOTHING",
            (name, role, password_hash),
        )
        return cur.rowcount == 1


def rehash(conn: Conn, user_id: int, password_hash: str) -> None:
    """The same password under newer hash parameters: the user's sessions go on."""
    with conn.cursor() as cur:
        cur.execute("UPDATE viewer_users SET password_hash = %s WHERE id = %s", (password_hash, user_id))


def other_admins(conn: Conn, name: str) -> int:
    """Enabled admins other than `name`, their rows locked until the transaction ends (two
    admins demoting each other at once cannot both pass)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT name FROM viewer_users WHERE role = 'admin' AND disabled_at IS NULL ORDER BY name FOR UPDATE"
        )
        return sum(1 for (n,) in cur.fetchall() if n != name)


def update_user(conn: Conn, name: str, **changes) -> bool:
    """Set role, password_hash and/or disabled; ends the user's sessions. False: no such user."""
    sets, params = [], []
    for column in ("role", "password_hash"):
        if column in changes:
            sets.append(f"{column} = %s")
            params.append(changes[column])
    if "disabled" in changes:
        sets.append("disabled_at = CASE WHEN %s THEN coalesce(disabled_at, now()) END")
        params.append(bool(changes["disabled"]))
    with conn.cursor() as cur:
        cur.execute(f"UPDATE viewer_users SET {', '.join(sets)} WHERE name = %s RETURNING id", (*params, name))
        row = cur.fetchone()
        if row:
            cur.execute("DELETE FROM viewer_sessions WHERE user_id = %s", (row[0],))
    return row is not None


def create_session(conn: Conn, user_id: int, token: str) -> None:
    with conn.cursor() as cur:
        cur.execute("INSERT INTO viewer_sessions (token_hash, user_id) VALUES (%s, %s)", (token_hash(token), user_id))


def session_user(conn: Conn, token: str, idle_s: float, max_s: float) -> Optional[SessionUser]:
    """The enabled user of a live session (seen within idle_s, younger than max_s), else None.
    last_seen is written at most once a minute, not on every request."""
    digest = token_hash(token)
    with conn.cursor() as cur:
        cur.execute(
            """SELECT u.name, u.role, s.last_seen < now() - interval '60 seconds'
               FROM viewer_sessions s JOIN viewer_users u ON u.id = s.user_id
               WHERE s.token_hash = %s AND u.disabled_at IS NULL
                 AND s.last_seen > now() - %s * interval '1 second'
                 AND s.created_at > now() - %s * interval '1 second'""",
            (digest, idle_s, max_s),
        )
        row = cur.fetchone()
        if row and row[2]:
            cur.execute("UPDATE viewer_sessions SET last_seen = now() WHERE token_hash = %s", (digest,))
    return SessionUser(row[0], row[1]) if row else None


def delete_session(conn: Conn, token: str) -> None:
    with conn.cursor() as cur:
        cur.execute("DELETE FROM viewer_sessions WHERE token_hash = %s", (token_hash(token),))


def delete_expired_sessions(conn: Conn, idle_s: float, max_s: float) -> int:
    with conn.cursor() as cur:
        cur.execute(
            """DELETE FROM viewer_sessions WHERE last_seen < now() - %s * interval '1 second'
                                              OR created_at < now() - %s * interval '1 second'""",
            (idle_s, max_s),
        )
        return cur.rowcount


def record_action(conn: Conn, actor: str, action: str, target: Optional[str] = None, **detail) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO admin_actions (actor, action, target, detail) VALUES (%s, %s, %s, %s)",
            (actor, action, target, json.dumps(detail)),
        )


def recent_actions(conn: Conn, limit: int = 50) -> list[dict]:
    with conn.cursor() as cur:
        cur.execute("SELECT at, actor, action, target, detail FROM admin_actions ORDER BY id DESC LIMIT %s", (limit,))
        return [
            {"at": at.isoformat(), "actor": actor, "action": action, "target": target, "detail": detail}
            for at, actor, action, target, detail in cur.fetchall()
        ]


def signing_secret(conn: Conn) -> bytes:
    """The viewers' shared signing key, made once by whichever viewer starts first."""
    with conn.cursor() as cur:
        cur.execute("INSERT INTO viewer_secret (secret) VALUES (%s) ON CONFLICT DO NOTHING", (os.urandom(32),))
        cur.execute("SELECT secret FROM viewer_secret")
        return bytes(cur.fetchone()[0])
