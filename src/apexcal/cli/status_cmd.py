"""`apexcal status` (not built yet)."""
