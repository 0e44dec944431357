"""Loading a spec file: size and encoding checks, safe YAML with duplicate keys refused, plain data.

The YAML is read with PyYAML's safe loader, as `wandb sweep` reads it, except that a
key given twice in one mapping is an error instead of silently keeping the last. Explicit
tags that do not fit their text, anchors that nest without end and values that are not
plain JSON data (dates, non-text keys, NaN) are `SpecError`s too, with the key path.

>>> load_yaml("lr: {values: [0.1, 0.01]}", "<string>")
{'lr': {'values': [0.1, 0.01]}}
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from sweeper.errors import SpecError
from sweeper.spec.messages import join

_MAX_BYTES = 1 << 20
_MAX_DEPTH = 40
_MAX_NODES = 50_000


def read_text(path: str | Path) -> str:
    """The text of a spec file; raise `SpecError` for what cannot be a spec.

    Missing files, folders, binary or non-UTF-8 files and files over 1 MiB are SpecErrors.
    """
    source = str(path)
    try:
        file = Path(path)
        if file.is_dir():
            raise SpecError(source, ["is a folder; expected a sweep YAML file"])
        with file.open("rb") as handle:
            data = handle.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(source, ["no such file"]) from None
    except PermissionError:
        raise SpecError(source, ["cannot be read: permission denied"]) from None
    except (OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise SpecError(source, [f"cannot be read: {reason}"]) from None
    if len(data) > _MAX_BYTES:
        raise SpecError(
            source, [f"is larger than {_MAX_BYTES >> 20} MiB; a sweep spec is a small YAML file"]
        )
    if b"\x00" in data:
        raise SpecError(source, ["is a binary file; expected a sweep YAML text file"])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SpecError(
            source,
            [
                f"is not UTF-8 text (undecodable byte at offset {e.start}); expected a sweep YAML file"
            ],
        ) from None
    return text


# --- YAML loading -------------------------------------------------------------------


class _DuplicateKeyError(yaml.YAMLError):
    """A key given twice in one mapping; `problem` is the sentence for the user."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class _SpecLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """PyYAML's SafeLoader (libyaml's when installed), except that a repeated key is an error.

    Plain YAML keeps the last of two equal keys, so a pasted block could silently
    override a setting; the error names the key's path and both lines.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        self._paths = _node_paths(node)
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base` keys may legitimately be overridden
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:
                    continue  # unhashable key: SafeLoader reports it below
                if first is not key_node:
                    path = join(self._paths.get(id(node), ""), str(key))
                    mark = key_node.start_mark
                    raise _DuplicateKeyError(
                        f"{path} (line {mark.line + 1}, column {mark.column + 1}): the key {key!r} "
                        f"is given twice in one mapping (first at line {first.start_mark.line + 1}); "
                        "YAML would silently keep only the last, so remove one"
                    )
        return super().construct_mapping(node, deep=deep)


def _node_paths(root: yaml.Node) -> dict[int, str]:
    """Key path of every collection node, by id, so duplicate keys can be named."""
    paths: dict[int, str] = {}
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack and len(paths) < _MAX_NODES:
        node, path = stack.pop()
        if id(node) in paths:
            continue  # an alias: keep the first path
        if isinstance(node, yaml.MappingNode):
            paths[id(node)] = path
            for key_node, value_node in node.value:
                label = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                stack.append((value_node, join(path, label)))
        elif isinstance(node, yaml.SequenceNode):
            paths[id(node)] = path
            stack.extend((item, join(path, i)) for i, item in enumerate(node.value))
    return paths


def load_yaml(text: str, source: str) -> Any:
    """The data of YAML `text` (from `source`), read safely; raise `SpecError` on bad YAML."""
    try:
        return yaml.load(text, Loader=_SpecLoader)  # a SafeLoader subclass
    except _DuplicateKeyError as e:
        raise SpecError(source, [e.problem]) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = " ".join(part for part in (e.context, e.problem) if part)
        raise SpecError(source, [f"{where}not valid YAML: {what}"]) from None
    except yaml.YAMLError as e:
        raise SpecError(source, [f"not valid YAML text: {' '.join(str(e).split())}"]) from None
    except RecursionError:
        raise SpecError(source, ["is nested too deeply to be a sweep spec"]) from None
    except (ValueError, IndexError, KeyError, TypeError, OverflowError) as e:
        # PyYAML's constructors raise these for an explicit tag whose text does not fit it
        # (`!!int abc`, `!!float`, `!!timestamp 2020-13-45`).
        raise SpecError(
            source,
            [f"not valid YAML: a value's explicit tag (like !!int) does not fit its text ({e})"],
        ) from None


class _TooLarge(Exception):
    """The loaded data nests too deeply or has too many values to be a spec."""


def plain_data_problems(data: dict[str, Any]) -> list[str]:
    """Keys must be text and values plain JSON data: the store and W&B keep specs as JSON."""
    problems: list[str] = []
    try:
        _collect_plain_data_problems(data, "", 0, [0], problems)
    except _TooLarge as e:
        return [str(e)]
    return problems[:20]


def _collect_plain_data_problems(
    value: Any, path: str, depth: int, visited: list[int], problems: list[str]
) -> None:
    visited[0] += 1
    if depth > _MAX_DEPTH or visited[0] > _MAX_NODES:
        # An alias that refers to itself, or aliases that multiply, end up here too.
        top = re.split(r"[.\[]", path, maxsplit=1)[0] or "the spec"
        raise _TooLarge(f"{top}: nested too deeply or too large to be a sweep spec")
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                _collect_plain_data_problems(item, join(path, key), depth + 1, visited, problems)
            else:
                problems.append(
                    f"{join(path, str(key))}: the key {key!r} is a YAML {type(key).__name__}; "
                    "keys must be text (quote it)"
                )
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _collect_plain_data_problems(item, join(path, i), depth + 1, visited, problems)
    elif isinstance(value, float) and not math.isfinite(value):
        problems.append(f"{path}: {value} is not a finite number")
    elif value is not None and not isinstance(value, str | int | float | bool):
        problems.append(
            f"{path}: {value!r} is a YAML {type(value).__name__}, not plain data "
            "(text, number, true/false, null, list or mapping); quote it if it is text"
        )
