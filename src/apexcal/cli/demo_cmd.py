"""`apexcal demo` (not built yet)."""
