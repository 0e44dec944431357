#!/usr/bin/env bash
# `make demo`: Part A (a CNN from scratch) and Part B (fine-tuning a pretrained resnet18)
# sweeps on real images, offline, on a CPU, then the Part A vs Part B report.
#
# Every step is the command a user would type, echoed before it runs. Generated files go
# under .sweeper/ (data and backbone under .sweeper/demo/, cached for the next run).
# The environment can shrink the budget (tests/demo/test_flow.py does):
#   DEMO_WORKDIR         folder the demo runs in (default: the repository root)
#   DEMO_SPEC_A/B        the sweep specs (default: sweeps/demo_part_{a,b}.yaml)
#   DEMO_DATA_ARGS       extra arguments for `python -m demo.dataset`
#   DEMO_PRETRAIN_ARGS   extra arguments for `python -m demo.pretrain`
#   DEMO_AGENT_ARGS      extra arguments for `sweeper agent` (e.g. --count 2)
#   PYTHON, SWEEPER      the interpreter and CLI (default: .venv/bin/python, .venv/bin/sweeper)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${DEMO_WORKDIR:-$repo}"
# The demo package is run from the checkout, whether or not it was installed.
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
# No account and no network: wandb logs offline (`wandb sync` uploads later).
export WANDB_MODE="${WANDB_MODE:-offline}" WANDB_SILENT="${WANDB_SILENT:-true}"

PYTHON="${PYTHON:-.venv/bin/python}"
SWEEPER="${SWEEPER:-.venv/bin/sweeper}"
SPEC_A="${DEMO_SPEC_A:-sweeps/demo_part_a.yaml}"
SPEC_B="${DEMO_SPEC_B:-sweeps/demo_part_b.yaml}"
read -r -a data_args <<<"${DEMO_DATA_ARGS:-}"
read -r -a pretrain_args <<<"${DEMO_PRETRAIN_ARGS:-}"
read -r -a agent_args <<<"${DEMO_AGENT_ARGS:-}"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; }
run() { show "$*"; "$@"; }
# Prints one field of the JSON object on stdin (quietly: a failed command already said why).
field() { "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1" 2>/dev/null; }

started=$SECONDS

step "1/5 Build the datasets: scikit-learn's digits and matplotlib's letters (source: digits 0-4 and A-Z, target: digits 5-9)"
run "$PYTHON" -m demo.dataset .sweeper/demo/data "${data_args[@]}"

step "2/5 Pretrain the backbone on the source task (the demo's ImageNet)"
run "$PYTHON" -m demo.pretrain --data .sweeper/demo/data --out .sweeper/demo/backbone.pt "${pretrain_args[@]}"

step "3/5 Part A: a CNN from scratch on the target task"
show "$SWEEPER create $SPEC_A --json"
sweep_a="$("$SWEEPER" create "$SPEC_A" --json | field id)"
echo "created sweep $sweep_a"
run "$SWEEPER" agent "$sweep_a" --gpus none "${agent_args[@]}"

step "4/5 Part B: fine-tune the pretrained resnet18 on the target task"
show "$SWEEPER create $SPEC_B --json"
sweep_b="$("$SWEEPER" create "$SPEC_B" --json | field id)"
echo "created sweep $sweep_b"
run "$SWEEPER" agent "$sweep_b" --gpus none "${agent_args[@]}"

step "5/5 Report: Part A vs Part B"
report_dir="${SWEEPER_HOME:-.sweeper}/reports/demo-$sweep_a-$sweep_b"
run "$SWEEPER" report "$sweep_a" "$sweep_b" -o "$report_dir"

"$PYTHON" - "$report_dir" "$((SECONDS - started))" <<'EOF'
import json
import sys
from pathlib import Path

folder = Path(sys.argv[1])
report = json.loads((folder / "report.json").read_text())


def accuracy(side: str) -> str:
    value = (report.get(side) or {}).get("test_accuracy")
    return "n/a" if value is None else f"{100 * value:.1f} %"


gap = (report.get("gap") or {}).get("test_accuracy")
print(f"\nReport: {folder / 'report.html'} (and report.md, report.json)")
print(f"Part A (CNN from scratch)      test accuracy: {accuracy('part_a')}")
print(f"Part B (fine-tuned resnet18)   test accuracy: {accuracy('part_b')}")
if gap is not None:
    print(f"Part B - Part A: {100 * gap:+.1f} points")
print(f"make demo took {sys.argv[2]} s")
EOF
