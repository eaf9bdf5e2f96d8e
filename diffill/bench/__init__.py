"""Benchmarks behind `diffill bench`."""
