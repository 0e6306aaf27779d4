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


def configure(level: int = logging.INFO, fmt: LogFormat = "text", path: Path | None = None) -> None:
    """Send medvault's events to stderr (or the file `path`) in the chosen format."""
    handler: logging.Handler = (
        logging.StreamHandler(sys.stderr) if path is None else logging.FileHandler(path)
    )
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger(ROOT)
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
