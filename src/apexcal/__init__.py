"""apexcal: calendar sync and export for the AchieveApex CRM."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    __version__: str
    USER_AGENT: str

__all__ = ["USER_AGENT", "__version__"]


def __getattr__(name: str) -> str:
    """``__version__`` and ``USER_AGENT``, read from the installed metadata on first use.

    ``importlib.metadata`` costs more to import than the interpreter takes to
    start, and most commands (``--help``, ``config check``) never need it.
    """
    if name not in ("__version__", "USER_AGENT"):
        raise AttributeError(f"module 'apexcal' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("apexcal")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        found = "0.0.0"
    globals().update(__version__=found, USER_AGENT=f"apexcal/{found}")
    return str(globals()[name])
