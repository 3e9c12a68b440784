import pytest

from twagent import api


@pytest.mark.parametrize(
    ("version", "older"),
    [
        ("1.8", False),
        ("1.8.0", False),
        ("1.9", False),
        ("1.10", False),
        ("2.0", False),
        ("1.7", True),
        ("1.7.99", True),
        ("0.9", True),
        ("1.8-SNAPSHOT", False),
        ("weird", False),
    ],
)
def test_api_version_compares_numerically(version, older):
    assert api.is_older(version, "1.8") is older


def test_api_version_tuple():
    assert api.version_tuple("1.10.2") == (1, 10, 2)
    assert api.version_tuple("x.1") is None
