"""Gathering: read sweeps, runs and the baseline from a backend into plain `ReportData`.

This is the only module of `reports` that talks to a backend; everything after it
(analysis, plots, writers) works on `ReportData`, so it can be tested and reused on
sweeps built by hand.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sweeper.backends.base import Backend
from sweeper.errors import NotFoundError, SweeperError, did_you_mean
from sweeper.models import Run, Sweep

#: Suffix that marks a `--baseline` value as a file even when it does not exist.
_BASELINE_FILE_SUFFIX = ".json"


class Reference(BaseModel):
    """Published numbers to compare with, read from a `--baseline FILE` (JSON).

    Accuracies are fractions in [0, 1], like every accuracy sweeper reports.

    >>> Reference(name="Published Part B", test_accuracy=0.78).val_accuracy is None
    True
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="Reference", description="Column title in the report.")
    val_accuracy: float | None = Field(default=None, ge=0.0, le=1.0)
    test_accuracy: float | None = Field(default=None, ge=0.0, le=1.0)
    epochs: int | None = Field(default=None, ge=0)
    wall_seconds: float | None = Field(default=None, ge=0.0)
    trainable_params: int | None = Field(default=None, ge=0)
    total_params: int | None = Field(default=None, ge=0)
    images_per_second: float | None = Field(default=None, ge=0.0)
    source: str | None = Field(
        default=None, description="Where the numbers come from (a paper, a repository)."
    )
    notes: str | None = None

    @field_validator("val_accuracy", "test_accuracy", "wall_seconds", "images_per_second")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class ReportData(BaseModel):
    """Everything a report is built from, with no backend attached.

    `sweeps` are the sweeps asked for; `baseline_sweep` is the `--baseline SWEEP` (if it
    is not one of them); `runs` holds the runs of all of them, oldest first per sweep.
    """

    sweeps: list[Sweep]
    runs: list[Run] = Field(default_factory=list)
    baseline_sweep: Sweep | None = None
    reference: Reference | None = None


def load_reference(path: str | os.PathLike[str]) -> Reference:
    """Read a JSON file of published numbers; raise `SweeperError` saying what is wrong."""
    file = Path(path)
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except OSError as e:
        raise SweeperError(
            f"Cannot read the baseline file {str(file)!r}: {e.strerror or e}."
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SweeperError(f"The baseline file {str(file)!r} is not valid JSON: {e}.") from None
    if not isinstance(raw, dict):
        raise SweeperError(
            f"The baseline file {str(file)!r} must hold a JSON object such as "
            '{"name": "Published", "val_accuracy": 0.79, "test_accuracy": 0.78}.'
        )
    known = list(Reference.model_fields)
    problems = [f"unknown key {key!r}{did_you_mean(key, known)}" for key in raw if key not in known]
    if not problems:
        try:
            return Reference.model_validate(raw)
        except ValidationError as e:
            problems = [
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
            ]
    raise SweeperError(
        f"The baseline file {str(file)!r} has {'; '.join(problems)}. Accepted keys: "
        f"{', '.join(known)}; accuracies are fractions (0.78 for 78 %)."
    )


def gather(
    backend: Backend, sweep_ids: list[str], baseline: str | os.PathLike[str] | None = None
) -> ReportData:
    """Read the sweeps (ids or names), their runs and the baseline from `backend`.

    `baseline` is None, a sweep id or name, or a JSON file of published numbers (a value
    that names an existing file or ends in `.json` is read as a file).

    Raises:
        SweeperError: no sweep given, an unknown sweep, an unreadable baseline file.
    """
    if not sweep_ids:
        raise SweeperError(
            "No sweep to report on: give a sweep id or name, or create a sweep first."
        )
    sweeps: list[Sweep] = []
    for ref in sweep_ids:
        sweep = backend.get_sweep(ref)
        if all(s.id != sweep.id for s in sweeps):
            sweeps.append(sweep)
    baseline_sweep, reference = _resolve_baseline(backend, baseline)
    sources = list(sweeps)
    if baseline_sweep is not None and all(s.id != baseline_sweep.id for s in sweeps):
        sources.append(baseline_sweep)
    runs = [run for sweep in sources for run in backend.list_runs(sweep.id)]
    return ReportData(sweeps=sweeps, runs=runs, baseline_sweep=baseline_sweep, reference=reference)


def _resolve_baseline(
    backend: Backend, baseline: str | os.PathLike[str] | None
) -> tuple[Sweep | None, Reference | None]:
    """Read `--baseline` as a file of published numbers or as a sweep of `backend`."""
    if baseline is None:
        return None, None
    text = os.fspath(baseline)
    if Path(text).is_file() or text.endswith(_BASELINE_FILE_SUFFIX):
        return None, load_reference(text)
    try:
        return backend.get_sweep(text), None
    except NotFoundError as e:
        raise SweeperError(
            f"--baseline {text!r} is neither a file nor a known sweep ({e}). Give a sweep id or "
            "name, or a JSON file of published numbers."
        ) from None


def environment_info(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Versions and hardware the report was made with; `extra` entries are added last."""
    import platform
    from importlib import metadata

    import sweeper

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "sweeper": sweeper.__version__,
        "torch": version("torch"),
        "torchvision": version("torchvision"),
        "device": _device_name(),
        "cpu_count": os.cpu_count(),
    }
    info.update(extra or {})
    return info


def _device_name() -> str:
    """The first CUDA device's name, or 'cpu' (torch is imported only here, lazily)."""
    try:
        import torch
    except ImportError:
        return "unknown (torch not installed)"
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        name = torch.cuda.get_device_name(0)
        return f"{count} x {name}" if count > 1 else name
    return "cpu"
