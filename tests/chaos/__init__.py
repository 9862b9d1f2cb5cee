"""Chaos suites: real processes and a real Redis, broken on purpose."""
