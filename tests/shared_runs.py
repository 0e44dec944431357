"""End-to-end runs that the tests of one module read, started together in the background.

A slow user-story test (a `sweeper agent` on a sweep, a user's script) spends most of its
wall time waiting on its subprocesses, and one run after the other, a module's runs queue
up. Here a module lists its runs as jobs (`SHARED_RUNS`, name -> job(folder)); the
`shared_runs` fixture (tests/conftest.py) starts those that the session's selected tests
read, each in a thread of its own, at most `MAX_JOBS` at once, and a test marked
`@pytest.mark.shared_run(name)` gets what its job returned (the `shared_run` fixture),
waiting for that one only. A job that raised raises in every test that reads it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

#: Jobs running at once: each holds an agent (a supervisor and a worker) and its script,
#: or a user's script with its wandb service.
MAX_JOBS = 4

Job = Callable[[Path], Any]


class SharedRuns:
    """The jobs of one module that the selected tests read, started at once (in `jobs`' order).

    >>> runs = SharedRuns({"a": str, "b/c": str, "d": str}, ["b/c", "a"], Path)
    >>> runs.result("b/c"), sorted(runs._futures)
    ('b_c', ['a', 'b/c'])
    >>> runs.close()
    """

    def __init__(
        self, jobs: Mapping[str, Job], wanted: Iterable[str], folder: Callable[[str], Path]
    ) -> None:
        wanted = set(wanted)
        if unknown := wanted - set(jobs):
            raise KeyError(f"no shared run named {sorted(unknown)} in SHARED_RUNS")
        self._pool = ThreadPoolExecutor(MAX_JOBS, thread_name_prefix="shared-run")
        self._futures: dict[str, Future[Any]] = {
            name: self._pool.submit(job, folder(re.sub(r"\W+", "_", name)[:40]))
            for name, job in jobs.items()
            if name in wanted
        }

    def result(self, name: str) -> Any:
        """What job `name` returned, once it has; its exception if it raised."""
        return self._futures[name].result()

    def close(self) -> None:
        """Wait for the jobs that run; drop those not started (a session stopped by -x)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
