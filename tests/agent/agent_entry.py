"""Runs one agent as its own process, the way `sweeper agent` will, for signal tests.

    python tests/agent/agent_entry.py SWEEP_ID '{"per_gpu": 2, ...}'

Prints the agent's output, then `SUMMARY {json}` on the last line.
"""

from __future__ import annotations

import json
import sys

from rich.console import Console

from agent import run_agent
from sweeper.paths import Home


def main() -> int:
    sweep_id, kwargs = sys.argv[1], json.loads(sys.argv[2])
    summary = run_agent(
        sweep_id, home=Home(), console=Console(force_terminal=False, width=200), **kwargs
    )
    print("SUMMARY " + summary.model_dump_json(), flush=True)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
