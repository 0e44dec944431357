"""Sentences for spec problems: key paths, values as a user wrote them, jsonschema errors.

Every layer of spec validation words its problems with these helpers, so a problem
reads the same whichever layer found it: "<key path>: <what was found>; <what was
expected>".

>>> join("parameters", "lr", "values", 0)
'parameters.lr.values[0]'
>>> or_list(["bayes", "random", "grid"])
"'bayes', 'random' or 'grid'"
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sweeper.errors import did_you_mean

if TYPE_CHECKING:
    import jsonschema

_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "text",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
}


def schema_messages(
    errors: Sequence[jsonschema.ValidationError], base: str, what: str
) -> list[str]:
    """One sentence per jsonschema error, naming the key path."""
    typed = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    messages: list[str] = []
    for error in errors:
        if error.validator == "format" and tuple(error.absolute_path) in typed:
            continue
        messages += schema_message(error, join(base, *error.absolute_path), what)
    return list(dict.fromkeys(messages))


def schema_message(error: jsonschema.ValidationError, path: str, what: str) -> list[str]:
    """The sentences for one jsonschema error at `path`; `what` names the thing validated."""
    kind, expected, found = error.validator, error.validator_value, error.instance
    if kind == "required" and isinstance(found, dict):
        return [
            f"{join(path, key)}: missing; {what} needs {and_list(expected)}"
            for key in expected
            if key not in found
        ]
    if kind == "additionalProperties" and isinstance(found, dict):
        allowed = sorted(error.schema.get("properties", {}))
        return [
            f"{join(path, key)}: unexpected key{did_you_mean(key, allowed)}; {what} takes {and_list(allowed)}"
            for key in found
            if key not in allowed
        ]
    if kind == "enum":
        hint = (
            did_you_mean(found, [e for e in expected if isinstance(e, str)])
            if isinstance(found, str)
            else ""
        )
        return [f"{path}: {describe(found)} is not allowed{hint}; expected {or_list(expected)}"]
    if kind == "type":
        wanted = _TYPE_WORDS.get(str(expected), str(expected))
        hint = (
            " (PyYAML reads 1e-3 without a decimal point as text: write 1.0e-3)"
            if looks_numeric(found)
            else ""
        )
        return [f"{path}: expected {wanted}, found {describe(found)}{hint}"]
    if kind == "format":
        wanted = "an integer" if expected == "integer" else "a number with a decimal point"
        return [f"{path}: expected {wanted}, found {describe(found)}"]
    if kind in ("minItems", "minProperties"):
        return [f"{path}: is empty; give at least one"]
    if kind in ("minimum", "exclusiveMinimum"):
        sign = ">" if kind == "exclusiveMinimum" else ">="
        return [f"{path}: {describe(found)} is out of range; expected a number {sign} {expected}"]
    return [f"{path}: {error.message}"]


def join(base: str, *parts: str | int) -> str:
    """The key path `base` extended by `parts`: names joined with dots, list indexes in brackets."""
    path = base
    for part in parts:
        path = (
            f"{path}[{part}]"
            if isinstance(part, int)
            else (f"{path}.{part}" if path else str(part))
        )
    return path


def describe(value: Any) -> str:
    """A value as the user wrote it in YAML (null, true, 'text', a mapping)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int | float | str):
        return repr(value)
    return f"a {type(value).__name__}"


def looks_numeric(value: Any) -> bool:
    """True for text that reads as a number (PyYAML reads 1e-3 as text)."""
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def or_list(items: Sequence[Any]) -> str:
    """'a', 'b' or 'c': the choices of an enum, text quoted."""
    shown = [repr(i) if isinstance(i, str) else str(i) for i in items]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def and_list(items: Sequence[Any]) -> str:
    """a, b and c."""
    shown = [str(i) for i in items]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"
