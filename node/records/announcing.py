"""When a holder announces itself as a provider of a record: once the record is recorded.

A provider announcement is a DHT lookup plus a store at the k closest nodes:
tens of RPCs. Made the moment an index completes, five holders' lookups ran
during every put, on the same cores, and delayed the writer's storage proofs
(docs/throughput.md). Until the ledger knows a record no reader can open it,
so its provider records would serve nobody: a holder announces an index it
completed for an unrecorded record when the record's entry arrives, and
never for a put that failed. The waiting set is bounded (a member may upload
records it never records): past `limit`, the oldest is announced at once, as
before this rule.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable

from protocol.ids import record_dht_key

MAX_WAITING = 4096  # records held complete but not yet recorded, waiting to be announced


class Announcements:
    def __init__(
        self,
        announce: Callable[[bytes], None],
        recorded: Callable[[bytes], bool],
        limit: int = MAX_WAITING,
    ) -> None:
        self._announce = announce  # of a DHT key
        self._recorded = recorded
        self._limit = limit
        self._waiting: collections.OrderedDict[bytes, None] = collections.OrderedDict()

    def held(self, record_id: bytes) -> None:
        """An index of the record is now complete here."""
        if self._recorded(record_id):
            self._announce(record_dht_key(record_id))
            return
        self._waiting[record_id] = None
        self._waiting.move_to_end(record_id)
        while len(self._waiting) > self._limit:
            oldest, _ = self._waiting.popitem(last=False)
            self._announce(record_dht_key(oldest))

    def recorded(self, record_ids: Iterable[bytes]) -> None:
        """The ledger accepted entries of these records: announce those waiting."""
        for record_id in record_ids:
            if record_id in self._waiting and self._recorded(record_id):
                del self._waiting[record_id]
                self._announce(record_dht_key(record_id))

    def forget(self, record_id: bytes) -> None:
        """The record's shards were deleted here (dropped, collected, tombstoned)."""
        self._waiting.pop(record_id, None)

    def __len__(self) -> int:
        return len(self._waiting)
