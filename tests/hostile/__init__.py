"""Hostile-input and isolation suites."""
