"""The AchieveApex API side: models, query encoding and the HTTP client."""
