"""Every hashing vector the platforms publish (Google, Meta, Microsoft)."""

import pytest

from attribution.conversions import hashing

GOOGLE_800_HEX = "fb4f73a6ec5fdb7077d564cdd22c3554b43ce49168550c3b12c547b78c517b30"
GOOGLE_800_B64 = "+09zpuxf23B31WTN0iw1VLQ85JFoVQw7EsVHt4xRezA="
EMAIL_HEX = "509e933019bb285a134a9334b8bb679dff79d0ce023d529af4bd744d47b4fd8a"
EMAIL_B64 = "UJ6TMBm7KFoTSpM0uLtnnf950M4CPVKa9L10TUe0/Yo="


@pytest.mark.parametrize("number,region", [("+18005550100", None), ("1-800-555-0100", "US")])
def test_google_phone_vector_hex_and_base64(number, region):
    assert hashing.google_phone(number, region) == "+18005550100"
    assert hashing.google_phone_hash(number, region) == GOOGLE_800_HEX
    assert hashing.google_phone_hash(number, region, "BASE64") == GOOGLE_800_B64


@pytest.mark.parametrize("address", ["alexz@example.com", "  AlexZ@Example.COM ", "ALEXZ@EXAMPLE.COM\t"])
def test_google_email_vector_any_case_or_padding(address):
    assert hashing.google_email_hash(address) == EMAIL_HEX
    assert hashing.google_email_hash(address, "BASE64") == EMAIL_B64


def test_google_gmail_drops_dots_and_plus_suffix():
    assert hashing.google_email("A.Lex.Z+ads@GoogleMail.com") == "alexz@googlemail.com"
    assert hashing.google_email("a.lex+x@example.com") == "a.lex+x@example.com"  # only Gmail


def test_computed_google_vector():
    assert hashing.google_phone_hash("+16505550123") == (
        "4feaaadc0ff47808bdc09d5ed71dadd9ac8d92aeac7a56972c58e697a61c69f0")


def test_meta_phone_is_digits_only_and_differs_from_google():
    assert hashing.meta_phone("(650) 555-1212", "US") == "16505551212"
    assert hashing.meta_phone_hash("(650) 555-1212", "US") == (
        "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176")
    assert hashing.google_phone_hash("(650) 555-1212", "US") == (
        "1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8")
    assert hashing.meta_phone_hash("+16505550123") == (
        "26cb4f0c031f8e3956a484b9af6e06210874c4f08470f03f4f8a4d411da745ec")


def test_meta_email_trim_lowercase_only():
    assert hashing.meta_email("  AlexZ@Example.com ") == "alexz@example.com"
    assert hashing.meta_email_hash("A.lex@gmail.com") == hashing.sha256_encoded("a.lex@gmail.com")


@pytest.mark.parametrize("bad", ["12345", "+15555550100", "client:alice", ""])
def test_invalid_numbers_are_refused(bad):
    with pytest.raises(ValueError):
        hashing.google_phone_hash(bad, "US")
    with pytest.raises(ValueError):
        hashing.meta_phone_hash(bad, "US")


def test_national_number_without_region_is_refused():
    with pytest.raises(ValueError):
        hashing.e164("6505550123")


def test_unknown_encoding_is_refused():
    with pytest.raises(ValueError, match="encoding"):
        hashing.sha256_encoded("x", "hex")
