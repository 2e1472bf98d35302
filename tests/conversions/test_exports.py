"""The CSV exports, byte for byte against tests/conversions/expected/."""

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from attribution.conversions import exports
from conversions.samples import conversion

EXPECTED = Path(__file__).parent / "expected"
UTC = dt.UTC

# Around the US DST change of 2026-03-08 (02:00 EST -> 03:00 EDT) in America/New_York.
CONVS = [
    conversion(key="1", gclid="EAIaIQobChMI-example",
               occurred_at=dt.datetime(2026, 3, 1, 18, 45, tzinfo=UTC)),
    conversion(key="2", gclid="Cj0KCQ_before", name='Call, "booked"', value=Decimal("99.995"),
               occurred_at=dt.datetime(2026, 3, 8, 6, 59, 59, tzinfo=UTC)),
    conversion(key="3", gclid="Cj0KCQ_after", value=None, msclkid="abc123",
               occurred_at=dt.datetime(2026, 3, 8, 7, 0, 0, tzinfo=UTC)),
    conversion(key="4", gclid=None, gbraid="0AAAAA-gbraid", wbraid="wbraid-ignored", msclkid=None,
               occurred_at=dt.datetime(2026, 3, 9, 0, 5, tzinfo=UTC)),
    conversion(key="5", gclid=None, gbraid=None, wbraid="wbraid_1", msclkid=None,
               occurred_at=dt.datetime(2026, 3, 9, 12, 0, tzinfo=UTC)),
    conversion(key="6", consent=False),  # no consent: never exported
    conversion(key="7", kind="retraction"),  # not a conversion
    conversion(key="8", gclid="=HYPERLINK(\"x\")", msclkid="=cmd|' /C calc'!A0"),  # not a click id
]


def expected(name: str) -> str:
    return (EXPECTED / name).read_bytes().decode("utf-8")


def test_google_files_one_per_click_id_type():
    files = exports.google_click_csvs(CONVS, "America/New_York")
    assert sorted(files) == ["gbraid", "gclid", "wbraid"]
    for kind, text in files.items():
        assert text.encode("utf-8") == (EXPECTED / f"google_{kind}.csv").read_bytes(), kind


def test_google_single_file_and_empty_file():
    assert exports.google_click_csv(CONVS, "America/New_York") == expected("google_gclid.csv")
    assert exports.google_click_csv([], "Europe/London", "wbraid") == (
        "Parameters:TimeZone=Europe/London\r\nWBRAID,Conversion Name,Conversion Time,Conversion Value,"
        "Conversion Currency\r\n")
    with pytest.raises(ValueError):
        exports.google_click_csvs(CONVS, "Mars/Olympus")


def test_microsoft_file_in_utc():
    assert exports.microsoft_offline_csv(CONVS).encode("utf-8") == (EXPECTED / "microsoft.csv").read_bytes()
