"""What this holder last saw of each record it holds: the read gate's evidence for repair reads.

A holder serves blocks to another holder's proof (a repair read) only while
the record needs repair as this holder itself surveyed it, lately
(protocol.records.repair.repair_read_needed); else a holder colluding with a
revoked grantee could read the record whole at any time. The views come from
this node's own surveys (each repair pass, `check`, `repair`), kept for held
records only. A view counts for `need_fresh` seconds when it shows a need (a
survey that once missed an answer does not open the record for a whole
pass); a view that shows none, or is older, makes the gate refuse and ask for
a survey if it is older than `stale_after` (at most `SURVEYS_WANTED` queued,
each record at most once per `stale_after`), which upkeep runs in the
background, so a repairer whose survey is newer than this holder's succeeds
on its retry. Audits are not served here: blocks handed out as audits would
let a holder gather k of one segment (a small record whole); audits read by
permit (node/records/upkeep.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import trio

from protocol.records.health import RecordHealth
from protocol.records.repair import repair_read_needed

SURVEYS_WANTED = 256  # records queued for a survey on a repair read's behalf


class RecordViews:
    def __init__(
        self,
        *,
        holds: Callable[[bytes], bool],
        clock: Callable[[], float],
        stale_after: float,
        need_fresh: float,
    ) -> None:
        self.holds = holds
        self.clock = clock
        self.stale_after = stale_after
        self.need_fresh = need_fresh
        self._seen: dict[bytes, tuple[float, RecordHealth]] = {}
        self._asked: dict[bytes, float] = {}  # record -> when a survey was last wanted
        self._wanted_send, self._wanted = trio.open_memory_channel[bytes](SURVEYS_WANTED)

    def note(self, health: RecordHealth) -> None:
        """A survey of a held record finished (others are not kept)."""
        if self.holds(health.record_id):
            self._seen[health.record_id] = (self.clock(), health)

    def keep_only(self, held: Collection[bytes]) -> None:
        """Forget records no longer held (called once per repair pass)."""
        for gone in [r for r in self._seen if r not in held]:
            del self._seen[gone]
        for gone in [r for r in self._asked if r not in held]:
            del self._asked[gone]

    def seen(self, record_id: bytes) -> RecordHealth | None:
        entry = self._seen.get(record_id)
        return None if entry is None else entry[1]

    def repair_read(self, record_id: bytes, asker: bytes, index: int, site: str | None) -> bool:
        """Whether the record needs repair in this holder's view of the last `need_fresh`
        seconds, `asker`'s proven `index` counted (no such view: it does not, as far as
        this holder knows)."""
        entry = self._seen.get(record_id)
        if entry is None or self.clock() - entry[0] >= self.need_fresh:
            return False
        return repair_read_needed(entry[1], asker, index, site)

    def look_again(self, record_id: bytes) -> None:
        """A repair read was refused: ask upkeep for a survey if the view is stale (at
        most once per `stale_after` per record, SURVEYS_WANTED queued)."""
        now = self.clock()
        entry = self._seen.get(record_id)
        stale = entry is None or now - entry[0] >= self.stale_after
        asked = self._asked.get(record_id)
        if stale and (asked is None or now - asked >= self.stale_after):
            try:
                self._wanted_send.send_nowait(record_id)
                self._asked[record_id] = now
            except trio.WouldBlock:
                pass  # enough queued: the next repair pass looks at every record anyway

    async def wanted(self) -> bytes:
        """The next record a repair read wants surveyed afresh (for upkeep)."""
        return await self._wanted.receive()
