"""Tests of the benchmarks in bench/: their pieces, and each run tiny."""
