"""`apexcal config` (not built yet)."""
