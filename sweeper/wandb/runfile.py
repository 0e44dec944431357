"""Reading the `.wandb` file wandb writes for every run (its transaction log).

wandb 0.31 writes and reads this file only in wandb-core (Go); its Python package ships no
reader, so this is one: a 7-byte header, then protobuf `Record`s (wandb's own
`wandb.proto.wandb_internal_pb2`) framed in 32 KiB blocks, LevelDB's log format. `sweeper
sync` reads each offline run's run record from it (id, group, sweep); tests read every
record to check what a run logged.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_HEADER = b":W&B"
_HEADER_SIZE = 7
_BLOCK = 32 * 1024
_RECORD_HEADER = struct.Struct("<IHB")
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def payloads(path: Path, limit: int | None = None) -> Iterator[bytes]:
    """The records' bytes, reassembled across block boundaries; stops at a torn tail.

    Args:
        limit: read at most this many records (the run record is the second).
    """
    try:
        data = path.read_bytes()
    except OSError:
        return
    if not data.startswith(_HEADER):
        return
    pos, pending, count = _HEADER_SIZE, b"", 0
    while limit is None or count < limit:
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _RECORD_HEADER.size:
            pos += left_in_block  # block trailer padding
            continue
        if pos + _RECORD_HEADER.size > len(data):
            return
        _, length, kind = _RECORD_HEADER.unpack_from(data, pos)
        pos += _RECORD_HEADER.size
        chunk = data[pos : pos + length]
        if len(chunk) < length:
            return
        pos += length
        if kind == _FULL:
            count += 1
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            count += 1
            yield pending + chunk
            pending = b""
        else:
            return


def records(path: Path, limit: int | None = None) -> Iterator[Any]:
    """The file's records as wandb's `Record` protobufs; stops at one that does not parse."""
    from wandb.proto import wandb_internal_pb2

    for payload in payloads(path, limit):
        record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]
        try:
            record.ParseFromString(payload)
        except Exception:  # a torn or foreign record: nothing after it is trusted
            return
        yield record


def run_record(path: Path) -> Any | None:
    """The run record (id, group, sweep_id, config) of a `.wandb` file, or None.

    >>> run_record(Path("/nonexistent.wandb")) is None
    True
    """
    for record in records(path, limit=64):
        if record.WhichOneof("record_type") == "run":
            return record.run
    return None
