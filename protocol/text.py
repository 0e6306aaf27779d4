"""Words for people: counts with their noun in the right number."""

from __future__ import annotations


def counted(count: int, noun: str, nouns: str | None = None) -> str:
    """`1 node`, `3 nodes` (`nouns` when the plural is not noun + "s")."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"
