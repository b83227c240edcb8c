"""taskhub: run Python functions in parallel on a cluster that remembers every task."""
__version__ = "0.1.0"
