"""A yes-or-no JSON Schema (Draft 7) check for the keywords W&B's sweep schema uses.

Why not jsonschema here: importing it (with attrs, referencing, rpds and its format
checkers) costs a `sweeper validate` about a fifth of its start-up, and a valid spec,
the common case, needs only the verdict. So the schema layer asks this module first
and imports jsonschema only when a document fails, to word the problems precisely
(`sweeper.spec.schema`). fastjsonschema would generate the code instead, but it is one
more dependency, compiles W&B's schema at every start unless its output is cached on
disk, and would still need jsonschema for the messages.

The verdicts are jsonschema's, keyword by keyword (its `_keywords` and Draft 7's
`_legacy_keywords`): bool is neither integer nor number, 1.0 is an integer, `enum`
tells true from 1, `$ref` hides its siblings, formats are checked by the functions in
`FORMATS` and only those. A keyword this module does not know raises `Unsupported`,
and the caller asks jsonschema: a newer W&B schema can never be passed unchecked.
The tests compare both validators' verdicts over the spec corpus and random documents.

>>> is_valid({"type": "object", "required": ["name"]}, {"name": "loss"})
True
>>> is_valid({"type": "integer", "exclusiveMinimum": 0}, True)
False
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from numbers import Number
from typing import Any

#: The formats W&B's schema names, checked as `sweeps.config.schema` checks them.
FORMATS: dict[str, Callable[[Any], bool]] = {
    "float": lambda value: isinstance(value, float),
    "integer": lambda value: isinstance(value, int),
}

#: Keywords that never fail a document: annotations, and `definitions` (read through `$ref`).
_INERT = frozenset(
    {"$id", "$schema", "$comment", "title", "description", "default", "examples", "definitions"}
)


#: Keywords under which jsonschema's default filling depends on which subschemas it tries.
_COMBINATORS = frozenset({"$ref", "anyOf", "oneOf", "allOf", "not", "if", "dependencies", "items"})


class Unsupported(Exception):
    """The schema uses a keyword (or a `$ref`) this checker does not implement."""


def is_valid(schema: Any, instance: Any, root: Mapping[str, Any] | None = None) -> bool:
    """Whether `instance` is valid under `schema`, as jsonschema's Draft7Validator says.

    `root` is the document that `$ref`s point into (default: `schema` itself).
    Raises `Unsupported` for what this checker cannot decide.
    """
    return _valid(schema, instance, schema if root is None else root)


def fill_defaults(schema: Mapping[str, Any], instance: Any) -> None:
    """Set the `default` of each property `instance` lacks, for an instance already valid.

    What jsonschema's default-filling recipe (a `properties` check that sets defaults
    when it passes) does on a valid instance of a schema without combinators; for one
    with them, which branch's defaults apply depends on evaluation order, so that is
    `Unsupported`.

    >>> config = {"min": 0}
    >>> fill_defaults({"properties": {"min": {}, "q": {"default": 1.0}}}, config)
    >>> config
    {'min': 0, 'q': 1.0}
    """
    combined = _COMBINATORS & schema.keys()
    if combined or isinstance(schema.get("additionalProperties"), dict):
        raise Unsupported(f"defaults under {sorted(combined) or 'additionalProperties'}")
    if not isinstance(instance, dict):
        return
    for name, subschema in schema.get("properties", {}).items():
        if not isinstance(subschema, dict):
            continue
        if name in instance:
            fill_defaults(subschema, instance[name])
        elif "default" in subschema:
            instance[name] = subschema["default"]


def _valid(schema: Any, instance: Any, root: Mapping[str, Any]) -> bool:
    if schema is True:
        return True
    if schema is False:
        return False
    if not isinstance(schema, dict):
        raise Unsupported(f"a schema that is {type(schema).__name__}")
    if "$ref" in schema:  # Draft 7: a $ref's siblings are ignored
        return _valid(_resolve(schema["$ref"], root), instance, root)
    for keyword, value in schema.items():
        if keyword in _INERT:
            continue
        check = _KEYWORDS.get(keyword)
        if check is None:
            raise Unsupported(f"keyword {keyword!r}")
        if not check(value, instance, schema, root):
            return False
    return True


def _resolve(reference: str, root: Mapping[str, Any]) -> Any:
    """A `#/a/b` pointer into the root schema; other references are `Unsupported`."""
    if not reference.startswith("#"):
        raise Unsupported(f"$ref {reference!r}")
    target: Any = root
    for part in filter(None, reference[1:].split("/")):
        part = part.replace("~1", "/").replace("~0", "~")
        try:
            target = target[int(part) if isinstance(target, list) else part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise Unsupported(f"$ref {reference!r}") from None
    return target


def _is_type(instance: Any, name: str) -> bool:
    if name == "object":
        return isinstance(instance, dict)
    if name == "array":
        return isinstance(instance, list)
    if name == "string":
        return isinstance(instance, str)
    if name == "boolean":
        return isinstance(instance, bool)
    if name == "null":
        return instance is None
    if isinstance(instance, bool):  # bool is an int in Python, not a number in JSON
        return False
    if name == "number":
        return isinstance(instance, Number)
    if name == "integer":
        return isinstance(instance, int) or (isinstance(instance, float) and instance.is_integer())
    raise Unsupported(f"type {name!r}")


def _equal(one: Any, two: Any) -> bool:
    """JSON equality, jsonschema's `_utils.equal`: true is not 1, lists compare item by item."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, Sequence) and isinstance(two, Sequence):
        return len(one) == len(two) and all(map(_equal, one, two))
    if isinstance(one, Mapping) and isinstance(two, Mapping):
        return len(one) == len(two) and all(k in two and _equal(v, two[k]) for k, v in one.items())
    if isinstance(one, bool) or isinstance(two, bool):
        return False  # `one is two` failed, and a bool equals only itself
    return bool(one == two)


