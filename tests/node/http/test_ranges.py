"""One byte range of a Range header, per RFC 9110."""

from __future__ import annotations

import pytest

from node.http.ranges import RangeNotSatisfiable, byte_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=90-", 100, (90, 99)),
        ("bytes=90-500", 100, (90, 99)),  # the end is clamped
        ("bytes=-10", 100, (90, 99)),
        ("bytes=-500", 100, (0, 99)),
        ("bytes=0-0", 1, (0, 0)),
        ("bytes=5-3", 100, None),  # invalid: ignored
        ("bytes=0-1,5-6", 100, None),  # several ranges: served whole
        ("items=0-9", 100, None),
        ("bytes=a-b", 100, None),
        ("bytes 0-9", 100, None),
    ],
)
def test_ranges(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert byte_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=100-", 100), ("bytes=-5", 0), ("bytes=0-", 0)]
)
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        byte_range(header, size)
