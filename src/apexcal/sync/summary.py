"""What one cycle of one target did: :class:`CycleSummary` (logged, stored, shown by ``apexcal sync``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from apexcal.sync.apply import ObjectError

__all__ = ["CycleSummary", "ObjectError"]


@dataclass(frozen=True, kw_only=True)
class CycleSummary:
    """What one cycle of one target did."""

    target: str
    pulled: int
    created: int
    updated: int
    deleted: int
    adopted: int
    written_back: int
    skipped: int
    errors: tuple[ObjectError, ...]
    seconds: float
    cycle_id: str = ""
    caldav_requests: int = 0
    warnings: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when every object was written or is merely waiting for a re-read."""
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        """The counts as a plain mapping (the stored last summary, log fields)."""
        return {
            "pulled": self.pulled,
            "created": self.created,
            "updated": self.updated,
            "deleted": self.deleted,
            "adopted": self.adopted,
            "written_back": self.written_back,
            "skipped": self.skipped,
            "errors": len(self.errors),
            "seconds": round(self.seconds, 3),
        }

    def line(self) -> str:
        """One line for a terminal: ``name: ok created=… …``."""
        status = "ok" if self.ok else "failed"
        counts = " ".join(f"{k}={v}" for k, v in self.as_dict().items())
        first = f" first error: {self.errors[0].href}: {self.errors[0].reason}" if self.errors else ""
        if self.warnings:
            more = f" (+{len(self.warnings) - 1} more)" if len(self.warnings) > 1 else ""
            first += f" warning: {self.warnings[0]}{more}"
        return f"{self.target}: {status} {counts}{first}"
