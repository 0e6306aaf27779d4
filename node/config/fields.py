"""Settings declared once: default, allowed values and a one-line doc, on a dataclass field.

Each section of config.toml is a frozen dataclass whose fields are declared
with `setting(...)`. The validation of config.toml and the commented
template `medvault init` writes are both generated from these declarations
(node.config.settings), so a setting cannot be accepted without being
documented, nor documented without being accepted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import tomlkit

T = TypeVar("T")


class ConfigError(Exception):
    """The configuration is invalid; the message names the key."""


@dataclass(frozen=True)
class Spec:
    doc: str
    low: float | None = None
    high: float | None = None
    max_length: int | None = None  # for strings
    # For settings that are not plain numbers or strings: the TOML value and
    # the key (for errors) in, the setting's value out; and back for the template.
    parse: Callable[[Any, str], Any] | None = None
    show: Callable[[Any], Any] | None = None
    example: str | None = None  # shown commented out when the default is None


def setting(
    default: Any,
    doc: str,
    *,
    low: float | None = None,
    high: float | None = None,
    max_length: int | None = None,
    parse: Callable[[Any, str], Any] | None = None,
    show: Callable[[Any], Any] | None = None,
    example: str | None = None,
) -> Any:
    """A dataclass field that is a config setting."""
    spec = Spec(doc, low, high, max_length, parse, show, example)
    return dataclasses.field(default=default, metadata={"setting": spec})


def specs(section: type) -> list[tuple[str, Any, Spec]]:
    """(name, default, spec) of every setting of a section class, in declaration order."""
    out = []
    for f in dataclasses.fields(section):
        spec = f.metadata.get("setting")
        if not isinstance(spec, Spec):
            raise TypeError(f"{section.__name__}.{f.name} is not declared with setting()")
        out.append((f.name, f.default, spec))
    return out


def parse_section(section: type[T], table: Any, name: str) -> T:
    """The section's settings from its TOML table, each checked; ConfigError names the key."""
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] must be a table")
    declared = {key: (default, spec) for key, default, spec in specs(section)}
    only(table, set(declared), f"{name}.")
    values = {key: check(value, *declared[key], f"{name}.{key}") for key, value in table.items()}
    try:
        return section(**values)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def check(value: Any, default: Any, spec: Spec, where: str) -> Any:
    if spec.parse is not None:
        return spec.parse(value, where)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        if spec.max_length is not None and len(value) > spec.max_length:
            raise ConfigError(f"{where}: at most {spec.max_length} characters")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if isinstance(default, int) and not isinstance(value, int):
        raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    low = -float("inf") if spec.low is None else spec.low
    high = float("inf") if spec.high is None else spec.high
    if not low <= value <= high:
        raise ConfigError(f"{where}: {value} is outside {spec.low}..{spec.high}")
    return float(value) if isinstance(default, float) else value


def only(table: dict[str, Any], allowed: set[str], prefix: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        names = ", ".join(prefix + key for key in unknown)
        raise ConfigError(f"unknown setting {names} (allowed: {', '.join(sorted(allowed))})")


def render_section(name: str, doc: str, values: Any) -> str:
    """`[name]`, then every setting of `values` with its doc as comments (tomlkit escapes)."""
    lines = [f"[{name}]", f"# {doc}"]
    for key, _, spec in specs(type(values)):
        lines.append("")
        lines += [f"# {line}" for line in _wrap(spec.doc)]
        value = getattr(values, key)
        if value is None:
            lines.append(f"# {key} = {spec.example or '...'}")
            continue
        shown = spec.show(value) if spec.show is not None else value
        lines.append(f"{key} = {tomlkit.item(shown).as_string()}")
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int = 78) -> list[str]:
    out, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*out, line] if line else out
