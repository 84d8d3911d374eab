"""natlab: the failover harness library (one module per emulated thing)."""
