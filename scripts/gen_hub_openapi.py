#!/usr/bin/env python3
"""Writes docs/stratahub-openapi.json, the OpenAPI document of the StrataHub API (served by the hub at
/v1/openapi.json). Run it after changing the API; crates/hub's tests check the document parses and that
every route it names answers."""
import json, pathlib

err = {"$ref": "#/components/responses/Error"}
def errors(*codes):
    return {str(c): err for c in codes}

P_OWNER = {"name": "owner", "in": "path", "required": True, "schema": {"$ref": "#/components/schemas/Name"}}
P_NAME = {"name": "name", "in": "path", "required": True, "schema": {"$ref": "#/components/schemas/Name"}}
P_BRANCH = {"name": "branch", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
P_KEYID = {"name": "key_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9a-f]{16}$"}}
Q_PATH = {"name": "path", "in": "query", "required": True, "schema": {"$ref": "#/components/schemas/RemotePath"}}
Q_NAME = {"name": "name", "in": "query", "required": True, "schema": {"$ref": "#/components/schemas/RemotePath"}}
Q_PREFIX = {"name": "prefix", "in": "query", "required": False, "schema": {"type": "string"}}
proj = [P_OWNER, P_NAME]
octet = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
def j(ref):
    return {"application/json": {"schema": ref}}

