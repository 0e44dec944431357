"""Benchmark the stores and the engine glue: claims/s with 1, 8 and 16 processes on one
store (each claim finished at once), on SQLite and on PostgreSQL side by side, and
`sweeps.next_run` latency at 50/100/200 finished runs.

    .venv/bin/python bench/claims.py [--claims 2000] [--repeats 3] [--pg URL]

PostgreSQL is a throwaway server started for the run (tests/pg_server.py, the server's
default durability settings), or the database at `--pg` (each measurement in a schema of
its own). Prints a small table and the ratios measured in this run: claims per wall
second (from the moment every claimer is ready to the last claim's end; the claimers
leave without the interpreter's teardown, as `sweeper agent` does), per CPU second of
the claiming processes, and, on the throwaway server, the server's CPU milliseconds per
claim (its processes' user + system time, the backends' counted when they exit with
their claimer). 16 processes need a few thousand claims for a steady figure: with 400
the start and the last stragglers are much of the time.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# sweeps 0.3 declares a pydantic v1 config key; pydantic 2 warns in every spawned worker.
warnings.filterwarnings("ignore", "Valid config keys have changed in V2", UserWarning)

from threadpoolctl import threadpool_limits  # noqa: E402

from sweeper import engine  # noqa: E402
from sweeper.backends.local import LocalBackend  # noqa: E402
from sweeper.models import RunState  # noqa: E402
from sweeper.paths import Home  # noqa: E402
from sweeper.spec import SweepSpec  # noqa: E402

Method = Literal["bayes", "random", "grid"]
#: Claiming processes per measurement.
PROCESSES = (1, 8, 16)
#: How long the server's backends are given to exit once their claimers have.
BACKENDS_EXIT_S = 0.5
#: How long the claimers may take to start (16 importing the engine on 2 busy cores).
START_TIMEOUT_S = 300.0

#: A continuous space, so neither the cap nor repeat handling ends the sweep early.
PARAMETERS: dict[str, Any] = {
    "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1},
    "dropout": {"distribution": "uniform", "min": 0.0, "max": 0.5},
    "batch_size": {"values": [32, 64]},
    "epochs": {"values": [5, 10]},
}


def make_spec(method: Method, run_cap: int | None = None) -> SweepSpec:
    """The benchmark's sweep spec."""
    raw: dict[str, Any] = {
        "method": method,
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": PARAMETERS,
    }
    if run_cap is not None:
        raw["run_cap"] = run_cap
    return SweepSpec(
        raw=raw,
        source="bench",
        method=method,
        metric_name="val_accuracy",
        metric_goal="maximize",
        run_cap=run_cap,
    )


def _claimer(
    home: str,
    store: str,
    sweep_id: str,
    worker: str,
    ready: Any,
    counts: Any,
    cpu: Any,
    ends: Any,
    index: int,
) -> None:
    """Claim and finish at once until the sweep is done; count the claims, the CPU
    seconds this process spent on them and when it made its last one, then leave."""
    backend = LocalBackend(Home(home, store=store))
    backend.list_sweeps()  # open the store before the clock starts
    # Import the sweep engine (sweeps, scipy, scikit-learn) before it too, as an agent's
    # supervisor does at its start: else 16 processes importing it at once on a small
    # machine are most of what the clock measures (16 s of a 20 s run with 8 processes).
    engine.propose(make_spec("random"), [])
    ready.wait()
    start = time.process_time()
    claimed = 0
    while True:
        claim = backend.claim_run(sweep_id, worker)
        if claim.run is None:
            break
        backend.finish_run(claim.run.id, worker, {})
        claimed += 1
    cpu[index] = time.process_time() - start
    counts[index] = claimed
    ends[index] = time.monotonic()
    backend.close()
    # Without the interpreter's teardown, as `sweeper agent` leaves: tearing down scipy,
    # scikit-learn and pydantic is ~0.5 s of CPU a process, which 16 claimers leaving
    # spend on the CPUs the others still claim on.
    os._exit(0)


