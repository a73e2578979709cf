"""The account rules, without services: names, roles, passwords and their hashes."""

import pytest

from viewer.accounts import (
    MAX_PASSWORD,
    AccountError,
    at_least,
    check_name,
    check_password,
    check_role,
    generate_password,
    hash_password,
)


@pytest.mark.parametrize("name, stored", [("Alice", "alice"), (" bob.s@site ", "bob.s@site"), ("x", "x")])
def test_names_are_stored_lower_case(name, stored):
    assert check_name(name) == stored


@pytest.mark.parametrize("name", ["", "-x", "a b", "<script>", "a" * 65, "é", "a\x00b", "a/b"])
def test_names_outside_the_rule_are_refused(name):
    with pytest.raises(AccountError, match="not allowed"):
        check_name(name)


def test_roles_are_ordered():
    assert at_least("admin", "labeller") and at_least("labeller", "labeller") and at_least("labeller", "viewer")
    assert not at_least("viewer", "labeller") and not at_least("labeller", "admin")
    with pytest.raises(AccountError, match="not one of viewer, labeller, admin"):
        check_role("root")


@pytest.mark.parametrize(
    "password, says", [("1234567", "at least 8"), ("x" * (MAX_PASSWORD + 1), "at most"), ("12345678\x00", "NUL")]
)
def test_passwords_need_8_characters_and_nothing_else(password, says):
    with pytest.raises(AccountError, match=says):
        check_password(password)
    assert check_password("aaaaaaaa") == "aaaaaaaa"  # no composition rules


def test_passwords_are_stored_as_argon2id_with_a_salt():
    first, second = hash_password("the same password"), hash_password("the same password")
    assert first.startswith("$argon2id$") and first != second and "the same password" not in first
    assert len(generate_password()) >= 16 and generate_password() != generate_password()