def _type(value: Any, instance: Any, schema: Any, root: Any) -> bool:
    names = [value] if isinstance(value, str) else value
    return any(_is_type(instance, name) for name in names)


def _enum(value: Any, instance: Any, schema: Any, root: Any) -> bool:
    return any(_equal(each, instance) for each in value)


def _properties(value: Any, instance: Any, schema: Any, root: Any) -> bool:
    if not isinstance(instance, dict):
        return True
    return all(_valid(sub, instance[name], root) for name, sub in value.items() if name in instance)


def _additional_properties(value: Any, instance: Any, schema: Any, root: Any) -> bool:
    if not isinstance(instance, dict):
        return True
    if "patternProperties" in schema:
        raise Unsupported("patternProperties")
    extras = [key for key in instance if key not in schema.get("properties", {})]
    if isinstance(value, dict):
        return all(_valid(value, instance[key], root) for key in extras)
    return bool(value) or not extras


def _required(value: Any, instance: Any, schema: Any, root: Any) -> bool:
    return not isinstance(instance, dict) or all(name in instance for name in value)


def _any_of(value: Any, instance: Any, schema: Any, root: Any) -> bool:
    return any(_valid(sub, instance, root) for sub in value)


def _one_of(value: Any, instance: Any, schema: Any, root: Any) -> bool:
    return sum(1 for sub in value if _valid(sub, instance, root)) == 1


def _dependencies(value: Any, instance: Any, schema: Any, root: Any) -> bool:
    if not isinstance(instance, dict):
        return True
    for name, dependency in value.items():
        if name not in instance:
            continue
        if isinstance(dependency, list):
            if not all(each in instance for each in dependency):
                return False
        elif not _valid(dependency, instance, root):
            return False
    return True


def _items(value: Any, instance: Any, schema: Any, root: Any) -> bool:
    if not isinstance(instance, list):
        return True
    if isinstance(value, list):
        return all(_valid(sub, item, root) for item, sub in zip(instance, value, strict=False))
    return all(_valid(value, item, root) for item in instance)


def _min_items(value: Any, instance: Any, schema: Any, root: Any) -> bool:
    return not isinstance(instance, list) or len(instance) >= value


def _min_properties(value: Any, instance: Any, schema: Any, root: Any) -> bool:
    return not isinstance(instance, dict) or len(instance) >= value


def _minimum(value: Any, instance: Any, schema: Any, root: Any) -> bool:
    return not _is_type(instance, "number") or instance >= value


def _exclusive_minimum(value: Any, instance: Any, schema: Any, root: Any) -> bool:
    return not _is_type(instance, "number") or instance > value


def _pattern(value: Any, instance: Any, schema: Any, root: Any) -> bool:
    return not isinstance(instance, str) or re.search(value, instance) is not None


def _property_names(value: Any, instance: Any, schema: Any, root: Any) -> bool:
    return not isinstance(instance, dict) or all(_valid(value, key, root) for key in instance)


def _format(value: Any, instance: Any, schema: Any, root: Any) -> bool:
    check = FORMATS.get(value)
    if check is None:
        raise Unsupported(f"format {value!r}")
    return check(instance)


_KEYWORDS: dict[str, Callable[[Any, Any, Any, Any], bool]] = {
    "type": _type,
    "enum": _enum,
    "properties": _properties,
    "additionalProperties": _additional_properties,
    "required": _required,
    "anyOf": _any_of,
    "oneOf": _one_of,
    "dependencies": _dependencies,
    "items": _items,
    "minItems": _min_items,
    "minProperties": _min_properties,
    "minimum": _minimum,
    "exclusiveMinimum": _exclusive_minimum,
    "pattern": _pattern,
    "propertyNames": _property_names,
    "format": _format,
}
