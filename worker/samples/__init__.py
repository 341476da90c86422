"""Sample amoCRM API v4 responses for ``python -m worker explain`` (package data)."""
