"""ITI-67 search parameters: parsed once (400 for what is malformed or unsupported), then
matched against each described record.

Repeated parameters are ANDed and comma-separated values ORed, as FHIR
defines. The work a query can ask for is bounded: at most MAX_PARAMS
parameters and MAX_VALUES values in all, so a flood of values costs a 400,
not a search per value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from node.http.errors import ApiError
from node.http.fhir import systems
from node.http.fhir.dates import PREFIXES, Span, matches, parse_span
from node.http.fhir.resource import Coding, Described
from protocol.control.commands import RECORD_ID_SIZE

MAX_QUERY_CHARS = 8192
MAX_PARAMS = 32
MAX_VALUES = 128
DEFAULT_COUNT = 100
MAX_COUNT = 1000
STATUSES = ("current", "superseded", "entered-in-error")
ADDRESS_HEX = 132

Test = Callable[[Described], bool]


@dataclass
class Query:
    tests: list[Test] = field(default_factory=list)
    ids: set[bytes] | None = None  # _id: only these records need describing
    count: int = DEFAULT_COUNT
    offset: int = 0

    def match(self, described: Described) -> bool:
        return all(test(described) for test in self.tests)


def bad(message: str) -> ApiError:
    return ApiError(400, "invalid", message)


def _address(value: str, name: str) -> str:
    value = value.strip().lower()
    if len(value) != ADDRESS_HEX or any(c not in "0123456789abcdef" for c in value):
        raise bad(f"{name}: a patient is her medvault address, {ADDRESS_HEX} hex digits")
    return value


def _patient(values: Sequence[str]) -> Test:
    wanted = set()
    for value in values:
        text = value.removeprefix("Patient/")
        wanted.add(_address(text, "patient"))
    return lambda d: d.patient in wanted


def _patient_identifier(values: Sequence[str]) -> Test:
    wanted = set()
    for value in values:
        system, bar, code = value.rpartition("|")
        if bar and system != systems.PATIENT_ADDRESS:
            raise bad(
                f"patient.identifier: the system here is {systems.PATIENT_ADDRESS}, not"
                f" {system[:80]!r}"
            )
        wanted.add(_address(code, "patient.identifier"))
    return lambda d: d.patient in wanted


def _token(name: str) -> Callable[[Sequence[str]], Test]:
    """type and category: system|code, code (any system), |code (none), system| (any code)."""

    def parse(values: Sequence[str]) -> Test:
        wanted: list[tuple[str | None, str | None]] = []
        for value in values:
            if not value:
                raise bad(f"{name}: an empty token")
            if "|" in value:
                system, _, code = value.partition("|")
                wanted.append((system, code or None))
            else:
                wanted.append((None, value))

        def hit(codings: tuple[Coding, ...]) -> bool:
            return any(
                (system is None or system == have_system) and (code is None or code == have_code)
                for have_system, have_code in codings
                for system, code in wanted
            )

        if name == "type":
            return lambda d: hit(d.types)
        return lambda d: hit(d.categories)

    return parse


def _status(values: Sequence[str]) -> Test:
    for value in values:
        if value not in STATUSES:
            raise bad(f"status: one of {', '.join(STATUSES)}, not {value[:40]!r}")
    wanted = set(values)
    return lambda d: d.status in wanted


def _dates(name: str) -> Callable[[Sequence[str]], Test]:
    def parse(values: Sequence[str]) -> Test:
        wanted: list[tuple[str, Span]] = []
        for value in values:
            prefix = value[:2] if value[:2] in PREFIXES else "eq"
            span = parse_span(value[2:] if value[:2] in PREFIXES else value)
            if span is None:
                raise bad(
                    f"{name}: {value[:60]!r} is not [eq|ne|gt|lt|ge|le]YYYY[-MM[-DD[Thh:mm"
                    "[:ss][Z|+hh:mm]]]]"
                )
            wanted.append((prefix, span))

        def test(described: Described) -> bool:
            target = described.date if name == "date" else described.creation
            return target is not None and any(matches(p, target, s) for p, s in wanted)

        return test

    return parse


def _ids(values: Sequence[str]) -> set[bytes]:
    found = set()
    for value in values:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = b""
        if len(raw) != RECORD_ID_SIZE:
            raise bad(f"_id: a record id is {2 * RECORD_ID_SIZE} hex digits")
        found.add(raw)
    return found


PARSERS: dict[str, Callable[[Sequence[str]], Test]] = {
    "patient": _patient,
    "patient.identifier": _patient_identifier,
    "type": _token("type"),
    "category": _token("category"),
    "status": _status,
    "date": _dates("date"),
    "creation": _dates("creation"),
}
SUPPORTED = (*PARSERS, "_id", "_count", "_offset", "_format")


def _number(value: str, name: str) -> int:
    if not value.isdigit() or len(value) > 9:
        raise bad(f"{name} must be a whole number")
    return int(value)


def parse_query(raw_query: str, items: Sequence[tuple[str, str]]) -> Query:
    """The search a query string asks for, or a 400 naming the parameter."""
    if len(raw_query) > MAX_QUERY_CHARS:
        raise bad(f"the query is over {MAX_QUERY_CHARS} characters")
    if len(items) > MAX_PARAMS:
        raise bad(f"{len(items)} search parameters, at most {MAX_PARAMS}")
    query = Query()
    values_seen = 0
    for name, value in items:
        if name not in SUPPORTED:
            kind = "modifier" if ":" in name else "parameter"
            raise bad(
                f"unsupported search {kind} {name[:60]!r} (supported: {', '.join(SUPPORTED)})"
            )
        values = value.split(",")
        values_seen += len(values)
        if values_seen > MAX_VALUES:
            raise bad(f"more than {MAX_VALUES} search values")
        if name == "_count":
            query.count = min(_number(value, name), MAX_COUNT)
        elif name == "_offset":
            query.offset = _number(value, name)
        elif name == "_format":
            if "json" not in value:
                raise ApiError(406, "not-supported", "this server answers JSON only")
        elif name == "_id":
            ids = _ids(values)
            query.ids = ids if query.ids is None else query.ids & ids
        else:
            query.tests.append(PARSERS[name](values))
    return query
