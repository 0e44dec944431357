"""Atomic file writes: readers see the old file or the whole new one, never half of it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def save_atomic(path: Path, payload: dict[str, Any]) -> None:
    """`torch.save` to a temp file in `path`'s folder, fsync, then rename over `path`.

    Raises OSError when the folder cannot be written (full disk, read-only, no permission).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                torch.save(payload, out)
            except RuntimeError as e:
                # torch's zip writer reports a failed write (a full disk) as its own
                # RuntimeError; callers handle the OSError underneath.
                if isinstance(e.__context__, OSError):
                    raise e.__context__ from None
                raise
            out.flush()
            # A crash after the rename must not leave a renamed but empty file behind.
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
