"""apexcal: calendar sync and export for the AchieveApex CRM."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("apexcal")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

USER_AGENT = f"apexcal/{__version__}"

__all__ = ["USER_AGENT", "__version__"]
