"""Tests of `sweeper`."""
