"""Keys derived from the CRM's display names, without the API models (config validation uses them)."""

from __future__ import annotations


def type_key(name: str) -> str:
    """The ``activity_type`` key for a type's display name."""
    return "_".join(name.strip().lower().replace("-", " ").split())
