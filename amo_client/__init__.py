"""A typed amoCRM API v4 client, and a stateful fake amoCRM that behaves like the real API."""
