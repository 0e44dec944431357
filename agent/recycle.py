"""When a slot's worker process is replaced by a fresh one: the one place that decides.

A worker trains run after run in one process (imports, CUDA context and warm caches are
paid once), the way Ray Tune's `reuse_actors` keeps a trial's actor. A fresh process is
owed when:

- the agent runs with `--fresh-process`, or the trainer function opts out of reuse
  (`reusable = False` on the function; see agent.worker);
- the worker has trained `max_runs` runs;
- its last run did not end cleanly (failed, OOM, crashed, interrupted): whatever the run
  left in the process is not trusted;
- its memory after the run (RSS less the warm caches, CUDA allocated, CUDA reserved) grew
  past `max_growth_mb` above its baseline, the reading after its first run (when the warm
  caches, CUDA context and allocator pools have been built);
- the next run asks for another device (`device: cpu` after `cuda`).

The supervisor asks `reason` after every run and after every claim, and logs the answer.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from agent.memory import MIB, MemoryReading

#: Run states after which a worker process is kept.
CLEAN_ENDS = ("finished", "stopped")


class WorkerFacts(BaseModel):
    """What the supervisor knows about one worker process."""

    reusable: bool = Field(description="The trainer function allows runs back to back.")
    runs: int = Field(default=0, description="Runs handed to this process so far.")
    last_run: str | None = None
    last_state: str | None = Field(default=None, description="How its last run ended.")
    baseline: MemoryReading | None = None
    memory: MemoryReading | None = Field(default=None, description="Reading after its last run.")
    device: str | None = Field(default=None, description="The `device` its runs asked for.")


class RecyclePolicy(BaseModel):
    """Decides when a worker process must make way for a fresh one.

    >>> policy = RecyclePolicy(max_runs=2)
    >>> policy.reason(WorkerFacts(reusable=True, runs=1, last_run="r1", last_state="finished"))
    >>> policy.reason(WorkerFacts(reusable=True, runs=2, last_run="r2", last_state="finished"))
    'trained 2 runs, the most per process'
    >>> policy.reason(WorkerFacts(reusable=True, runs=1, last_run="r1", last_state="failed"))
    'run r1 failed'
    """

    fresh_process: bool = Field(default=False, description="One process per run (--fresh-process).")
    max_runs: int = Field(default=50, ge=1, description="Runs per process at most.")
    max_growth_mb: float = Field(
        default=1024.0, gt=0, description="Memory growth over the baseline that retires a process."
    )

    def reason(self, facts: WorkerFacts, next_device: str | None = None) -> str | None:
        """Why the worker must not take another run (its next being on `next_device`), or None."""
        if self.fresh_process:
            return "a fresh process per run (--fresh-process)"
        if not facts.reusable:
            return "the trainer function opts out of reuse (reusable = False)"
        if facts.last_state is not None and facts.last_state not in CLEAN_ENDS:
            return f"run {facts.last_run} {facts.last_state}"
        if facts.runs >= self.max_runs:
            return f"trained {facts.runs} runs, the most per process"
        grown = self._growth(facts.baseline, facts.memory)
        if grown is not None:
            return grown
        if next_device is not None and facts.device is not None and next_device != facts.device:
            return f"the next run needs device {next_device!r}, this process used {facts.device!r}"
        return None

    def due_after_current(self, facts: WorkerFacts) -> bool:
        """Whether a fresh process is owed after the run the worker trains now, should it end
        cleanly with no growth: then a spare is worth starting during that run."""
        clean = facts.model_copy(update={"last_state": "finished", "memory": facts.baseline})
        return self.reason(clean) is not None

    def _growth(self, baseline: MemoryReading | None, now: MemoryReading | None) -> str | None:
        if baseline is None or now is None:
            return None
        limit = self.max_growth_mb * MIB
        grown = {
            "RSS": (now.rss - now.cached) - (baseline.rss - baseline.cached),
            "CUDA allocated": now.cuda_allocated - baseline.cuda_allocated,
            "CUDA reserved": now.cuda_reserved - baseline.cuda_reserved,
        }
        for what, delta in grown.items():
            if delta > limit:
                return (
                    f"{what} grew {delta / MIB:.0f} MiB over its baseline "
                    f"(limit {self.max_growth_mb:g} MiB)"
                )
        return None
