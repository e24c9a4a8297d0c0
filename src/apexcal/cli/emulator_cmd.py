"""`apexcal emulator` (not built yet)."""
