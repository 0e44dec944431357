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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sweeper.backends.base import Backend
from sweeper.errors import NotFoundError, SweeperError, did_you_mean
from sweeper.models import Run, Sweep

#: What a report is about: the built-in trainer's sweeps, or a user's own program's.
Kind = Literal["trainer", "program"]

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

    @property
    def kind(self) -> Kind:
        """'program' when every sweep runs a user's own script, else 'trainer' (`gather`
        never mixes them; data built by hand that does gets the trainer's sections)."""
        program = all(sweep_kind(s) == "program" for s in self.sweeps)
        return "program" if program else "trainer"


def sweep_kind(sweep: Sweep) -> Kind:
    """'program' for a sweep of the user's own script or function, 'trainer' for the
    built-in trainer's (`Sweep.kind`, as stored: a function sweep's spec names no program).

    >>> from datetime import datetime
    >>> sweep = Sweep(id="s", name="s", backend="local", state="running", method="grid",
    ...               metric_name="loss", metric_goal="minimize", created_at=datetime.now(),
    ...               kind="program", spec={"method": "grid"})
    >>> sweep_kind(sweep)
    'program'
    """
    return sweep.kind


def check_comparable(sweeps: list[Sweep], baseline: Sweep | None, reference: bool) -> None:
    """Refuse sweeps that one report cannot rank together, saying how to report them.

    A report ranks every run on one metric, and Part A vs Part B compares runs of the
    built-in trainer. So trainer and program sweeps are reported one kind at a time,
    program sweeps together only when they optimise the same metric (or none), and a
    `--baseline` (Part A) belongs to trainer reports.

    Raises:
        SweeperError: a mix of kinds, program sweeps with different metrics, a baseline
            given with program sweeps or a program sweep given as the baseline.
    """
    programs = [s for s in sweeps if sweep_kind(s) == "program"]
    if not programs:
        if baseline is not None and sweep_kind(baseline) == "program":
            raise SweeperError(
                f"--baseline {baseline.name} ({baseline.id}) is a program sweep (a script of "
                "your own): Part A must be a sweep of the built-in trainer, or a JSON file of "
                "published numbers."
            )
        return
    trainers = [s for s in sweeps if s not in programs]
    if trainers:
        raise SweeperError(
            f"{_names(programs)} run{'s' if len(programs) == 1 else ''} a program of your own "
            f"and {_names(trainers)} the built-in trainer: one report ranks its runs on one "
            "metric and compares Part A with Part B for the trainer only, so report each kind "
            f"on its own: `sweeper report {' '.join(s.id for s in programs)}` and `sweeper "
            f"report {' '.join(s.id for s in trainers)}`."
        )
    if baseline is not None or reference:
        raise SweeperError(
            "--baseline chooses Part A of the built-in trainer's Part A vs Part B comparison; "
            f"{_names(programs)} run{'s' if len(programs) == 1 else ''} a program of your own, "
            "whose report has no Part A: leave --baseline out."
        )
    metrics = {_metric(s) for s in programs}
    if len(metrics) > 1:
        described = "; ".join(f"{_names([s])} {_metric_text(s)}" for s in programs)
        raise SweeperError(
            f"The program sweeps optimise different metrics ({described}), so their runs "
            "cannot be ranked together: report them one at a time."
        )


def _metric(sweep: Sweep) -> tuple[str | None, str | None]:
    return (sweep.metric_name, sweep.metric_goal) if sweep.metric_name else (None, None)


def _metric_text(sweep: Sweep) -> str:
    name, goal = _metric(sweep)
    return f"{name} ({goal})" if name else "no metric"


def _names(sweeps: list[Sweep]) -> str:
    return ", ".join(f"{s.name} ({s.id})" for s in sweeps)


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
        SweeperError: no sweep given, an unknown sweep, an unreadable baseline file,
            sweeps one report cannot hold (`check_comparable`).
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
    check_comparable(sweeps, baseline_sweep, reference is not None)
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
