"""A program run's offline folder, copied for upload with its sweep id moved to its group.

A program's script logs under WANDB_SWEEP_ID (so that a bare `wandb.init()` reads its
parameters, as under `wandb agent`), and wandb writes that id into the run record of the
run's `.wandb` file. A local sweep does not exist on W&B, and W&B refuses a run of a sweep
it does not have ("sweep ... not found", HTTP 404; wandb/wandb#8115). `sweeper sync` uploads
a copy instead: every file of the folder, the `.wandb` file with each run record's sweep id
cleared and made its group when it has none (the trainer's runs of a local sweep are
grouped the same way), every other record unchanged.

wandb 0.31 ships no writer for the `.wandb` format, so `frame` is one: LevelDB's log format
(32 KiB blocks, a 7-byte header per fragment: CRC-32 of the type byte and the data, length,
type; a block's last < 7 bytes zeroed), after wandb's 7-byte file header. Framing a file's
own records again gives back the file byte for byte (tested on files wandb-core wrote).

>>> framed = frame(b":W&B\\xe1\\xbe\\x00", [b"abc"])
>>> framed[7:].hex()
'a9209d53030001616263'
"""

from __future__ import annotations

import shutil
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

from sweeper.wandb.runfile import payloads

_BLOCK = 32 * 1024
_FRAGMENT = struct.Struct("<IHB")
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def frame(header: bytes, records: Iterable[bytes]) -> bytes:
    """`records` after the file `header`, in wandb's framing (see the module docstring)."""
    out = bytearray(header)
    for record in records:
        rest, first = record, True
        while True:
            room = _BLOCK - len(out) % _BLOCK
            if room < _FRAGMENT.size:
                out += b"\x00" * room
                continue
            chunk, rest = rest[: room - _FRAGMENT.size], rest[room - _FRAGMENT.size :]
            kind = (_FULL if first else _LAST) if not rest else (_FIRST if first else _MIDDLE)
            crc = zlib.crc32(bytes([kind]) + chunk)
            out += _FRAGMENT.pack(crc, len(chunk), kind) + chunk
            first = False
            if not rest:
                break
    return bytes(out)


def without_sweep(payload: bytes) -> bytes:
    """One record: a run record with its sweep id moved to its group, any other unchanged."""
    from wandb.proto import wandb_internal_pb2

    record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]
    record.ParseFromString(payload)
    if record.WhichOneof("record_type") != "run" or not record.run.sweep_id:
        return payload
    if not record.run.run_group:
        record.run.run_group = record.run.sweep_id
    record.run.sweep_id = ""
    return bytes(record.SerializeToString())


def copy_without_sweep(run_dir: Path, wandb_file: Path, into: Path) -> Path:
    """Copy the run folder into `into` (same folder name: wandb tells offline runs by it),
    its `.wandb` file rewritten by `without_sweep`; return the copy's `.wandb` file."""
    copy = into / run_dir.name
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("*.wandb", "*.wandb.synced"))
    with wandb_file.open("rb") as f:
        header = f.read(7)
    target = copy / wandb_file.relative_to(run_dir)
    target.write_bytes(frame(header, (without_sweep(p) for p in payloads(wandb_file))))
    return target
