"""Provider announcements wait for the record's ledger entry (node.records.announcing)."""

from __future__ import annotations

from node.records.announcing import Announcements
from protocol.ids import record_dht_key

R1, R2, R3 = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32


def test_a_recorded_record_is_announced_at_once_an_unrecorded_one_when_recorded() -> None:
    announced: list[bytes] = []
    known: set[bytes] = {R1}
    announcements = Announcements(announced.append, known.__contains__)
    announcements.held(R1)
    announcements.held(R2)
    assert announced == [record_dht_key(R1)]
    announcements.recorded([R2])  # an entry of R2 arrived, but the state lacks it: wait
    assert announced == [record_dht_key(R1)]
    known.add(R2)
    announcements.recorded([R2, R2])
    assert announced == [record_dht_key(R1), record_dht_key(R2)]  # once
    assert len(announcements) == 0


def test_a_dropped_upload_is_never_announced() -> None:
    announced: list[bytes] = []
    announcements = Announcements(announced.append, lambda record_id: False)
    announcements.held(R1)
    announcements.forget(R1)
    announcements.recorded([R1])
    assert announced == []


def test_records_never_recorded_wait_in_a_bounded_set() -> None:
    """A member uploading records it never records: past the limit the oldest is
    announced as before the rule, and the set stays at the limit."""
    announced: list[bytes] = []
    announcements = Announcements(announced.append, lambda record_id: False, limit=2)
    for record_id in (R1, R2, R3):
        announcements.held(record_id)
    assert announced == [record_dht_key(R1)]
    assert len(announcements) == 2
    for number in range(1000):
        announcements.held(number.to_bytes(32, "big"))
    assert len(announcements) == 2
