"""build_report end to end: a real SQLite store filled by real trainings, every format written."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reports import FORMATS, build_report
from reports.plots import PLOT_NAMES
from sweeper.backends.local import LocalBackend
from sweeper.errors import SweeperError
from sweeper.paths import Home

SECTIONS = [
    "Headline",
    "Part A vs Part B",
    "Fine-tuning strategies",
    "Metric over runs",
    "Parameter importance",
    "Learning curves",
    "Best run in detail",
    "Stopped runs",
    "Failed and crashed runs",
    "All runs",
    "Sweep specs",
    "Environment",
]
SIDE_KEYS = {
    "run_id",
    "val_accuracy",
    "test_accuracy",
    "wall_seconds",
    "trainable_params",
    "epochs",
}


@pytest.fixture(scope="module")
def full_report(trained_store: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """The report of both trained sweeps, built once for the module's read-only checks."""
    out = tmp_path_factory.mktemp("full-report")
    result = build_report(
        trained_store.backend(),
        [trained_store.part_a, trained_store.part_b],
        out_dir=out,
        environment={"gpu_driver": "n/a"},
    )
    return result, out


@pytest.mark.slow
def test_writes_every_format_and_json_matches_the_returned_report(
    full_report: tuple[Any, Path],
) -> None:
    result, out = full_report
    assert set(result.paths) == set(FORMATS)
    assert {p.name for p in out.iterdir() if p.is_file()} == set(FORMATS.values())
    assert json.loads(result.paths["json"].read_text()) == result.report
    assert {p.name for p in result.plots.values()} <= {
        p.name for p in (out / "report_plots").iterdir()
    }


@pytest.mark.parametrize("fmt", ["md", "html"])
@pytest.mark.slow
def test_every_section_is_present(full_report: tuple[Any, Path], fmt: str) -> None:
    text = full_report[0].paths[fmt].read_text()
    for section in SECTIONS:
        assert section in text, section
    assert "Missing" not in text  # both parts found: nothing to excuse


@pytest.mark.slow
def test_json_schema(full_report: tuple[Any, Path], trained_store: Any) -> None:
    report = full_report[0].report
    assert {
        "sweeps",
        "best",
        "part_a",
        "part_b",
        "gap",
        "strategies",
        "importance",
        "runs",
        "environment",
    } <= set(report)
    assert [s["id"] for s in report["sweeps"]] == [trained_store.part_a, trained_store.part_b]
    assert all(
        isinstance(s["spec_yaml"], str) and s["spec"]["parameters"] for s in report["sweeps"]
    )
    best = report["best"]
    assert {"run_id", "config", "val_accuracy", "test_accuracy"} <= set(best)
    assert isinstance(best["config"], dict) and 0.0 <= best["val_accuracy"] <= 1.0
    for side in ("part_a", "part_b"):
        assert set(report[side]) >= SIDE_KEYS
        assert isinstance(report[side]["trainable_params"], int) and report[side]["epochs"] >= 1
    assert report["part_a"]["config"]["mode"] == "scratch"
    assert report["part_b"]["config"]["weights"] != "none"
    assert report["gap"]["val_accuracy"] == pytest.approx(
        report["part_b"]["val_accuracy"] - report["part_a"]["val_accuracy"]
    )
    assert {s["mode"] for s in report["strategies"]} == {"scratch", "full"}
    assert all(isinstance(s["runs"], int) for s in report["strategies"])
    assert len(report["runs"]) == 2 + 6
    assert {
        "python",
        "torch",
        "torchvision",
        "sweeper",
        "device",
        "cpu_count",
        "gpu_driver",
    } <= set(report["environment"])


@pytest.mark.slow
def test_json_has_no_nan(full_report: tuple[Any, Path]) -> None:
    text = full_report[0].paths["json"].read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in report.json"))


@pytest.mark.slow
def test_importance_covers_the_categorical_parameter(full_report: tuple[Any, Path]) -> None:
    importance = full_report[0].report["importance"]
    features = {p["feature"] for p in importance["parameters"]}
    assert {"optimizer=adam", "optimizer=sgd", "optimizer=adamw"} <= features
    assert "data_dir" not in {p["parameter"] for p in importance["parameters"]}  # fixed, not swept
    assert sum(p["importance"] for p in importance["parameters"]) == pytest.approx(1.0)


