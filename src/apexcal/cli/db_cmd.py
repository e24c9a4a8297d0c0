"""`apexcal db` (not built yet)."""
