"""Benchmarks: plain scripts run as `python -m bench.NAME`, each measuring its own baseline."""
