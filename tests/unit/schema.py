"""What the apiserver does with a ReplicationGroup before the operator ever sees it, without an apiserver.

A structural CRD schema is applied in two steps on every write (including writes to the status
subresource): unknown fields are **pruned** (silently dropped, unless ``x-kubernetes-preserve-unknown-fields``
is set), then the rest is **validated** (types, nullable, required, enum, pattern, lengths, minimum, maxItems,
the ``date-time``/``int32``/``int64`` formats). :func:`admit` does both and reports violations the way the
apiserver words them — ``spec.cloud.projectID: Required value`` — so a test can assert that a rejection names
the field. It covers the subset of OpenAPI v3 that crds/replicationgroups.azswitch.io.yaml uses; anything else
in a schema is ignored, never guessed. (tests/unit/test_deploy.py has an older, stricter copy that flags
unknown fields instead of pruning them, to catch typos in the samples.)
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import yaml

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "replicationgroups.azswitch.io.yaml"

# RFC 3339 as the apiserver's date-time format checker accepts it (kube-openapi strfmt).
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_INT_BOUNDS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}
_TYPE_NAMES = {dict: "object", list: "array", str: "string", int: "integer", float: "number", bool: "boolean"}


@dataclass(frozen=True)
class Violation:
    """One rejection, as the apiserver reports it: the field path, then what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class Admission:
    """The object as it would be stored (pruned), what was pruned, and why it would be rejected (if so)."""

    stored: Any
    pruned: list[str] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return not self.violations

    def names(self, path: str) -> bool:
        """Whether a rejection names exactly ``path`` (not merely a parent or a child of it)."""
        return any(v.path == path for v in self.violations)


@cache
def _crd_schema(version: str) -> dict[str, Any]:
    crd = yaml.safe_load(CRD_PATH.read_text())
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return dict(served["schema"]["openAPIV3Schema"])


def crd_schema(version: str = "v1alpha1") -> dict[str, Any]:
    """The ``openAPIV3Schema`` of one served version of the ReplicationGroup CRD (a fresh copy)."""
    return copy.deepcopy(_crd_schema(version))


def _child(path: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{path}[{name}]"
    return f"{path}.{name}" if path else name


def prune(value: Any, schema: Mapping[str, Any], path: str = "") -> tuple[Any, list[str]]:
    """A copy of ``value`` without the fields the schema does not declare, and the paths dropped."""
    dropped: list[str] = []
    if isinstance(value, dict) and schema.get("type") == "object":
        properties: Mapping[str, Any] = schema.get("properties", {})
        # An object schema without properties (metadata) or with preserve-unknown-fields keeps everything.
        keep_all = not properties or schema.get("x-kubernetes-preserve-unknown-fields", False)
        result: dict[str, Any] = {}
        for name, item in value.items():
            if name in properties:
                result[name], below = prune(item, properties[name], _child(path, name))
                dropped += below
            elif keep_all:
                result[name] = copy.deepcopy(item)
            else:
                dropped.append(_child(path, name))
        return result, dropped
    if isinstance(value, list) and schema.get("type") == "array":
        items: list[Any] = []
        for index, item in enumerate(value):
            pruned, below = prune(item, schema.get("items", {}), _child(path, index))
            items.append(pruned)
            dropped += below
        return items, dropped
    return copy.deepcopy(value), dropped


def _is_date_time(text: str) -> bool:
    if not _DATE_TIME.match(text):
        return False
    try:
        datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00").replace("t", "T"))
    except ValueError:
        return False
    return True


def validate(value: Any, schema: Mapping[str, Any], path: str = "") -> list[Violation]:
    """Violations of ``value`` against a structural schema; unknown fields are not checked (see prune)."""
    where = path or "<root>"
    if value is None:
        return [] if schema.get("nullable") else [Violation(where, 'Invalid value: "null": must not be null')]
    expected = schema.get("type")
    if expected in _PY_TYPES and (
        not isinstance(value, _PY_TYPES[expected])
        or (expected in ("integer", "number") and isinstance(value, bool))
    ):
        got = _TYPE_NAMES.get(type(value), type(value).__name__)
        return [Violation(where, f'Invalid value: "{got}": {where} in body must be of type {expected}')]
    errors: list[Violation] = []
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(f'"{option}"' for option in schema["enum"])
        errors.append(Violation(where, f"Unsupported value: {value!r}: supported values: {supported}"))
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(Violation(where, f"Too long: may not be longer than {schema['maxLength']}"))
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(
                Violation(where, f"Invalid value: {value!r}: should be at least {schema['minLength']}")
            )
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(Violation(where, f"Invalid value: {value!r}: should match '{schema['pattern']}'"))
        if schema.get("format") == "date-time" and not _is_date_time(value):
            errors.append(Violation(where, f"Invalid value: {value!r}: must be a date-time (RFC 3339)"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(
                Violation(
                    where, f"Invalid value: {value}: should be greater than or equal to {schema['minimum']}"
                )
            )
        bounds = _INT_BOUNDS.get(str(schema.get("format")))
        if bounds is not None and isinstance(value, int) and not bounds[0] <= value <= bounds[1]:
            errors.append(Violation(where, f"Invalid value: {value}: out of range for {schema['format']}"))
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(
                Violation(where, f"Too many: {len(value)}: must have at most {schema['maxItems']} items")
            )
        for index, item in enumerate(value):
            errors += validate(item, schema.get("items", {}), _child(path, index))
    if isinstance(value, dict):
        properties: Mapping[str, Any] = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(Violation(_child(path, name), "Required value"))
        for name, item in value.items():
            if name in properties:
                errors += validate(item, properties[name], _child(path, name))
    return errors


def admit(obj: Any, schema: Mapping[str, Any] | None = None) -> Admission:
    """Prune, then validate, like the apiserver on create/update (status subresource included)."""
    schema = crd_schema() if schema is None else schema
    stored, dropped = prune(obj, schema)
    return Admission(stored=stored, pruned=dropped, violations=validate(stored, schema))


def walk_schema(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every (path, sub-schema) of a schema, depth first; array items appear as ``path[*]``."""
    yield path or "<root>", schema
    for name, child in schema.get("properties", {}).items():
        yield from walk_schema(child, _child(path, name))
    if "items" in schema:
        yield from walk_schema(schema["items"], f"{path}[*]")
