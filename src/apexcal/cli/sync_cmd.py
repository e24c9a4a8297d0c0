"""`apexcal sync` (not built yet)."""
