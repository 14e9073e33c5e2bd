"""The Lambda function behind ``notes-http.yaml`` (function ``notes-http``): AWS Lambda code.

An HTTP API invokes it with payload format 2.0 events and routes on ``routeKey``. Every route
has the JWT authorizer, so the caller is ``requestContext.authorizer.jwt.claims.sub`` and the
token's scopes are ``...jwt.scopes``; the API checks the route's scopes (``notes/read``,
``notes/write``) before this function runs, so it only scopes the data to the caller:

- ``GET /notes``: the caller's notes (a bare object: API Gateway infers 200 and JSON);
- ``POST /notes``: ``{"text": "...", "tags": ["..."]}`` -> 201 with a ``Location``;
- ``GET /notes/{noteId}``: one of the caller's notes, else 404;
- ``DELETE /notes/{noteId}``: 204, else 404.

Notes live in the process's memory, as module-level state lives in a Lambda execution
environment.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
import uuid
from typing import Any

MAX_TEXT = 2000
MAX_TAGS = 10


class BadRequest(Exception):
    """The body is not a valid note; the message is sent back with a 400."""


_lock = threading.Lock()
_notes: dict[str, dict[str, Any]] = {}


def respond(status: int, body: Any = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"statusCode": status, "headers": dict(headers or {})}
    if body is not None:
        out["headers"]["content-type"] = "application/json"
        out["body"] = json.dumps(body)
    return out


def parse(event: dict[str, Any]) -> tuple[str, list[str]]:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(body, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest("the body is not UTF-8 text") from None
    try:
        doc = json.loads(body)
    except ValueError:
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("text"), str) or not doc["text"].strip():
        raise BadRequest('expected {"text": "...", "tags": [...]}')
    tags = doc.get("tags", [])
    if not isinstance(tags, list) or len(tags) > MAX_TAGS or not all(isinstance(t, str) for t in tags):
        raise BadRequest(f"'tags' must be a list of at most {MAX_TAGS} strings")
    if len(doc["text"]) > MAX_TEXT:
        raise BadRequest(f"'text' is longer than {MAX_TEXT} characters")
    return doc["text"], tags


def handler(event: dict[str, Any], context: Any) -> Any:
    """Payload format 2.0 handler of the notes HTTP API."""
    jwt = event["requestContext"]["authorizer"]["jwt"]
    owner = jwt["claims"]["sub"]
    route = event["routeKey"]
    note_id = (event.get("pathParameters") or {}).get("noteId", "")
    if route == "GET /notes":
        with _lock:
            mine = [dict(n) for n in _notes.values() if n["owner"] == owner]
        return {"owner": owner, "scopes": jwt.get("scopes") or [], "notes": mine}
    if route == "POST /notes":
        try:
            text, tags = parse(event)
        except BadRequest as ex:
            return respond(400, {"message": str(ex)})
        note = {
            "id": uuid.uuid4().hex[:12],
            "owner": owner,
            "text": text,
            "tags": tags,
            "at": int(time.time()),
        }
        with _lock:
            _notes[note["id"]] = note
        return respond(201, note, {"location": f"{event['rawPath']}/{note['id']}"})
    with _lock:
        note = _notes.get(note_id)
        if note is None or note["owner"] != owner:
            return respond(404, {"message": "note not found"})
        if route == "DELETE /notes/{noteId}":
            del _notes[note_id]
            return respond(204)
        note = dict(note)
    return respond(200, note)
