"""Prometheus metrics of one node: its own registry, the counters its services move, and
what is read from its state at scrape time (docs/monitoring.md)."""