@pytest.mark.slow
def test_stopped_and_failed_runs_are_listed_with_reasons(full_report: tuple[Any, Path]) -> None:
    result = full_report[0]
    assert [s["reason"] for s in result.report["stopped"]] == ["stopped by hyperband at epoch 1"]
    assert [e["state"] for e in result.report["errors"]] == ["failed"]
    html = result.paths["html"].read_text()
    assert "stopped by hyperband at epoch 1" in html
    assert (
        "CUDA out of memory: lower batch_size &lt;script&gt;alert(1)&lt;/script&gt; | try 4" in html
    )
    markdown = result.paths["md"].read_text()
    assert "lower batch\\_size &lt;script&gt;alert(1)&lt;/script&gt; \\| try 4" in markdown


def assert_offline(html: str, svgs: int = len(PLOT_NAMES)) -> None:
    """No URL, no external resource, nothing that runs: the page reads the same offline."""
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", html, re.IGNORECASE)
    assert not re.search(r"<(script|link|iframe|object|embed)\b", html, re.IGNORECASE)
    assert not re.search(r"""\b(src|href)\s*=\s*["'](?!#|data:)""", html, re.IGNORECASE)
    assert not re.search(r"\bon[a-z]+\s*=", html, re.IGNORECASE)
    assert html.count("<svg") == svgs  # every plot is inline


@pytest.mark.slow
def test_html_requests_nothing_from_the_network(full_report: tuple[Any, Path]) -> None:
    assert_offline(full_report[0].paths["html"].read_text())


def test_html_of_hand_built_runs_requests_nothing_either(mixed_data: Any, tmp_path: Path) -> None:
    from reports import write_report

    assert_offline(
        write_report(mixed_data, out_dir=tmp_path, formats={"html"}).paths["html"].read_text()
    )


@pytest.mark.slow
def test_markdown_links_its_plots(full_report: tuple[Any, Path]) -> None:
    result, out = full_report
    markdown = result.paths["md"].read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(links) == len(PLOT_NAMES)
    assert all((out / link).is_file() for link in links)


@pytest.mark.slow
def test_baseline_sweep_is_part_a(trained_store: Any, tmp_path: Path) -> None:
    result = build_report(
        trained_store.backend(),
        [trained_store.part_b],
        baseline=trained_store.part_a,
        out_dir=tmp_path,
    )
    report = result.report
    assert report["part_a"]["sweep_id"] == trained_store.part_a
    assert report["part_b"]["sweep_id"] == trained_store.part_b
    assert report["best"]["sweep_id"] == trained_store.part_b
    assert [s["role"] for s in report["sweeps"]] == ["report", "baseline"]
    assert "(best of the baseline sweep part-a)" in result.paths["md"].read_text()


@pytest.mark.slow
def test_baseline_file_is_a_third_column(trained_store: Any, tmp_path: Path) -> None:
    published = tmp_path / "published.json"
    published.write_text(
        json.dumps(
            {
                "name": "Published <b>ResNet50</b>",
                "val_accuracy": 0.79,
                "test_accuracy": 0.781,
                "source": "seed project",
            }
        )
    )
    result = build_report(
        trained_store.backend(),
        [trained_store.part_b],
        baseline=published,
        out_dir=tmp_path / "out",
    )
    assert result.report["reference"]["test_accuracy"] == 0.781
    assert result.report["part_a"] is None
    assert result.report["best"]["gain_over_reference"]["test_accuracy"] is not None
    html = result.paths["html"].read_text()
    assert '<th class="num">Published &lt;b&gt;ResNet50&lt;/b&gt;</th>' in html
    assert "78.1 %" in html
    markdown = result.paths["md"].read_text()
    assert "| B vs A | Published &lt;b&gt;ResNet50&lt;/b&gt; |" in markdown


@pytest.mark.slow
def test_missing_part_a_is_said(trained_store: Any, tmp_path: Path) -> None:
    result = build_report(trained_store.backend(), [trained_store.part_b], out_dir=tmp_path)
    assert result.report["part_a"] is None
    assert result.report["gap"] == {"val_accuracy": None, "test_accuracy": None}
    for fmt in ("md", "html"):
        assert "Part A is missing: no finished scratch run" in result.paths[fmt].read_text()


