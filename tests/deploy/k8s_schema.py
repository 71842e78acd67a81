"""Validate Kubernetes manifests against the official client's models, strictly.

The client's ``from_dict`` checks required fields and scalar types but silently drops keys it does not
know, so a misspelt ``mountPropagaton`` would pass. :func:`check` first walks the document against each
model's ``openapi_types``/``attribute_map`` and fails on unknown keys and wrong scalar types, then
deserializes it with the model class so the client's own validation runs too.
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes.client

_LIST_RE = re.compile(r"^(?:List\[|list\[)(.*)\]$")
_DICT_RE = re.compile(r"^(?:Dict\[str, |dict\(str, )(.*)[\])]$")


class SchemaError(AssertionError):
    """The document does not match the Kubernetes API schema."""


def model_for(api_version: str, kind: str) -> type[Any]:
    """The client's model class for ``apiVersion``/``kind`` (``apps/v1``, ``Deployment`` → V1Deployment)."""
    version = api_version.rsplit("/", 1)[-1]
    name = version[:1].upper() + version[1:] + kind
    cls = getattr(kubernetes.client, name, None)
    if cls is None:
        raise SchemaError(f"the kubernetes client has no model for {api_version} {kind}")
    return cls  # type: ignore[no-any-return]


def check(doc: Any) -> Any:
    """Validate one manifest; returns the deserialized model instance. Raises SchemaError."""
    if not isinstance(doc, dict):
        raise SchemaError(f"a manifest must be a mapping, got {type(doc).__name__}")
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        raise SchemaError("apiVersion and kind are required strings")
    cls = model_for(api_version, kind)
    walk(doc, cls.__name__, kind)
    try:
        return cls.from_dict(doc)
    except Exception as e:  # pydantic's ValidationError (or ValueError on older clients)
        raise SchemaError(f"{kind}: {e}") from e


def walk(value: Any, type_name: str, path: str) -> None:
    """Check ``value`` against an openapi type string, recursively."""
    if type_name == "object":  # IntOrString, RawExtension…: anything goes
        return
    if m := _LIST_RE.match(type_name):
        if not isinstance(value, list):
            raise SchemaError(f"{path}: expected a list, got {type(value).__name__}")
        for i, item in enumerate(value):
            walk(item, m.group(1), f"{path}[{i}]")
        return
    if m := _DICT_RE.match(type_name):
        if not isinstance(value, dict):
            raise SchemaError(f"{path}: expected a mapping, got {type(value).__name__}")
        for key, item in value.items():
            walk(item, m.group(1), f"{path}.{key}")
        return
    scalar = _SCALARS.get(type_name)
    if scalar is not None:
        if not scalar(value):
            raise SchemaError(f"{path}: expected {type_name}, got {type(value).__name__} {value!r}")
        return
    cls = getattr(kubernetes.client, type_name, None)
    if cls is None:
        raise SchemaError(f"{path}: unknown type {type_name}")
    if not isinstance(value, dict):
        raise SchemaError(f"{path}: expected a {type_name} mapping, got {type(value).__name__}")
    by_json = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    for key, item in value.items():
        if key not in by_json:
            raise SchemaError(f"{path}: unknown field {key!r} for {type_name}")
        walk(item, cls.openapi_types[by_json[key]], f"{path}.{key}")


_SCALARS: dict[str, Any] = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "datetime": lambda v: isinstance(v, str),
    "date": lambda v: isinstance(v, str),
}
