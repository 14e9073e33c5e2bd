"""Request validation (AWS REST request validators): required parameters and body models.

A route's validator (its own ``requestValidator`` or the API's default) may check that the
method's required request parameters are present and non-empty (``validateRequestParameters``)
and that the body matches the JSON Schema draft 4 model of its Content-Type
(``validateRequestBody``). Models are compiled once at load by fastjsonschema (JSON Schema to
Python code); a model may ``$ref`` another model of the same API by AWS's URL
``https://apigateway.amazonaws.com/restapis/API_ID/models/NAME``.

Failures as AWS sends them: 400 ``{"message": "Missing required request parameters: [a, b]"}``
(BAD_REQUEST_PARAMETERS) and 400 ``{"message": "Invalid request body"}`` (BAD_REQUEST_BODY), both
with ``x-amzn-ErrorType: BadRequestException``; parameters are checked before the body.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import fastjsonschema
import orjson

from fastgw.server import replies
from fastgw.server.replies import LocalReply

if TYPE_CHECKING:
    from fastgw.pipeline.request import Request

INVALID_BODY = replies.aws_error(
    400, "Invalid request body", "BadRequestException", spaced=True, kind="BAD_REQUEST_BODY"
)

_PARAM = re.compile(
    r"^method\.request\.(header|querystring|path|multivaluequerystring|multivalueheader)\.(.+)$"
)
_MODEL_URL = re.compile(r"^https://apigateway\.amazonaws\.com/restapis/[^/]+/models/([^/#]+)")


def compile_models(
    models: dict[str, dict[str, Any]],
) -> tuple[dict[str, Callable[[Any], Any]], list[tuple[str, str]]]:
    """Compiled validators by model name, and (model name, error) for models that do not compile."""

    def resolve(uri: str) -> Any:
        m = _MODEL_URL.match(uri)
        if m is None or m.group(1) not in models:
            raise ValueError(f"$ref {uri!r} is not a model of this API")
        return models[m.group(1)]

    out: dict[str, Callable[[Any], Any]] = {}
    errors = []
    for name, schema in models.items():
        try:
            # AWS models are JSON Schema draft 4 unless they say otherwise (fastjsonschema's own
            # default is draft 7, where e.g. exclusiveMaximum is a number, not a flag).
            doc = {"$schema": "http://json-schema.org/draft-04/schema#", **schema}
            out[name] = fastjsonschema.compile(doc, handlers={"https": resolve, "http": resolve})
        except Exception as ex:  # JsonSchemaDefinitionException, a bad $ref, ...
            errors.append((name, f"not a valid JSON Schema draft 4 model: {ex}"))
    return out, errors


def parse_parameters(params: dict[str, bool]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(required (kind, name) in order, errors (key, message))."""
    required = []
    errors = []
    for key, needed in params.items():
        m = _PARAM.match(key)
        if m is None:
            errors.append((key, "expected method.request.header|querystring|path.NAME"))
            continue
        if needed:
            kind = m.group(1).replace("multivalue", "")
            required.append((kind, m.group(2)))
    return required, errors


class RequestValidation:
    """One route's checks, ready to run."""

    __slots__ = ("models", "params")

    def __init__(
        self, params: list[tuple[str, str]] | None, models: dict[str, Callable[[Any], Any]] | None
    ) -> None:
        #: Required parameters, when validateRequestParameters.
        self.params = params or None
        #: Content-Type (lower case) -> validator, when validateRequestBody.
        self.models = models or None

    def check(self, req: Request) -> LocalReply | None:
        params = self.params
        if params:
            missing = [name for kind, name in params if not _present(req, kind, name)]
            if missing:
                return replies.aws_error(
                    400,
                    f"Missing required request parameters: [{', '.join(missing)}]",
                    "BadRequestException",
                    spaced=True,
                    kind="BAD_REQUEST_PARAMETERS",
                )
        models = self.models
        if models:
            ctype = req.header("content-type")
            media = ctype.partition(";")[0].strip().lower() if ctype else "application/json"
            validate = models.get(media) or models.get("$default")
            if validate is not None:
                try:
                    validate(orjson.loads(req.body) if req.body else None)
                except (orjson.JSONDecodeError, fastjsonschema.JsonSchemaException):
                    return INVALID_BODY
        return None


def _present(req: Request, kind: str, name: str) -> bool:
    if kind == "header":
        return bool(req.header(name))
    if kind == "path":
        return bool(req.params and req.params.get(name))
    query = req.query
    if not query:
        return False
    from urllib.parse import unquote_plus

    for part in query.split("&"):
        key, _, value = part.partition("=")
        if unquote_plus(key) == name and value:
            return True
    return False