class Rate(NamedTuple):
    """One measurement: claims per wall second, per CPU second of the claimers, and the
    database server's CPU milliseconds per claim (None where not measured)."""

    wall: float
    cpu: float
    server_ms: float | None = None


def process_cpu(pid: int) -> float:
    """CPU seconds of process `pid` and of its children that exited (Linux `/proc`)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # utime, stime, cutime, cstime: fields 14-17 of proc(5), counted from the state.
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def claims_per_second(
    processes: int,
    claims: int,
    store: Callable[[str], str],
    server_cpu: Callable[[], float] | None = None,
) -> Rate:
    """Claims (each followed by finish) per second with `processes` workers on one store,
    and per CPU second the workers spent in them; `store` gives a fresh store's URL for a
    temporary home, `server_cpu` the database server's CPU seconds so far, if known."""
    with tempfile.TemporaryDirectory() as home:
        url = store(home)
        backend = LocalBackend(Home(home, store=url))
        sweep = backend.create_sweep(make_spec("random", run_cap=claims))
        ctx = mp.get_context("spawn")
        ready = ctx.Barrier(processes + 1)
        counts = ctx.Array("i", processes)
        cpu = ctx.Array("d", processes)
        ends = ctx.Array("d", processes)
        workers = [
            ctx.Process(
                target=_claimer, args=(home, url, sweep.id, f"w{i}", ready, counts, cpu, ends, i)
            )
            for i in range(processes)
        ]
        for w in workers:
            w.start()
        try:
            ready.wait(timeout=START_TIMEOUT_S)
        except threading.BrokenBarrierError:
            for w in workers:
                w.kill()
            raise SystemExit(
                f"the claimers did not all start: exit codes {[w.exitcode for w in workers]}"
            ) from None
        server_start = server_cpu() if server_cpu else 0.0
        start = time.monotonic()
        for w in workers:
            w.join()
        # Up to the last claim (CLOCK_MONOTONIC, one clock for every process of the host).
        elapsed = max(ends[:]) - start
        if server_cpu:
            # A backend's CPU reaches the server's count once it has exited with its client.
            time.sleep(BACKENDS_EXIT_S)
        server_ms = (server_cpu() - server_start) / claims * 1000 if server_cpu else None
        if any(w.exitcode != 0 for w in workers) or sum(counts[:]) != claims:
            raise SystemExit(
                f"claim benchmark went wrong: {counts[:]} claims, exit codes {[w.exitcode for w in workers]}"
            )
        backend.close()
    return Rate(claims / elapsed, claims / sum(cpu[:]), server_ms)


def fresh_schema(url: str) -> str:
    """`url` with a new, empty schema as its search path: a fresh store in that database."""
    import uuid

    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}options=-csearch_path%3D{schema}"


def finished_runs(n: int, seed: int = 0) -> list[engine.EngineRun]:
    """`n` finished runs spread over the space, with a smooth fake val_accuracy."""
    import random

    rng = random.Random(seed)
    runs = []
    for i in range(n):
        config = {
            "lr": 10 ** rng.uniform(-5, -1),
            "dropout": rng.uniform(0, 0.5),
            "batch_size": rng.choice([32, 64]),
            "epochs": rng.choice([5, 10]),
        }
        acc = 0.8 - 0.05 * abs(config["lr"] - 1e-3) * 100 - 0.1 * abs(config["dropout"] - 0.3)
        runs.append(
            engine.EngineRun(
                id=f"run{i:05d}",
                state=RunState.finished,
                engine_config={k: {"value": v} for k, v in config.items()},
                config_key=engine.config_key(config),
                metric=acc,
            )
        )
    return runs


