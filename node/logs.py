"""One line per event, as text or JSON.

Callers log an event name and explicit fields via `event(...)`; nothing is
formatted from arbitrary objects, which keeps keys and plaintext out by
construction (public keys are shortened, secrets never passed).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

LogFormat = Literal["text", "json"]
ROOT = "medvault"


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"{ROOT}.{name}")


def event(logger: logging.Logger, level: int, name: str, **fields: Any) -> None:
    """Log `name` with `fields` (simple values only)."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})


class RateLimitedLog:
    """An offence repeated a million times is logged once per `period` per reason (and
    per `who`, when given: one noisy peer does not mask another), with how many were
    not logged since: a flood must not flood the log too."""

    MAX_REASONS = 256

    def __init__(
        self,
        logger: logging.Logger,
        name: str,
        *,
        period: float,
        level: int = logging.WARNING,
        clock: Any = time.monotonic,
    ) -> None:
        self.logger = logger
        self.name = name
        self.period = period
        self.level = level
        self.clock = clock
        self._last: dict[str, tuple[float, int]] = {}  # reason -> (logged at, suppressed)

    def note(self, reason: str, who: str = "", **fields: Any) -> bool:
        """Log `reason` unless it was logged within the period; True when logged."""
        now = self.clock()
        key = f"{reason}\0{who}"
        last = self._last.get(key)
        if last is not None and now - last[0] < self.period:
            self._last[key] = (last[0], last[1] + 1)
            return False
        if last is None and len(self._last) >= self.MAX_REASONS:
            self._last.clear()  # reasons seen long ago go; at worst a line more
        suppressed = last[1] if last is not None else 0
        self._last[key] = (now, 0)
        if who:
            fields = {"peer": who, **fields}
        event(self.logger, self.level, self.name, reason=reason, suppressed=suppressed, **fields)
        return True


def short_key(public_key: bytes) -> str:
    """How a peer's public key appears in logs."""
    return public_key.hex()[:16]


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields = getattr(record, "fields", {})
        rest = " ".join(f"{k}={_text(v)}" for k, v in fields.items())
        line = f"{stamp}Z {record.levelname} {record.name.removeprefix(ROOT + '.')}: {record.msg}"
        line = f"{line} {rest}" if rest else line
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name.removeprefix(ROOT + "."),
            "event": str(record.msg),
        }
        payload.update(getattr(record, "fields", {}))
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def _text(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


@dataclass(frozen=True)
class LoggedEvent:
    """One event as the status page shows it: wall time, level, logger, name, fields."""

    created: float
    level: str
    logger: str
    name: str
    fields: tuple[tuple[str, str], ...]


class RecentEvents(logging.Handler):
    """The last `size` events of WARNING and above, in memory, for the status page: an
    operator sees what went wrong lately without shell access to the log. Bounded (a
    flood of warnings keeps the newest), and it keeps only what `event` was given, each
    value cut to MAX_VALUE characters, so it holds nothing the log itself would not."""

    MAX_VALUE = 200
    MAX_FIELDS = 16

    def __init__(self, size: int = 50) -> None:
        super().__init__(logging.WARNING)
        self._events: deque[LoggedEvent] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", {})
        shown = tuple(
            (str(key), str(value)[: self.MAX_VALUE])
            for key, value in list(fields.items())[: self.MAX_FIELDS]
        )
        self._events.append(
            LoggedEvent(
                created=record.created,
                level=record.levelname,
                logger=record.name.removeprefix(ROOT + "."),
                name=str(record.msg)[: self.MAX_VALUE],
                fields=shown,
            )
        )

    def events(self) -> list[LoggedEvent]:
        """The kept events, newest first."""
        return list(reversed(self._events))


_recent = RecentEvents()


def recent_warnings() -> RecentEvents:
    """The process's ring of recent warnings, attached to the medvault logger (once)."""
    root = logging.getLogger(ROOT)
    if _recent not in root.handlers:
        root.addHandler(_recent)
    return _recent


def configure(level: int = logging.INFO, fmt: LogFormat = "text", path: Path | None = None) -> None:
    """Send medvault's events to stderr (or the file `path`) in the chosen format."""
    handler: logging.Handler = (
        logging.StreamHandler(sys.stderr) if path is None else logging.FileHandler(path)
    )
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger(ROOT)
    root.handlers[:] = [handler, *(h for h in root.handlers if h is _recent)]
    root.setLevel(level)
    root.propagate = False
