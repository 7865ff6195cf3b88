"""Benchmarks that print figures, and the synthetic traces they (and the tests) are made from."""
