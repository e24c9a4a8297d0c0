"""`apexcal feed` (not built yet)."""
