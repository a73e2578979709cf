"""NAME@N references as the registry commands and consumer.classify read them: no services."""

import pytest

from db.registry import RegistryError, parse_ref


@pytest.mark.parametrize(
    "ref, expected", [("cats", ("cats", None)), ("cats@3", ("cats", 3)), ("a.b-c_1@12", ("a.b-c_1", 12))]
)
def test_a_reference_is_a_name_and_an_optional_version(ref, expected):
    assert parse_ref(ref) == expected


@pytest.mark.parametrize("ref", ["a b@1", "a b", "café@1", "abc\n@1", "-x@1", "..@1", "a/b@1", "x" * 65 + "@1"])
def test_a_reference_whose_name_no_model_can_have_is_refused(ref):
    with pytest.raises(RegistryError, match="not a model name"):
        parse_ref(ref)


BAD_VERSIONS = ["cats@x", "cats@-1", "cats@1.5", "cats@0", "cats@", "cats@²", "cats@١", "cats@１", "cats@ 1", "cats@1 "]
BAD_VERSIONS += ["cats@+1", "cats@1e3", "cats@1@2", "cats@2147483648", "cats@" + "9" * 5000]


@pytest.mark.parametrize("ref", BAD_VERSIONS)
def test_a_version_that_is_not_a_plain_number_in_range_is_refused(ref):
    with pytest.raises(RegistryError, match="not a version number"):
        parse_ref(ref)


def test_the_largest_version_postgresql_can_hold_is_still_a_version():
    assert parse_ref("cats@2147483647") == ("cats", 2147483647)
