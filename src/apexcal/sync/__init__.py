"""Synchronisation of CRM activities to calendar targets: planning, sinks and the cycle engine."""
