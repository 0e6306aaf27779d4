"""FHIR date, dateTime and instant values as the time ranges they stand for.

`2024` stands for the whole year, `2024-03-01` for that day, an instant for
its millisecond: a range [low, high) in ms since 1970, UTC. Search prefixes
compare ranges as FHIR R4 defines them (search.html#prefix). A value
without a time zone is taken as UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?"
)
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le")


@dataclass(frozen=True)
class Span:
    low: int  # ms, inclusive
    high: int  # ms, exclusive


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def parse_span(text: str) -> Span | None:
    """The range a FHIR date/dateTime/instant stands for; None if it is not one."""
    found = _DATE.fullmatch(text.strip())
    if found is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    try:
        offset = timedelta(0)
        if zone and zone != "Z":
            sign = -1 if zone[0] == "-" else 1
            offset = sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        start = (
            datetime(
                int(year),
                int(month or 1),
                int(day or 1),
                int(hour or 0),
                int(minute or 0),
                int(second or 0),
                int((fraction or "0")[:6].ljust(6, "0")),
                tzinfo=UTC,
            )
            - offset
        )
    except (ValueError, OverflowError):
        return None
    if fraction is not None or second is not None:
        end = start + (timedelta(milliseconds=1) if fraction else timedelta(seconds=1))
    elif minute is not None:
        end = start + timedelta(minutes=1)
    elif day is not None:
        end = start + timedelta(days=1)
    elif month is not None:
        end = datetime(int(year) + (month == "12"), int(month) % 12 + 1, 1, tzinfo=UTC)
    else:
        end = datetime(int(year) + 1, 1, 1, tzinfo=UTC)
    return Span(_ms(start), _ms(end))


def instant(ms: int) -> str:
    """A FHIR instant (UTC, seconds) for ms since 1970."""
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def matches(prefix: str, target: Span, value: Span) -> bool:
    """Whether `target` (the resource's) satisfies `prefix value` (the search's)."""
    contains = value.low <= target.low and target.high <= value.high
    if prefix == "eq":
        return contains
    if prefix == "ne":
        return not contains
    if prefix == "gt":
        return target.high > value.high
    if prefix == "lt":
        return target.low < value.low
    if prefix == "ge":
        return target.high > value.high or contains
    if prefix == "le":
        return target.low < value.low or contains
    raise ValueError(f"unknown prefix {prefix!r}")
