"""Request ids and their expiry, sans-IO: the caller supplies `now`.

Ids are 32-bit, allocated in sequence and never reused while outstanding,
at most `max_outstanding` at once per connection; a response to an id that
is not outstanding (unknown, or already given up) is reported as such
rather than delivered to the wrong caller. The shell (node.net.peer) waits
for each answer until the deadline the tracker set.
"""

from __future__ import annotations

from protocol.errors import LocalProtocolError
from protocol.net.messages import MAX_REQUEST_ID

DEFAULT_MAX_OUTSTANDING = 1024


class RequestTracker:
    def __init__(self, max_outstanding: int = DEFAULT_MAX_OUTSTANDING, first_id: int = 1) -> None:
        if not 1 <= first_id <= MAX_REQUEST_ID:
            raise LocalProtocolError(f"first request id must be 1..{MAX_REQUEST_ID}")
        self.max_outstanding = max_outstanding
        self._deadlines: dict[int, float] = {}
        self._next = first_id

    def __len__(self) -> int:
        return len(self._deadlines)

    def open(self, now: float, timeout: float) -> int:
        """A fresh id for a request sent at `now` that expires after `timeout`."""
        if timeout <= 0:
            raise LocalProtocolError("a request timeout must be positive")
        if len(self._deadlines) >= self.max_outstanding:
            raise LocalProtocolError(f"{self.max_outstanding} requests already outstanding")
        while self._next in self._deadlines:
            self._advance()
        request_id = self._next
        self._advance()
        self._deadlines[request_id] = now + timeout
        return request_id

    def _advance(self) -> None:
        self._next = self._next + 1 if self._next < MAX_REQUEST_ID else 1

    def deadline(self, request_id: int) -> float | None:
        """When the outstanding request `request_id` stops waiting for its answer."""
        return self._deadlines.get(request_id)

    def close(self, request_id: int) -> bool:
        """Settle a request; False when it was not outstanding (late or bogus)."""
        return self._deadlines.pop(request_id, None) is not None
