"""The amo-sla worker: the sync cycle, its schedule and the command line."""
