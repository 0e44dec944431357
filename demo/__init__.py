"""`make demo`: Part A and Part B sweeps on real images, offline, on a CPU.

`demo.dataset` builds the digit datasets, `demo.pretrain` trains the "pretrained"
backbone on the source task, and `demo/run.sh` drives the sweeps through the CLI.
"""
