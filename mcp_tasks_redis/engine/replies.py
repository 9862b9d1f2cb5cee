"""Decoding Redis replies: the engine's clients return bytes or str, by how they were made."""

from __future__ import annotations

from typing import Any


def as_text(value: Any) -> str:
    """A reply value (bytes, str, or a number) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
