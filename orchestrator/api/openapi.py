"""The OpenAPI 3.1 document served at /api/v1/openapi.json, built from the route table
(``route_table.OPERATIONS``) and the schemas of the request models (``bodies.py``) and
response types (``answers.py``): nothing in it is kept by hand."""

from __future__ import annotations

from functools import cache
from typing import Any, Final

from pydantic import TypeAdapter

from orchestrator.api.route_table import (
    ERROR_TEXT,
    OPERATIONS,
    REF,
    Operation,
    Param,
    Raw,
    Schema,
    ref,
)
from orchestrator.engine.answers import Error

SECURITY: Final = {"bearer": {"type": "http", "scheme": "bearer"}}


class _Components:
    """The component schemas of every type the operations name, each under its name."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def add(self, spec: Schema) -> dict[str, Any]:
        """``spec``'s schema: a ``$ref`` to its component for a type."""
        if isinstance(spec, Raw):
            for t in spec.uses:
                self.add(t)
            return spec.schema
        name = spec.__name__
        if name not in self.schemas:
            schema = TypeAdapter(spec).json_schema(ref_template=REF)
            self.schemas.update(schema.pop("$defs", {}))
            self.schemas[name] = schema
        return ref(name)


def _content(schema: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
    return {media: {"schema": schema}}


def _param(q: Param) -> dict[str, Any]:
    return {"name": q.name, "in": q.where, "required": q.where == "path",
            "description": q.description, "schema": q.schema}


def _operation(op: Operation, components: _Components) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.operation_id, "tags": [op.tag],
                           "summary": op.summary}
    needs = op.needs
    scope_text = "" if needs is None else \
        f"Needs an API key with the scope `{needs}`" + ("." if needs == "admin" else
                                                         " (or `admin`).")
    if op.description or scope_text:
        out["description"] = " ".join(t for t in (op.description, scope_text) if t)
    out["security"] = [] if needs is None else [{"bearer": [needs]}]
    if needs is not None:
        out["x-scopes"] = [needs]
    if op.params:
        out["parameters"] = [_param(q) for q in op.params]
    if op.body is not None:
        out["requestBody"] = {"required": op.body_required,
                              "content": _content(components.add(op.body))}
    responses: dict[str, Any] = {}
    for status, answer in op.responses.items():
        item: dict[str, Any] = {"description": answer.description}
        if answer.schema is not None:
            item["content"] = _content(components.add(answer.schema), answer.media)
        if answer.links:
            item["links"] = {name[0].upper() + name[1:]: {
                "operationId": name, "parameters": {answer.link_param: "$response.body#/id"}}
                for name in answer.links}
        responses[str(status)] = item
    errors = sorted({*op.errors, *op.error_text} | ({401, 403} if not op.public else set()))
    if op.body is not None:
        errors = sorted({*errors, 413, 422})
    for status in errors:
        responses[str(status)] = {"description": op.error_text.get(status, ERROR_TEXT[status]),
                                  "content": _content(components.add(Error))}
    out["responses"] = responses
    return out


def build() -> dict[str, Any]:
    components = _Components()
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Durable orchestrator API", "version": "1"},
        "components": {"securitySchemes": SECURITY,
                       "schemas": dict(sorted(components.schemas.items()))},
        "security": [{"bearer": []}],
        "paths": paths,
    }

@cache
def document() -> dict[str, Any]:
    """The document, built on first use (not at start-up: building it takes a while)."""
    return build()