def next_run_ms(method: Method, n: int, repeats: int, threads: int | None) -> float:
    """Median wall time of one `sweeps.next_run` call with `n` finished runs, in ms.

    `threads` limits the BLAS/OpenMP pools as `engine.propose` does (1); None keeps the defaults.
    """
    import sweeps

    engine._sweeps()  # W&B's engine as engine.propose runs it (sweeper.engine_speed)
    spec = make_spec(method)
    runs = [engine.to_sweep_run(r, spec) for r in finished_runs(n)]
    config = {**spec.raw}
    sweeps.next_run(config, runs[:10], validate=False)  # load scipy's BLAS before limiting it
    times = []
    for _ in range(repeats):
        with threadpool_limits(limits=threads):
            start = time.perf_counter()
            sweeps.next_run(config, runs, validate=False)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    """Run both benchmarks and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--claims", type=int, default=2000, help="claims per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="next_run calls per cell (median)")
    parser.add_argument(
        "--pg", help="a PostgreSQL URL to measure on (default: a throwaway local server)"
    )
    args = parser.parse_args()

    server = None
    pg = args.pg
    pg_cpu = None
    if pg is None:
        from tests.pg_server import PgServer

        server = PgServer(durable=True)
        server.start()
        pg = server.url()
        postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
        pg_cpu = functools.partial(process_cpu, postmaster)
    try:
        stores: dict[str, Callable[[str], str]] = {
            "sqlite": lambda home: f"sqlite:///{home}/store.db",
            "postgresql": lambda home: fresh_schema(pg),
        }
        rates = {
            (name, n): claims_per_second(
                n, args.claims, store, pg_cpu if name == "postgresql" else None
            )
            for name, store in stores.items()
            for n in PROCESSES
        }
    finally:
        if server is not None:
            server.close()
    print(
        f"claims/s (claim + finish, random search, {args.claims} claims, one store), per"
        " CPU second of the claiming processes, and the server's CPU ms per claim"
    )
    print(
        f"  {'processes':>9}"
        + "".join(f"  {name:>10}  {'per CPU s':>9}" for name in stores)
        + f"  {'server ms':>9}"
    )
    for n in PROCESSES:
        server_ms = rates["postgresql", n].server_ms
        print(
            f"  {n:>9}"
            + "".join(
                f"  {rates[name, n].wall:>10.1f}  {rates[name, n].cpu:>9.1f}" for name in stores
            )
            + f"  {'-' if server_ms is None else f'{server_ms:.2f}':>9}"
        )
    for name in stores:
        ratio = rates[name, 16].wall / rates[name, 1].wall
        print(f"  ratio {name} 16 / 1 processes: {ratio:.2f}x")
    ratio = rates["postgresql", 16].wall / rates["sqlite", 16].wall
    print(f"  ratio postgresql / sqlite at 16: {ratio:.2f}x")
    print(f"  load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print()

    sizes = (50, 100, 200)
    columns: dict[str, tuple[Method, int | None]] = {
        "bayes": ("bayes", 1),
        "bayes default threads": ("bayes", None),
        "random": ("random", 1),
    }
    latency = {
        (name, n): next_run_ms(method, n, args.repeats, threads)
        for name, (method, threads) in columns.items()
        for n in sizes
    }
    print(
        f"sweeps.next_run latency, median of {args.repeats} (ms); engine.propose runs it with 1 thread"
    )
    print(f"  {'finished runs':>13}" + "".join(f"  {name:>21}" for name in columns))
    for n in sizes:
        print(f"  {n:>13}" + "".join(f"  {latency[name, n]:>21.1f}" for name in columns))
    bayes = {n: latency["bayes", n] for n in sizes}
    print(f"  ratio bayes 200 / 50 runs: {bayes[200] / bayes[50]:.2f}x")
    print(f"  ratio bayes / random at 200 runs: {bayes[200] / latency['random', 200]:.0f}x")
    print(
        "  ratio bayes default threads / 1 thread at 200 runs: "
        f"{latency['bayes default threads', 200] / bayes[200]:.2f}x"
    )


if __name__ == "__main__":
    main()