def test_sweep_without_a_finished_run_still_renders(
    isolated_env: Path, tmp_path: Path, spec_of: Callable[..., Any], tiny_parameters: dict[str, Any]
) -> None:
    backend = LocalBackend(Home(isolated_env))
    sweep = backend.create_sweep(
        spec_of("empty", {**tiny_parameters, "lr": {"values": [0.1, 0.2]}})
    )
    backend.claim_run(sweep.id, "w")  # one run in flight, none finished
    result = build_report(backend, [sweep.id], out_dir=tmp_path)
    report = result.report
    assert report["best"] is None and report["part_a"] is None and report["part_b"] is None
    assert report["importance"]["parameters"] == []
    assert report["runs"][0]["state"] == "running"
    for fmt in ("md", "html"):
        text = result.paths[fmt].read_text()
        assert "has no finished run yet" in text
        assert "No finished run yet: nothing to rank." in text


@pytest.mark.slow
def test_one_run_only(
    isolated_env: Path,
    tmp_path: Path,
    spec_of: Callable[..., Any],
    train_sweep: Callable[..., Any],
    tiny_parameters: dict[str, Any],
) -> None:
    backend = LocalBackend(Home(isolated_env))
    parameters = {
        **tiny_parameters,
        "mode": {"value": "scratch"},
        "weights": {"value": "none"},
        "lr": {"values": [0.01, 0.001]},
    }
    sweep = train_sweep(backend, spec_of("single", parameters), limit=1)
    result = build_report(backend, [sweep.id], out_dir=tmp_path)
    report = result.report
    assert report["best"]["run_id"] == report["part_a"]["run_id"]
    assert report["part_b"] is None
    assert report["importance"]["parameters"] == []
    assert "at least 2 finished runs" in report["importance"]["note"]
    assert "Part B is missing" in result.paths["html"].read_text()


def test_a_run_named_like_a_script_is_escaped_everywhere(mixed_data: Any, tmp_path: Path) -> None:
    """Run ids come from the backend (W&B run names can be anything): nothing may inject."""
    from reports import write_report

    evil = "<script>alert(1)</script>"
    runs = [mixed_data.runs[0].model_copy(update={"id": evil}), *mixed_data.runs[1:]]
    result = write_report(mixed_data.model_copy(update={"runs": runs}), out_dir=tmp_path)
    html = result.paths["html"].read_text()
    assert evil not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    markdown = result.paths["md"].read_text()
    assert evil not in markdown
    assert "**&lt;script&gt;alert(1)&lt;/script&gt;**" in markdown
    for svg in result.plots.values():
        assert evil not in svg.read_text()
    assert result.report["best"]["run_id"] == evil  # the JSON keeps the real name


@pytest.mark.parametrize("formats", [{"json"}, {"md"}, {"html", "json"}])
def test_only_the_chosen_formats_are_written(
    mixed_data: Any, tmp_path: Path, formats: set[str]
) -> None:
    from reports import write_report

    result = write_report(mixed_data, out_dir=tmp_path, formats=formats)
    assert set(result.paths) == formats
    assert {p.name for p in tmp_path.iterdir() if p.is_file()} == {FORMATS[f] for f in formats}
    assert bool(result.plots) == ("md" in formats)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sweep_ids": ["nosuchsweep"]}, "nosuchsweep"),
        ({"sweep_ids": []}, "No sweep to report on"),
        ({"sweep_ids": ["part-a"], "formats": {"pdf"}}, "Unknown report format pdf"),
        ({"sweep_ids": ["part-a"], "baseline": "nosuchsweep"}, "neither a file nor a known sweep"),
        ({"sweep_ids": ["part-a"], "baseline": "missing.json"}, "Cannot read the baseline file"),
    ],
)
def test_user_errors_raise_sweeper_error(
    isolated_env: Path,
    tmp_path: Path,
    spec_of: Callable[..., Any],
    kwargs: dict[str, Any],
    message: str,
) -> None:
    backend = LocalBackend(Home(isolated_env))
    backend.create_sweep(
        spec_of("part-a", {"data_dir": {"value": "data"}, "lr": {"values": [0.1, 0.01]}})
    )
    with pytest.raises(SweeperError, match=re.escape(message)):
        build_report(backend, out_dir=tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_an_unwritable_out_dir_is_a_sweeper_error(mixed_data: Any, tmp_path: Path) -> None:
    from reports import write_report

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SweeperError, match="Cannot write the report"):
        write_report(mixed_data, out_dir=blocker / "report", formats={"json"})


