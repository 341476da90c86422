"""Policy presets (TOML package data): read by the worker's configuration, never by sla."""
