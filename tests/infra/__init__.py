"""Helpers of the launcher tests: the real systems (systems.py) and ipcluster runs (clusters.py)."""
