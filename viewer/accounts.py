"""Who may use the viewer, and what each may do: names, roles, passwords (argon2id), and the
account changes both the command line and the Users page make, each recorded in admin_actions.

Roles are ordered: `viewer` reads; `labeller` also labels; `admin` also trains, shadows,
promotes, rolls back and manages users. Passwords: at least 8 characters and no composition
rules (NIST SP 800-63B), at most 256 (argon2 hashes any length; a megabyte of password should
not cost a megabyte of hashing).
"""

from __future__ import annotations

import re
import secrets
from typing import Optional

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from common.errors import VisionScalingError
from db import accounts as store

ROLES = ("viewer", "labeller", "admin")
MIN_PASSWORD, MAX_PASSWORD = 8, 256
NAME_RULE = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
_hasher = PasswordHasher()  # argon2id with the library's current defaults (RFC 9106's second choice)
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))  # verified against for unknown names: same time either way


class AccountError(VisionScalingError, ValueError):
    """A name, role or password the rules refuse, or a user that does not exist."""


def check_name(name: str) -> str:
    name = name.strip().lower()
    if not NAME_RULE.fullmatch(name):
        raise AccountError(
            f"user name {name[:80]!r} is not allowed: 1-64 of a-z 0-9 . _ @ -, starting with a letter or digit"
        )
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"role {role[:40]!r} is not one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"a password has at most {MAX_PASSWORD} characters")
    if "\x00" in password:
        raise AccountError("a password cannot contain a NUL character")
    return password


def at_least(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


def generate_password() -> str:
    return secrets.token_urlsafe(12)  # 16 characters, 96 bits


def hash_password(password: str) -> str:
    return _hasher.hash(check_password(password))


def authenticate(conn, name: str, password: str) -> Optional[store.User]:
    """The enabled user with this name and password, else None (unknown names cost the same
    hashing time as known ones). A hash made with older parameters is replaced."""
    try:
        name = check_name(name)
    except AccountError:
        name = ""
    user = store.get_user(conn, name) if name else None
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password[: MAX_PASSWORD + 1])
    except (VerificationError, InvalidHashError):
        return None
    if user is None or user.disabled:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        store.rehash(conn, user.id, _hasher.hash(password))
    return user


def create_user(conn, actor: str, name: str, role: str, password: str) -> str:
    name, role = check_name(name), check_role(role)
    if not store.insert_user(conn, name, role, hash_password(password)):
        raise AccountError(f"user {name!r} exists already")
    store.record_action(conn, actor, "create user", name, role=role)
    return name


def change_user(
    conn,
    actor: str,
    name: str,
    *,
    role: Optional[str] = None,
    disabled: Optional[bool] = None,
    password: Optional[str] = None,
) -> None:
    """Change a user's role, enabled state or password; their sessions end at once."""
    name = check_name(name)
    changes: dict = {}
    if role is not None:
        changes["role"] = check_role(role)
    if disabled is not None:
        changes["disabled"] = disabled
    if password is not None:
        changes["password_hash"] = hash_password(password)
    if not changes:
        raise AccountError("nothing to change")
    user = store.get_user(conn, name)
    if user is None:
        raise AccountError(f"no user {name!r}")
    demoted = (role is not None and role != "admin") or disabled is True
    if user.role == "admin" and demoted and store.other_admins(conn, name) == 0:
        raise AccountError(f"{name} is the last enabled admin: make another admin first")
    if not store.update_user(conn, name, **changes):
        raise AccountError(f"no user {name!r}")
    for what, value in (("set role", role), ("disable" if disabled else "enable", disabled)):
        if value is not None:
            store.record_action(conn, actor, what, name, **({"role": role} if what == "set role" else {}))
    if password is not None:
        store.record_action(conn, actor, "set password", name)
