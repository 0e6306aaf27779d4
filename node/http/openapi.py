"""The OpenAPI 3.1 description of the JSON API (/v1), served at /v1/openapi.json.

Written out rather than generated: the API is small, and a description kept
beside the routes is read in review with them (a test checks every route is
described and every described path is routed).
"""

from __future__ import annotations

from typing import Any

HEX = {"type": "string", "pattern": "^[0-9a-f]+$"}
RECORD_ID = {"name": "record_id", "in": "path", "required": True, "schema": HEX}


def _answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    content = {"application/json": {"schema": schema or {"type": "object"}}}
    return {"description": description, "content": content}


ERRORS = {
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "403": {"$ref": "#/components/responses/Forbidden"},
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "medvault JSON API",
        "version": "1",
        "description": "Records of one medvault node for clients that do not speak FHIR"
        " (the FHIR API is under /fhir, its CapabilityStatement at /fhir/metadata). Every"
        " request needs a bearer token (`medvault http token new`) of the scope named.",
    },
    "security": [{"bearer": []}],
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "responses": {
            "Unauthorized": _answer("no token, or an unknown or revoked one"),
            "Forbidden": _answer("the token's scope is too weak, or the node has no grant"),
        },
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {
                            "status": {"type": "integer"},
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                        },
                    }
                },
            },
            "PutResult": {
                "type": "object",
                "properties": {
                    "record_id": HEX,
                    "size": {"type": "integer"},
                    "segments": {"type": "integer"},
                    "holders": {"type": "integer"},
                    "sites": {"type": "integer"},
                    "degraded": {"type": "boolean"},
                    "reasons": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
    "paths": {
        "/v1/status": {
            "get": {
                "summary": "The node: identity, site, contacts, store use, records (scope read)",
                "responses": {"200": _answer("the node's status"), **ERRORS},
            }
        },
        "/v1/peers": {
            "get": {
                "summary": "Routing-table contacts, each asked for its site now (scope read)",
                "responses": {"200": _answer("the peers"), **ERRORS},
            }
        },
        "/v1/records": {
            "get": {
                "summary": "Records this node owns or holds a grant on (scope read)",
                "responses": {"200": _answer("the records"), **ERRORS},
            },
            "post": {
                "summary": "Store the request body as a record, streamed (scope write)",
                "parameters": [
                    {"name": "filename", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "patient",
                        "in": "query",
                        "description": "the patient's address (hex, 66 bytes): she co-owns"
                        " the record's sharing",
                        "schema": HEX,
                    },
                    {
                        "name": "grant",
                        "in": "query",
                        "description": "a node's or person's key (hex, 32 bytes) or address"
                        " (66 bytes) to grant; repeatable",
                        "schema": {"type": "array", "items": HEX},
                        "style": "form",
                        "explode": True,
                    },
                    {"name": "expires_at", "in": "query", "schema": {"type": "integer"}},
                    {"name": "require_full", "in": "query", "schema": {"type": "boolean"}},
                ],
                "requestBody": {
                    "required": True,
                    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                },
                "responses": {
                    "201": _answer("stored", {"$ref": "#/components/schemas/PutResult"}),
                    "503": _answer(
                        "too few nodes answered", {"$ref": "#/components/schemas/Error"}
                    ),
                    **ERRORS,
                },
            },
        },
        "/v1/records/{record_id}": {
            "get": {
                "summary": "The record's content, streamed; one byte range (scope read)",
                "parameters": [
                    RECORD_ID,
                    {"name": "Range", "in": "header", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "the content",
                        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "206": {"description": "the range asked for"},
                    "404": _answer("no such record", {"$ref": "#/components/schemas/Error"}),
                    "416": _answer("the range lies past the end"),
                    "503": _answer("too few holders answered"),
                    **ERRORS,
                },
            }
        },
        "/v1/check": {
            "get": {
                "summary": "Health of a record, or of every record this node owns or holds"
                " (scope admin)",
                "parameters": [
                    {"name": "record", "in": "query", "schema": HEX},
                    {"name": "verify", "in": "query", "schema": {"type": "boolean"}},
                ],
                "responses": {"200": _answer("health reports"), **ERRORS},
            },
            "post": {
                "summary": "Check and, with repair=true, repair (scope admin)",
                "parameters": [
                    {"name": "record", "in": "query", "schema": HEX},
                    {"name": "verify", "in": "query", "schema": {"type": "boolean"}},
                    {"name": "repair", "in": "query", "schema": {"type": "boolean"}},
                ],
                "responses": {"200": _answer("health reports and repairs"), **ERRORS},
            },
        },
        "/v1/events": {
            "get": {
                "summary": "Claim events of the records granted to this node's key, as"
                " Server-Sent Events: `event: claim`, `id:` a cursor, `data:` the canonical"
                " event JSON or a FHIR Claim; new ones as the ledger changes (scope read)",
                "parameters": [
                    {"name": "fhir", "in": "query", "schema": {"type": "boolean"}},
                    {
                        "name": "after",
                        "in": "query",
                        "description": "resume after this cursor (an event's id)",
                        "schema": {"type": "string"},
                    },
                    {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "the stream (a comment line keeps an idle one open)",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "400": _answer("not a cursor of this node"),
                    "429": _answer("too many streams open, for the token or in all"),
                    **ERRORS,
                },
            }
        },
        "/v1/openapi.json": {
            "get": {
                "summary": "This description (no token needed)",
                "security": [],
                "responses": {"200": _answer("OpenAPI 3.1")},
            }
        },
    },
}
