"""The OpenAPI 3.1 document served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "401": _json(_ref("Error"), "Missing or invalid API key"),
    "404": _json(_ref("Error"), "Not found"),
    "413": _json(_ref("Error"), "Request body too large"),
    "422": _json(_ref("Error"), "Invalid input (the error names the field)"),
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_EVENT = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "data": {"type": "object"},
        "id": {"type": "string", "description": "idempotency key: a repeated id is ignored"},
        "ts": {"type": "number", "description": "epoch seconds"},
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Durable orchestrator API", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {"error": {"type": "object", "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"},
                    "field": {"type": "string"}}}},
            },
            "Event": _EVENT,
            "RunSummary": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"}, "function": {"type": "string"},
                    "status": {"enum": ["queued", "running", "completed", "failed",
                                        "cancelled"]},
                    "attempt": {"type": "integer"},
                    "waiting": {"type": ["object", "null"],
                                "description": "sleep until / event / children / retry"},
                    "parent_id": {"type": ["string", "null"]},
                    "error": {"type": ["object", "null"]},
                    "created_at": {"type": "string", "format": "date-time"},
                    "started_at": {"type": ["string", "null"], "format": "date-time"},
                    "ended_at": {"type": ["string", "null"], "format": "date-time"},
                },
            },
            "Run": {
                "allOf": [_ref("RunSummary"), {"type": "object", "properties": {
                    "input": {}, "event": {}, "output": {},
                    "steps": {"type": "array", "items": {"type": "object"}},
                    "children": {"type": "array", "items": {"type": "object"}},
                }}],
            },
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/api/v1/apps": {
            "post": {
                "summary": "Register or re-sync an app by URL",
                "requestBody": _body({"type": "object", "required": ["url"],
                                      "properties": {"url": {"type": "string"}}}),
                "responses": {"200": _json({"type": "object"}), **_ERRORS},
            },
            "get": {"summary": "List apps", "responses": {"200": _json({"type": "object"}),
                                                          **_ERRORS}},
        },
        "/api/v1/functions": {
            "get": {"summary": "List functions",
                    "responses": {"200": _json({"type": "object"}), **_ERRORS}},
        },
        "/api/v1/events": {
            "post": {
                "summary": "Send one event or a list of events",
                "requestBody": _body({"oneOf": [_ref("Event"),
                                                {"type": "array", "items": _ref("Event")}]}),
                "responses": {"202": _json({"type": "object", "properties": {
                    "ids": {"type": "array", "items": {"type": "string"}},
                    "runs": {"type": "array", "items": {"type": "array",
                                                        "items": {"type": "string"}}}}}),
                    **_ERRORS},
            },
        },
        "/api/v1/runs": {
            "post": {
                "summary": "Start a run",
                "requestBody": _body({"type": "object", "required": ["function"], "properties": {
                    "function": {"type": "string"}, "input": {},
                    "idempotency_key": {"type": "string"}}}),
                "responses": {"201": _json({"type": "object", "properties": {
                    "id": {"type": "string"}}}), **_ERRORS},
            },
            "get": {
                "summary": "List runs, newest first",
                "parameters": [
                    {"name": "function", "in": "query", "schema": {"type": "string"}},
                    {"name": "status", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {"200": _json({"type": "object", "properties": {
                    "runs": {"type": "array", "items": _ref("RunSummary")},
                    "next_cursor": {"type": ["string", "null"]}}}), **_ERRORS},
            },
        },
        "/api/v1/runs/{run_id}": {
            "get": {
                "summary": "A run with its steps and children",
                "parameters": [{"name": "run_id", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": _json(_ref("Run")), **_ERRORS},
            },
        },
        "/api/v1/runs/{run_id}/wait": {
            "get": {
                "summary": "Long-poll until the run ends (or timeout seconds pass)",
                "parameters": [
                    {"name": "run_id", "in": "path", "required": True,
                     "schema": {"type": "string"}},
                    {"name": "timeout", "in": "query", "schema": {"type": "number"}},
                ],
                "responses": {"200": _json(_ref("Run")), **_ERRORS},
            },
        },
    },
}