paths = {
    "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {"200": {"description": "ok", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    "/metrics": {"get": {"summary": "Prometheus metrics of this process", "security": [], "responses": {"200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    "/v1/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    "/v1/keys": {"post": {"summary": "Create an API key (admin keys only); the key is shown once",
        "requestBody": {"required": True, "content": j({"$ref": "#/components/schemas/NewKey"})},
        "responses": {"201": {"description": "created", "content": j({"$ref": "#/components/schemas/CreatedKey"})}, **errors(400, 401, 403, 413)}}},
    "/v1/keys/{key_id}": {"parameters": [P_KEYID], "delete": {"summary": "Revoke a key (admin keys only)",
        "responses": {"204": {"description": "revoked"}, **errors(400, 401, 403, 404)}}},
    "/v1/projects": {
        "get": {"summary": "Projects the key may read", "responses": {"200": {"description": "projects", "content": j({"type": "array", "items": {"$ref": "#/components/schemas/Project"}})}, **errors(401)}},
        "post": {"summary": "Create a project; the creating key becomes its owner",
            "requestBody": {"required": True, "content": j({"$ref": "#/components/schemas/NewProject"})},
            "responses": {"201": {"description": "created", "content": j({"$ref": "#/components/schemas/Project"})}, **errors(400, 401, 409, 413)}}},
    "/v1/projects/{owner}/{name}": {"parameters": proj,
        "get": {"summary": "A project", "responses": {"200": {"description": "project", "content": j({"$ref": "#/components/schemas/Project"})}, **errors(400, 401, 404)}},
        "delete": {"summary": "Delete a project and its blobs (owner)", "responses": {"204": {"description": "deleted"}, **errors(400, 401, 403, 404)}}},
    "/v1/projects/{owner}/{name}/members/{key_id}": {"parameters": proj + [P_KEYID],
        "put": {"summary": "Give a key a role in the project (owner)",
            "requestBody": {"required": True, "content": j({"$ref": "#/components/schemas/Member"})},
            "responses": {"200": {"description": "members", "content": j({"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Member"}})}, **errors(400, 401, 403, 404, 413)}},
        "delete": {"summary": "Remove a key from the project (owner)", "responses": {"204": {"description": "removed"}, **errors(400, 401, 403, 404)}}},
    "/v1/projects/{owner}/{name}/blob": {"parameters": proj + [Q_PATH],
        "get": {"summary": "Download a blob (streamed); Range: bytes=N- resumes",
            "parameters": [{"name": "Range", "in": "header", "required": False, "schema": {"type": "string", "pattern": "^bytes=[0-9]+-[0-9]*$"}}],
            "responses": {"200": {"description": "the blob", "content": octet}, "206": {"description": "part of the blob", "content": octet}, **errors(400, 401, 404, 416, 502, 503)}},
        "put": {"summary": "Upload a blob if nothing is stored at its path (streamed)",
            "parameters": [{"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string", "enum": ["*"]}},
                           {"name": "X-Strata-Sha256", "in": "header", "required": False, "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}}],
            "requestBody": {"required": True, "content": octet},
            "responses": {"201": {"description": "stored"}, **errors(400, 401, 403, 404, 412, 413, 502, 503)}},
        "delete": {"summary": "Delete a blob (absent is fine)", "responses": {"204": {"description": "deleted"}, **errors(400, 401, 403, 404, 502, 503)}}},
    "/v1/projects/{owner}/{name}/blobs": {"parameters": proj + [Q_PREFIX],
        "get": {"summary": "List blobs under a prefix (segment boundaries), sorted",
            "responses": {"200": {"description": "blobs", "content": j({"type": "array", "items": {"$ref": "#/components/schemas/Blob"}})}, **errors(400, 401, 404, 502, 503)}}},
    "/v1/projects/{owner}/{name}/cursor": {"parameters": proj + [Q_NAME],
        "get": {"summary": "Read a cursor; its token is the ETag",
            "responses": {"200": {"description": "the cursor's value", "headers": {"ETag": {"schema": {"type": "string"}}}, "content": octet}, **errors(400, 401, 404, 502, 503)}},
        "put": {"summary": "Compare-and-swap a cursor: If-Match replaces that version, If-None-Match: * creates",
            "parameters": [{"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"}},
                           {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string", "enum": ["*"]}}],
            "requestBody": {"required": True, "content": octet},
            "responses": {"200": {"description": "written", "headers": {"ETag": {"schema": {"type": "string"}}}}, **errors(400, 401, 403, 404, 412, 413, 428, 502, 503)}}},
    "/v1/projects/{owner}/{name}/cursors": {"parameters": proj + [Q_PREFIX],
        "get": {"summary": "List cursor names under a prefix, sorted",
            "responses": {"200": {"description": "names", "content": j({"type": "array", "items": {"type": "string"}})}, **errors(400, 401, 404, 502, 503)}}},
    "/v1/projects/{owner}/{name}/branches": {"parameters": proj,
        "get": {"summary": "Branches with their versions and recent pushes (from the cursors' summary fields)",
            "responses": {"200": {"description": "branches", "content": j({"type": "array", "items": {"$ref": "#/components/schemas/Branch"}})}, **errors(400, 401, 404, 502, 503)}}},
    "/v1/projects/{owner}/{name}/branches/{branch}/cursor": {"parameters": proj + [P_BRANCH],
        "get": {"summary": "A branch's cursor document (JSON written by the client); ETag as for /cursor",
            "responses": {"200": {"description": "cursor", "headers": {"ETag": {"schema": {"type": "string"}}}, "content": octet}, **errors(400, 401, 404, 502, 503)}}},
    "/v1/projects/{owner}/{name}/branches/{branch}/push": {"parameters": proj + [P_BRANCH],
        "put": {"summary": "Atomic push: the body's first X-Strata-Cursor-Length bytes are the new cursor (JSON with a version above expected_version), the rest the blob to store at path; 409 pull_first when the branch moved",
            "parameters": [{"name": "expected_version", "in": "query", "required": True, "schema": {"type": "integer", "minimum": 0}},
                           {"name": "path", "in": "query", "required": False, "schema": {"$ref": "#/components/schemas/RemotePath"}},
                           {"name": "X-Strata-Cursor-Length", "in": "header", "required": True, "schema": {"type": "integer", "minimum": 0}},
                           {"name": "X-Strata-Sha256", "in": "header", "required": False, "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}}],
            "requestBody": {"required": True, "content": octet},
            "responses": {"200": {"description": "pushed", "content": j({"type": "object", "properties": {"version": {"type": "integer"}}})}, **errors(400, 401, 403, 404, 409, 412, 413, 502, 503)}}},
    "/v1/projects/{owner}/{name}/branches/{branch}/pull": {"parameters": proj + [P_BRANCH],
        "get": {"summary": "The blobs a client at version `since` needs, in order",
            "parameters": [{"name": "since", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}}],
            "responses": {"200": {"description": "what to fetch", "content": j({"$ref": "#/components/schemas/Pull"})}, **errors(400, 401, 404, 502, 503)}}},
    "/v1/projects/{owner}/{name}/branches/{branch}/bundle": {"parameters": proj + [P_BRANCH],
        "get": {"summary": "The latest snapshot blob (X-Strata-Version: its version), for a fast clone",
            "responses": {"200": {"description": "the snapshot", "content": octet}, **errors(400, 401, 404, 502, 503)}}},
}

doc = {
    "openapi": "3.0.3",
    "info": {"title": "StrataHub", "version": "1",
             "description": "A dumb hub for Strata remotes: blobs and compare-and-swap cursors per project, behind API keys. "
                            "Errors are JSON {\"error\": {\"code\", \"message\"}} with a stable code."},
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}],
    "paths": paths,
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "shub_… API keys"}},
        "responses": {"Error": {"description": "an error", "content": j({"$ref": "#/components/schemas/Error"})}},
        "schemas": {
            "Name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
            "RemotePath": {"type": "string", "minLength": 1, "maxLength": 1024},
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string", "enum": ["invalid", "unauthorized", "forbidden", "not_found", "no_such_blob", "no_such_cursor",
                    "already_exists", "conflict", "too_large", "body_mismatch", "incomplete", "precondition_required", "range", "unavailable",
                    "storage", "corrupt", "internal", "pull_first", "no_snapshot"]},
                    "message": {"type": "string"}, "current_version": {"type": "integer"}}}}},
            "NewKey": {"type": "object", "required": ["name"], "additionalProperties": False,
                       "properties": {"name": {"type": "string", "maxLength": 200}, "admin": {"type": "boolean"}}},
            "CreatedKey": {"type": "object", "required": ["id", "name", "admin", "key"],
                           "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "admin": {"type": "boolean"}, "key": {"type": "string"}}},
            "NewProject": {"type": "object", "required": ["owner", "name"], "additionalProperties": False,
                           "properties": {"owner": {"$ref": "#/components/schemas/Name"}, "name": {"$ref": "#/components/schemas/Name"}}},
            "Role": {"type": "string", "enum": ["read", "write", "owner"]},
            "Member": {"type": "object", "required": ["role"],
                       "properties": {"role": {"$ref": "#/components/schemas/Role"}, "branches": {"type": "array", "items": {"type": "string"}}}},
            "Project": {"type": "object", "required": ["owner", "name", "created_micros"],
                        "properties": {"owner": {"type": "string"}, "name": {"type": "string"}, "created_micros": {"type": "integer", "minimum": 0},
                                       "role": {"$ref": "#/components/schemas/Role"},
                                       "members": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Member"}}}},
            "Blob": {"type": "object", "required": ["path", "size", "modified_millis"],
                     "properties": {"path": {"type": "string"}, "size": {"type": "integer", "minimum": 0}, "modified_millis": {"type": "integer", "minimum": 0}}},
            "Push": {"type": "object", "properties": {"time_micros": {"type": "integer"}, "author": {"type": "string", "nullable": True},
                     "message": {"type": "string", "nullable": True}, "from": {"type": "integer"}, "to": {"type": "integer"}, "entries": {"type": "integer"}}},
            "BlobRef": {"type": "object", "required": ["path"], "properties": {"path": {"type": "string"}, "from": {"type": "integer"}, "to": {"type": "integer"},
                        "bytes": {"type": "integer"}, "sha256": {"type": "string"}}},
            "Pull": {"type": "object", "required": ["version", "since", "blobs"], "properties": {"version": {"type": "integer"}, "since": {"type": "integer"},
                     "blobs": {"type": "array", "items": {"$ref": "#/components/schemas/BlobRef"}}}},
            "Branch": {"type": "object", "required": ["name", "version", "updated_micros", "pushes"],
                       "properties": {"name": {"type": "string"}, "version": {"type": "integer", "minimum": 0}, "updated_micros": {"type": "integer", "minimum": 0},
                                      "pushes": {"type": "array", "items": {"$ref": "#/components/schemas/Push"}}}},
        },
    },
}
out = pathlib.Path(__file__).resolve().parent.parent / "docs" / "stratahub-openapi.json"
out.write_text(json.dumps(doc, indent=2) + "\n")
print(out)
