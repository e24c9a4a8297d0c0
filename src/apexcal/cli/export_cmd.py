"""`apexcal export` (not built yet)."""
