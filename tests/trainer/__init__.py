"""Tests of `trainer`."""
