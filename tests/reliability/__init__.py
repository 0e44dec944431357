"""Reliability tests: faults, load, bad input, security."""