#: Trainer-only text that a program sweep's report must not show.
TRAINER_ONLY = [
    "Part A",
    "Part B",
    "Fine-tuning strategies",
    "Best run in detail",
    "Test accuracy",
    "Val accuracy",
    "val accuracy",
    "img/s",
    "Images / s",
    "confusion",
    "Confusion",
]


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_a_program_sweeps_report_shows_the_users_names_and_no_trainer_section(
    program_sweep: tuple[LocalBackend, Any], tmp_path: Path, fmt: str
) -> None:
    backend, sweep = program_sweep
    result = build_report(backend, [sweep.id], out_dir=tmp_path)
    text = result.paths[fmt].read_text()
    for section in (
        "Headline",
        "Metric over runs",
        "Parameter importance",
        "Learning curves",
        "Failed and crashed runs",
        "All runs",
        "Sweep specs",
    ):
        assert section in text, section
    for absent in TRAINER_ONLY:
        assert absent not in text, absent
    best = result.report["best"]["run_id"]
    assert f"**{best}**" in text if fmt == "md" else f'<div class="big">{best}</div>' in text
    assert "0.3333" in text and "minimize" in text and "a program of your own" in text
    for name in ("val_loss", "learning_rate", "seed"):
        assert name in text
    diverged = "ValueError: loss diverged &lt;b&gt;nan&lt;/b&gt;"
    assert text.count(diverged + (" \\| lr=1.0" if fmt == "md" else " | lr=1.0")) == 2
    assert "Missing" not in text


def test_a_program_sweeps_report_draws_the_users_metric_and_parameters(
    program_sweep: tuple[LocalBackend, Any], tmp_path: Path
) -> None:
    backend, sweep = program_sweep
    result = build_report(backend, [sweep.id], out_dir=tmp_path)
    plots = {name: path.read_text() for name, path in result.plots.items()}
    assert set(plots) == {"metric_over_runs", "learning_curves", "parallel_coordinates"}
    assert all("val_loss" in svg for svg in plots.values())
    assert "learning_rate" in plots["parallel_coordinates"]
    assert "logged step" in plots["learning_curves"] and "epoch" not in plots["learning_curves"]
    assert_offline(result.paths["html"].read_text(), svgs=3)
    markdown = result.paths["md"].read_text()
    assert re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown) == [
        f"report_plots/{name}.svg"
        for name in ("metric_over_runs", "parallel_coordinates", "learning_curves")
    ]


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_a_sweep_without_a_metric_lists_its_runs_and_names_no_best(
    program_sweep: tuple[LocalBackend, Any], tmp_path: Path, fmt: str
) -> None:
    from reports import gather, write_report

    backend, sweep = program_sweep
    data = gather(backend, [sweep.id])
    no_metric = [s.model_copy(update={"metric_name": None}) for s in data.sweeps]
    runs = [r.model_copy(update={"metric": None}) for r in data.runs]
    result = write_report(
        data.model_copy(update={"sweeps": no_metric, "runs": runs}), out_dir=tmp_path
    )
    text = result.paths[fmt].read_text()
    assert "has no metric (grid search needs none): its runs are listed, none is ranked" in text
    assert "The sweep has no metric: its runs are listed below, none is ranked." in text
    assert "Best run" not in text and "None" not in text
    assert all(r["id"] in text for r in result.report["runs"])
    assert "learning_rate" in text and "loss diverged" in text
    assert result.plots == {}


def test_a_trainer_sweep_without_a_metric_renders_with_no_best(
    mixed_data: Any, tmp_path: Path
) -> None:
    from reports import write_report

    sweeps = [s.model_copy(update={"metric_name": ""}) for s in mixed_data.sweeps]
    runs = [r.model_copy(update={"metric": None}) for r in mixed_data.runs]
    result = write_report(
        mixed_data.model_copy(update={"sweeps": sweeps, "runs": runs}), out_dir=tmp_path
    )
    report = result.report
    assert (report["best"], report["part_a"], report["part_b"]) == (None, None, None)
    assert report["kind"] == "trainer" and len(report["runs"]) == len(runs)
    for fmt in ("md", "html"):
        text = result.paths[fmt].read_text()
        assert "The sweep has no metric: its runs are listed below, none is ranked." in text
        assert "run-b5" in text and "CUDA out of memory" in text
        assert "None" not in text
