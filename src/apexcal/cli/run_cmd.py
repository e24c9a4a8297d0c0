"""`apexcal run` (not built yet)."""
