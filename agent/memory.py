"""A worker's memory after a run: freeing what the run held, and reading what is left.

The reading is what the recycle policy (agent.recycle) compares with the worker's
baseline: the process's resident set and, once CUDA is initialised, the memory PyTorch's
allocator has allocated and reserved on the worker's GPU. The bytes a worker keeps warm
on purpose (trainer.memcache) are reported apart, so a full feature cache is not
mistaken for a leak.

Tests and odd platforms inject another reading function with `--memory-probe
module:function` (`agent.memory:measure` is the default).
"""

from __future__ import annotations

import gc
import os
import sys

from pydantic import BaseModel, Field

MIB = 1 << 20


class MemoryReading(BaseModel):
    """Bytes a worker process holds, read right after a run was freed.

    >>> MemoryReading(rss=3 * MIB, cached=MIB).text()
    'rss 3 MiB (1 MiB cached), cuda allocated 0 MiB, reserved 0 MiB'
    """

    rss: int = Field(description="Resident set size of the process.")
    cuda_allocated: int = Field(default=0, description="torch.cuda.memory_allocated().")
    cuda_reserved: int = Field(default=0, description="torch.cuda.memory_reserved().")
    cached: int = Field(default=0, description="Bytes in the warm caches (trainer.memcache).")

    def text(self) -> str:
        """The reading in MiB, for logs."""
        return (
            f"rss {self.rss // MIB} MiB ({self.cached // MIB} MiB cached), "
            f"cuda allocated {self.cuda_allocated // MIB} MiB, reserved {self.cuda_reserved // MIB} MiB"
        )


def free_run_memory() -> None:
    """Drop what the finished run left behind: unreachable cycles, and CUDA's cached blocks.

    What survives a full collection is long-lived (modules a run imported, the warm
    caches) or a leak the memory check will see; it is frozen out of later collections,
    which then only walk what the next run creates (a full walk of torch's and wandb's
    objects takes most of a second).
    """
    gc.collect()
    gc.freeze()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def measure() -> MemoryReading:
    """This process's memory now (RSS from /proc; CUDA only when already initialised)."""
    torch = sys.modules.get("torch")
    allocated = reserved = 0
    if torch is not None and torch.cuda.is_initialized():
        allocated, reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
    memcache = sys.modules.get("trainer.memcache")
    cached = memcache.features.held_bytes if memcache is not None else 0
    return MemoryReading(
        rss=_rss(), cuda_allocated=allocated, cuda_reserved=reserved, cached=cached
    )


def _rss() -> int:
    """Resident bytes, from /proc/self/statm (Linux); 0 where there is none."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
