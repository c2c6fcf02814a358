"""Atlassian's Jira OpenAPI documents as JSON Schema validators, for checking the Jira fake and connector.

The documents are OpenAPI 3.0: their schemas are JSON Schema draft 4 plus ``nullable``, which is turned
into a ``null`` alternative here. Each document is one resource in a ``referencing`` registry, so the
``#/components/schemas/...`` references inside it resolve. Formats (``uri``, ``int64``) are not checked.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SPEC_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference" / "specs"
CLOUD = "urn:atlassian:jira-cloud-platform-v3"
SOFTWARE = "urn:atlassian:jira-software-v3"
_FILES = {
    CLOUD: "jira-cloud-platform-openapi-v3.json",
    SOFTWARE: "jira-software-openapi-v3.json",
}


def available() -> bool:
    return all((SPEC_DIR / name).is_file() for name in _FILES.values())


def _with_nulls(node: Any) -> Any:
    """OpenAPI 3.0 ``nullable: true`` → also accept ``null`` (draft 4 has no such keyword)."""
    if isinstance(node, list):
        return [_with_nulls(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _with_nulls(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True:
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        elif "type" not in out:
            return {"anyOf": [out, {"type": "null"}]}
    return out


@functools.cache
def document(uri: str = CLOUD) -> dict[str, Any]:
    """One OpenAPI document as read (before the ``nullable`` rewrite)."""
    loaded: dict[str, Any] = json.loads((SPEC_DIR / _FILES[uri]).read_text())
    return loaded


@functools.cache
def _registry() -> Registry:
    resources = []
    for uri in _FILES:
        contents = _with_nulls(document(uri))
        resources.append((uri, Resource.from_contents(contents, default_specification=DRAFT4)))
    registry: Registry = Registry().with_resources(resources)
    return registry


@functools.cache
def validator(schema: str, *, spec: str = CLOUD, array: bool = False) -> Draft4Validator:
    """A validator for ``components/schemas/<schema>`` (a list of them with ``array``)."""
    ref: dict[str, Any] = {"$ref": f"{spec}#/components/schemas/{schema}"}
    return Draft4Validator({"type": "array", "items": ref} if array else ref, registry=_registry())


def problems(instance: Any, schema: str, *, spec: str = CLOUD, array: bool = False) -> list[str]:
    """Every way ``instance`` breaks the schema, as "path: message" lines (empty when it conforms)."""
    found = validator(schema, spec=spec, array=array).iter_errors(instance)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found]


def operation_schema(path: str, method: str, status: str = "200") -> dict[str, Any]:
    """The JSON schema the Cloud document gives a response (to check the fake uses the right one)."""
    response = document(CLOUD)["paths"][path][method]["responses"][status]
    schema: dict[str, Any] = response["content"]["application/json"]["schema"]
    return schema
