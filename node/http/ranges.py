"""The one byte range of a Range header (RFC 9110 section 14), or None for the whole body.

Only single ranges are served: a header naming several is answered whole,
which the RFC allows; one that cannot be satisfied is a RangeNotSatisfiable.
"""

from __future__ import annotations


class RangeNotSatisfiable(Exception):
    """The range lies wholly past the end of the content."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive, or None: serve everything."""
    unit, _, spec = (header or "").partition("=")
    start_text, dash, end_text = spec.strip().partition("-")
    if unit.strip().lower() != "bytes" or "," in spec or not dash:
        return None
    try:
        if not start_text:  # a suffix: the last N bytes
            length = int(end_text)
            if length <= 0 or size == 0:
                raise RangeNotSatisfiable(f"bytes=-{length} of {size} bytes")
            return max(0, size - length), size - 1
        start = int(start_text)
        end = int(end_text) if end_text else size - 1
    except ValueError:
        return None  # a malformed header is ignored (RFC 9110 14.2)
    if start >= size:
        raise RangeNotSatisfiable(f"bytes={start}- of {size} bytes")
    if start < 0 or end < start:
        return None
    return start, min(end, size - 1)
