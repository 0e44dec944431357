"""The tests that need CUDA (skipped without it); bench/gpu_check.py runs them on a GPU."""
