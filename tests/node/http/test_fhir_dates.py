"""FHIR dates as ranges and the search prefixes over them (FHIR R4 search.html#prefix)."""

from __future__ import annotations

import pytest

from node.http.fhir.dates import Span, instant, matches, parse_span

DAY = 86_400_000


def test_precision_decides_the_range() -> None:
    day = parse_span("2024-03-15")
    assert day is not None and day.high - day.low == DAY
    year = parse_span("2024")
    assert year is not None and year.high - year.low == 366 * DAY  # a leap year
    december = parse_span("2023-12")
    assert december is not None and december.high == parse_span("2024").low  # type: ignore[union-attr]
    second = parse_span("2024-03-15T10:30:00Z")
    assert second is not None and second.high - second.low == 1000
    zoned = parse_span("2024-03-15T12:30:00+02:00")
    assert zoned == second
    assert instant(second.low) == "2024-03-15T10:30:00Z"


@pytest.mark.parametrize("text", ["", "24", "2024-13", "2024-02-30", "2024-03-15T25:00Z", "x"])
def test_what_is_not_a_date(text: str) -> None:
    assert parse_span(text) is None


def test_prefixes() -> None:
    day = parse_span("2024-03-15")
    assert day is not None
    noon = Span(day.low + DAY // 2, day.low + DAY // 2 + 1000)
    before, after = Span(day.low - 1000, day.low), Span(day.high, day.high + 1000)
    assert matches("eq", noon, day) and not matches("eq", before, day)
    assert matches("ne", after, day) and not matches("ne", noon, day)
    assert matches("gt", after, day) and not matches("gt", noon, day)
    assert matches("lt", before, day) and not matches("lt", noon, day)
    assert matches("ge", noon, day) and matches("ge", after, day) and not matches("ge", before, day)
    assert matches("le", noon, day) and matches("le", before, day) and not matches("le", after, day)
