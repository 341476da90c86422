"""The worker's settings, read once at start-up from environment variables and an optional .env."""
