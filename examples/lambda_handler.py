"""A small notes API written as Lambda functions for API Gateway's Lambda proxy integration.

Nothing here imports fastgw. ``handler`` is a plain AWS Lambda handler for a REST API (payload
format 1.0): it routes on ``httpMethod`` and ``resource`` and returns proxy responses
(``statusCode``, ``headers``, ``body``), so the same function deploys to AWS unchanged.
``handler_v2`` serves an HTTP API (payload format 2.0): it routes on ``routeKey`` and is an
``async def``, which fastgw runs on the worker's event loop (AWS's Python runtime only calls
plain functions, so keep async handlers for code that runs behind fastgw).

Routes (see functions.yaml):

- ``GET /notes``: every note;
- ``POST /notes``: create one from ``{"text": "...", "tags": ["..."]}`` (400 when invalid);
  the caller's ``principalId`` (from the Lambda authorizer, when the route has one) is
  recorded as its owner;
- ``GET /notes/{id}``: one note, 404 when there is none;
- ``DELETE /notes/{id}``: 204, or 404.

The notes live in the process's memory, as module-level state lives in a Lambda execution
environment: each fastgw worker process has its own list (functions.yaml runs one worker).
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
import uuid
from typing import Any

MAX_TEXT = 1000
MAX_TAGS = 10
MAX_TAG = 32
FIELDS = frozenset({"text", "tags"})


class BadRequest(Exception):
    """The request does not hold a valid note; the message goes back to the client with a 400."""


class NoteStore:
    """Notes by id. Sync handlers run in the worker's thread pool, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._notes: dict[str, dict[str, Any]] = {}

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(note) for note in self._notes.values()]

    def get(self, note_id: str) -> dict[str, Any] | None:
        with self._lock:
            note = self._notes.get(note_id)
            return dict(note) if note is not None else None

    def add(self, text: str, tags: list[str], owner: str | None) -> dict[str, Any]:
        note = {
            "id": uuid.uuid4().hex[:12],
            "text": text,
            "tags": tags,
            "owner": owner,
            "createdAt": int(time.time()),
        }
        with self._lock:
            self._notes[note["id"]] = note
        return dict(note)

    def delete(self, note_id: str) -> bool:
        with self._lock:
            return self._notes.pop(note_id, None) is not None


NOTES = NoteStore()


def parse_note(body: str | None, is_base64: bool) -> tuple[str, list[str]]:
    """``(text, tags)`` from a request body, or BadRequest saying what is wrong."""
    if not body:
        raise BadRequest("a JSON body is required")
    if is_base64:  # HTTP APIs base64-encode bodies that are not text/* or JSON
        try:
            body = base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest("the body is not UTF-8 text") from None
    try:
        data = json.loads(body)
    except json.JSONDecodeError as ex:
        raise BadRequest(f"the body is not valid JSON: {ex.msg}") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}")
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("'text' must be a non-empty string")
    if len(text) > MAX_TEXT:
        raise BadRequest(f"'text' is longer than {MAX_TEXT} characters")
    tags = data.get("tags", [])
    if (
        not isinstance(tags, list)
        or len(tags) > MAX_TAGS
        or not all(isinstance(tag, str) and 0 < len(tag) <= MAX_TAG for tag in tags)
    ):
        raise BadRequest(f"'tags' must be a list of at most {MAX_TAGS} strings of 1-{MAX_TAG} characters")
    return text, tags


def respond(status: int, body: Any = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A Lambda proxy response with a JSON body (none when ``body`` is None)."""
    out: dict[str, Any] = {"statusCode": status, "headers": dict(headers or {})}
    if body is not None:
        out["headers"]["Content-Type"] = "application/json"
        out["body"] = json.dumps(body)
    return out


def not_found(what: str) -> dict[str, Any]:
    return respond(404, {"message": f"{what} not found"})


def create(body: str | None, is_base64: bool, owner: str | None, base_path: str) -> dict[str, Any]:
    try:
        text, tags = parse_note(body, is_base64)
    except BadRequest as ex:
        return respond(400, {"message": str(ex)})
    note = NOTES.add(text, tags, owner)
    return respond(201, note, {"Location": f"{base_path}/{note['id']}"})


# ------------------------------------------------------------------ REST API, payload 1.0
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda proxy handler of the REST API (payload format 1.0)."""
    method, resource = event["httpMethod"], event["resource"]
    params = event.get("pathParameters") or {}
    ctx = event["requestContext"]
    if resource == "/notes":
        if method == "GET":
            return respond(200, {"notes": NOTES.all()})
        if method == "POST":
            # A Lambda authorizer's principalId and context arrive in requestContext.authorizer.
            owner = (ctx.get("authorizer") or {}).get("principalId")
            # requestContext.path is the path the client used, stage included ("/prod/notes").
            return create(event.get("body"), bool(event.get("isBase64Encoded")), owner, ctx["path"])
    elif resource == "/notes/{id}":
        if method == "GET":
            note = NOTES.get(params["id"])
            return respond(200, note) if note is not None else not_found("note")
        if method == "DELETE":
            return respond(204) if NOTES.delete(params["id"]) else not_found("note")
    return not_found(f"route {method} {resource}")


# ------------------------------------------------------------------ HTTP API, payload 2.0
async def handler_v2(event: dict[str, Any], context: Any) -> Any:
    """Lambda handler of the HTTP API (payload format 2.0), as a coroutine."""
    route_key = event["routeKey"]
    params = event.get("pathParameters", {})  # left out of 2.0 events when empty
    if route_key == "GET /notes":
        # No statusCode: API Gateway infers 200, application/json and this object as the body.
        return {"notes": NOTES.all()}
    if route_key == "POST /notes":
        return create(event.get("body"), event["isBase64Encoded"], None, event["rawPath"])
    if route_key == "GET /notes/{id}":
        note = NOTES.get(params["id"])
        return respond(200, note) if note is not None else not_found("note")
    return not_found(f"route {route_key}")
