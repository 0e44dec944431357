"""The import arrows of DESIGN.md, checked on the real import graph (grimp, import-linter's
engine): every import in the source counts, including those inside functions and under
TYPE_CHECKING.

    sweeper.cli -> {sweeper core, agent, reports}
    agent       -> {sweeper core, trainer}
    reports     -> {sweeper core, trainer}
    sweeper core -> trainer (its config, for spec validation)
    trainer     -> nothing of ours, and not wandb

The sweeper core is every module of `sweeper` but its entry points: the command line
(`sweeper.cli`, as a module or a package, and `sweeper.__main__`) and the Python API
(`sweeper.api`, `sweeper.sweep` / `sweeper.agent`, which drives the agent as the CLI does;
the package's lazy `__getattr__` loads it by name), so a module or package added to
`sweeper` is core unless it is one of those entry points.

And no module of sweeper, agent, trainer or reports is over 600 lines: past that, one
module does more than one job.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grimp
import pytest

PACKAGES = ("sweeper", "agent", "trainer", "reports", "demo")
CORE = "sweeper core"
CLI = ("sweeper.cli", "sweeper.__main__", "sweeper.api")
TESTS = Path(__file__).parent
ROOT = TESTS.parent
#: The most lines a module of the packages below may have.
MAX_LINES = 600
LINE_CHECKED = ("sweeper", "agent", "trainer", "reports")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    """Our packages and the top-level names of what they import from outside."""
    return grimp.build_graph(*PACKAGES, include_external_packages=True, cache_dir=None)


def _is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def component(module: str) -> str:
    """The part of the project `module` belongs to: a top-level package, with `sweeper` cut into
    its command line and its core.

    >>> component("sweeper.backends.local"), component("sweeper.cli"), component("trainer.loop")
    ('sweeper core', 'sweeper.cli', 'trainer')
    """
    top = module.split(".")[0]
    if top != "sweeper":
        return top
    return "sweeper.cli" if any(_is_within(module, cli) for cli in CLI) else CORE


def core_part(module: str) -> str:
    """The child of `sweeper` a core module belongs to (`sweeper.backends.local` ->
    `sweeper.backends`)."""
    return ".".join(module.split(".")[:2])


def imports_between(
    graph: grimp.ImportGraph, source: Callable[[str], bool], target: Callable[[str], bool]
) -> list[str]:
    """Every direct import from a module matching `source` to one matching `target`, as
    "importer -> imported" lines (the offending line numbers follow in brackets)."""
    found = []
    for importer in sorted(m for m in graph.modules if source(m)):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if target(imported):
                details = graph.get_import_details(importer=importer, imported=imported)
                lines = ", ".join(str(d["line_number"]) for d in details)
                found.append(f"{importer} -> {imported} (line {lines})")
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The cycles of a small directed graph, each once, as node lists (start node smallest).

    >>> cycles({"a": {"b"}, "b": {"a", "c"}, "c": set()})
    [['a', 'b']]
    """
    found: list[list[str]] = []

    def walk(path: list[str]) -> None:
        for nxt in sorted(edges.get(path[-1], ())):
            if nxt == path[0]:
                found.append(list(path))
            elif nxt > path[0] and nxt not in path:
                walk([*path, nxt])

    for start in sorted(edges):
        walk([start])
    return found


def component_edges(
    graph: grimp.ImportGraph, node: Callable[[str], str | None]
) -> dict[str, set[str]]:
    """Which nodes import which, where `node` maps a module to its node (None: left out)."""
    edges: dict[str, set[str]] = {}
    for importer in graph.modules:
        source = node(importer)
        if source is None:
            continue
        for imported in graph.find_modules_directly_imported_by(importer):
            target = node(imported)
            if target is not None and target != source:
                edges.setdefault(source, set()).add(target)
    return edges


def _ours(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


@pytest.mark.parametrize(
    ("importer", "forbidden"),
    [
        ("trainer", ("sweeper", "agent", "reports", "demo", "wandb")),
        (CORE, ("agent", "reports", "sweeper.cli")),
        ("reports", ("agent", "sweeper.cli")),
        ("agent", ("reports", "sweeper.cli")),
    ],
)
def test_no_import_against_the_arrows(
    graph: grimp.ImportGraph, importer: str, forbidden: tuple[str, ...]
) -> None:
    def target(module: str) -> bool:
        # wandb is external: grimp names it by its top-level package only.
        return component(module) in forbidden or module.split(".")[0] in forbidden

    found = imports_between(graph, lambda m: _ours(m) and component(m) == importer, target)
    assert not found, f"{importer} must not import {', '.join(forbidden)}:\n" + "\n".join(found)


def test_the_rules_see_every_package(graph: grimp.ImportGraph) -> None:
    # A rule over a package grimp did not find would pass without checking anything.
    assert {component(m) for m in graph.modules if _ours(m)} >= {
        "trainer",
        "agent",
        "reports",
        CORE,
        "sweeper.cli",
    }


def test_no_cycle_between_the_parts_of_the_project(graph: grimp.ImportGraph) -> None:
    edges = component_edges(graph, lambda m: component(m) if _ours(m) else None)
    assert cycles(edges) == []


def test_no_cycle_between_the_parts_of_the_core(graph: grimp.ImportGraph) -> None:
    # e.g. backends -> engine -> backends; `sweeper` itself (its __init__) is left out.
    edges = component_edges(
        graph, lambda m: core_part(m) if component(m) == CORE and m != "sweeper" else None
    )
    assert cycles(edges) == []


def test_a_cycle_is_found() -> None:
    assert cycles({"x": {"y"}, "y": {"z"}, "z": {"x"}, "w": {"x"}}) == [["x", "y", "z"]]


def test_no_test_folder_can_stand_in_for_a_package() -> None:
    # Every test folder is a package under `tests`, so pytest never puts one on sys.path,
    # where tests/agent would be imported as `agent`.
    folders = {path.parent for path in TESTS.rglob("*.py")}
    assert sorted(str(f) for f in folders if not (f / "__init__.py").is_file()) == []


def module_lines() -> dict[str, int]:
    """Lines per module of the line-checked packages, by path from the project root."""
    return {
        path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for package in LINE_CHECKED
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def test_no_module_is_over_600_lines() -> None:
    lines = module_lines()
    assert len(lines) > 50, "the walk found too few modules to check anything"
    long = {path: n for path, n in lines.items() if n > MAX_LINES}
    assert long == {}, f"split these modules along their seams (at most {MAX_LINES} lines each)"
