"""What every `medvault` verb shares: --data-dir, --json, one-line errors, reports."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, Protocol, TypeVar

import click
import trio

from node.config.datadir import ENV_HOME, DataDir, DataDirError, default_data_dir
from node.config.fields import ConfigError
from node.config.keyfiles import KeyFileError
from node.control.client import ControlFailed, DaemonNotRunning
from node.http.start_error import HttpStartError
from node.http.tokens import TokenError
from protocol.membership.certificate import CertificateError
from protocol.membership.revocation import RevocationError
from storage.errors import StorageError
from storage.store.ledger_db import LedgerDBError

F = TypeVar("F", bound=Callable[..., Any])

# Errors an operator can act on: one line on stderr, exit 1 (a bug still shows its traceback).
OPERATOR_ERRORS = (
    ControlFailed,
    DaemonNotRunning,
    DataDirError,
    KeyFileError,
    ConfigError,
    StorageError,
    LedgerDBError,
    CertificateError,
    RevocationError,
    HttpStartError,
    TokenError,
    OSError,
)


# Exit codes every verb shares (click's own: 1 for an error, 2 for bad usage).
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DEGRADED = 3  # a put was recorded, but below n holders or too much on one site
EXIT_UNREADABLE = 4  # check found a record that cannot be read now


DATA_DIR_HELP = f"Node data directory (default: ${ENV_HOME} or ~/.medvault)."


def _from_group(func: F, name: str) -> F:
    """The option `name` as given to the verb, else as given before it (`medvault
    --data-dir X status` works like `medvault status --data-dir X`)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not kwargs.get(name):
            context = click.get_current_context(silent=True)
            root = context.find_root() if context is not None else None
            if root is not None and root.params.get(name):
                kwargs[name] = root.params[name]
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def data_dir_option(func: F) -> F:
    """`--data-dir DIR` (here or before the verb), else $MEDVAULT_HOME, else ~/.medvault."""
    option = click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=DATA_DIR_HELP,
    )
    return option(_from_group(func, "data_dir"))


def json_option(func: F) -> F:
    """`--json`, here or before the verb."""
    option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    return option(_from_group(func, "as_json"))


_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def byte_size(text: str) -> int:
    """Bytes written 1500, 64K, 500M, 2G or 1T (binary units)."""
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = value[-1:] if value[-1:] in _UNITS and value[-1:] else ""
    number = value[: len(value) - len(unit)]
    if not number.isdigit():
        raise click.BadParameter(f"{text!r} is not a size (1500, 64K, 500M, 2G, 1T)")
    return int(number) * _UNITS[unit]


_NAMED_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    r"""`text` safe for a terminal: non-printable characters (controls, ANSI escapes,
    bidi overrides) as \n, \xNN, \uNNNN or \UNNNNNNNN and a backslash as two, so text
    chosen by someone else can neither forge output lines nor drive the terminal."""
    return "".join(char if char.isprintable() and char != "\\" else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def operator_errors(func: F) -> F:
    """Turn the errors an operator can fix into one line on stderr and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BrokenPipeError:
            reader_went_away()
        except OPERATOR_ERRORS as exc:
            raise click.ClickException(str(exc)) from None
        except BaseExceptionGroup as group:  # a failure inside the daemon's nurseries
            found = operator_error_in(group)
            if found is None:
                raise
            raise click.ClickException(str(found)) from None

    return wrapper  # type: ignore[return-value]


def reader_went_away() -> NoReturn:
    """stdout's reader left (`medvault status | head -1`): not an error. Point stdout
    at /dev/null so the interpreter's last flush fails quietly too, and exit 0."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(0)


def operator_error_in(group: BaseExceptionGroup) -> Exception | None:
    """The operator error that ended a task group (what else ended is cancellation)."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        current = pending.pop()
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        elif not isinstance(current, trio.Cancelled):
            leaves.append(current)
    if len(leaves) == 1 and isinstance(leaves[0], OPERATOR_ERRORS):
        return leaves[0]
    return None


def common(func: F) -> F:
    """--data-dir, --json and one-line operator errors."""
    return data_dir_option(json_option(operator_errors(func)))


def open_data_dir(path: Path | None) -> DataDir:
    return DataDir(path or default_data_dir())


class Report(Protocol):
    @property
    def ok(self) -> bool: ...

    def lines(self) -> list[str]: ...


def print_report(report: Report, as_json: bool) -> None:
    """A demo's report as text lines or one JSON object; exit 1 unless it showed what it should."""
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(report) | {"ok": report.ok}))  # type: ignore[call-overload]
    else:
        for line in report.lines():
            click.echo(line)
    if not report.ok:
        sys.exit(1)
