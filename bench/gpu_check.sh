#!/usr/bin/env bash
# `make gpu-check`: sweeper's GPU figures in one command, one table (bench/gpu_check.py).
#
#   bash bench/gpu_check.sh                                        # one GPU, <= 8 minutes
#   bash bench/gpu_check.sh --device cpu --images 200 --size 32    # the same parts, tiny, on a CPU
#
# Needs no network: synthetic data, random weights, wandb offline. Run from anywhere; it
# works in the repository root and keeps its data in .sweeper/gpu-check/ for the next run.
# PYTHON picks the interpreter (default: .venv/bin/python, else python3).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export WANDB_MODE="${WANDB_MODE:-offline}" WANDB_SILENT="${WANDB_SILENT:-true}"
# Nothing may reach for the network: torch hub and Hugging Face stay offline.
export HF_HUB_OFFLINE=1 TORCH_HOME="${TORCH_HOME:-$repo/.sweeper/gpu-check/torch}"

default_python=.venv/bin/python
[[ -x "$default_python" ]] || default_python=python3
exec "${PYTHON:-$default_python}" bench/gpu_check.py "$@"
