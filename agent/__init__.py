"""The agent: a supervisor that hands sweep runs to one worker process per GPU slot.

>>> from agent import run_agent  # run_agent("abc12345", home=Home(), gpus="0,1")
"""

from __future__ import annotations

from agent.supervisor import AgentSummary, run_agent

__all__ = ["AgentSummary", "run_agent"]
