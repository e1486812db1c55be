"""Benchmarks and the load generator (``make bench``); never run as tests."""
