"""A fastgw plugin: HMAC request signatures (access phase), signed responses (response phase).

Clients sign every request with a secret they share with the gateway::

    X-Timestamp: 1767225600     Unix seconds, within max_skew_seconds of the gateway's clock
    X-Signature: sha256=HEX     hex HMAC-SHA256 of "METHOD\\nPATH\\nTIMESTAMP\\n" + BODY

PATH is the path the request was sent to, stage prefix included, as the gateway normalises it
(the same as sent for any ordinary path), followed by ``?QUERY`` when there is a query string
(byte for byte as sent); BODY is the raw body (empty for a GET). Refusals are JSON: 401 when
a header is missing or malformed, 403 when the timestamp is outside the window or the
signature does not match. The check runs in the access phase: after the authorizer, API key
and throttling, before the integration. It does not remember the signatures it has seen:
within the window a captured request can be replayed (keep the window short, or make writes
idempotent).

The response phase signs what goes back: ``X-Response-Signature: sha256=HEX`` over
``"TIMESTAMP\\n" + BODY``, TIMESTAMP being the request's, so that a client can check that the
answer comes from the gateway and belongs to its request.

Enable it with ``plugin_modules: [examples.hmac_plugin]`` and, at any level::

    plugins:
      - name: hmac-signature
        config: {secret_env: WEBHOOK_SECRET, max_skew_seconds: 300}
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from typing import Annotated

import msgspec

from fastgw.plugins import Plugin, Request, Response

_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
_JSON = ("Content-Type", "application/json")


class HmacConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The plugin's ``config``: one of ``secret`` or ``secret_env``, and the clock window."""

    #: The shared secret itself (fine for a demo; prefer secret_env).
    secret: str | None = None
    #: The name of an environment variable of the gateway process holding the secret.
    secret_env: str | None = None
    #: How far X-Timestamp may be from the gateway's clock, either way.
    max_skew_seconds: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 300
    #: Add X-Response-Signature to responses.
    sign_responses: bool = True

    def __post_init__(self) -> None:
        if (self.secret is None) == (self.secret_env is None):
            raise msgspec.ValidationError("set exactly one of `secret` and `secret_env`")
        if self.secret is not None and len(self.secret) < 16:
            raise msgspec.ValidationError("`secret` must be at least 16 characters")


def sign_request(secret: str | bytes, method: str, path: str, timestamp: str, body: bytes = b"") -> str:
    """The X-Signature value of a request (what clients compute)."""
    key = secret.encode() if isinstance(secret, str) else secret
    message = f"{method}\n{path}\n{timestamp}\n".encode() + body
    return "sha256=" + hmac.new(key, message, hashlib.sha256).hexdigest()


def _refuse(status: int, message: str) -> Response:
    return Response(status, [_JSON], msgspec.json.encode({"message": message}))


class HmacSignature(Plugin):
    """Refuse requests without a valid, fresh X-Signature; sign the responses."""

    name = "hmac-signature"
    # Above the built-in header-transform (800): check the request before anything edits it.
    priority = 1500
    Config = HmacConfig

    def __init__(self, config: HmacConfig) -> None:
        super().__init__(config)
        secret = config.secret if config.secret_env is None else os.environ.get(config.secret_env)
        if not secret:
            # Raised at config load: the config is refused, with this message and its path.
            raise ValueError(f"environment variable {config.secret_env} is not set")
        self.key = secret.encode()
        self.max_skew = config.max_skew_seconds

    def access(self, req: Request) -> Response | None:
        timestamp = req.header("X-Timestamp")
        signature = req.header("X-Signature")
        if timestamp is None or signature is None:
            return _refuse(401, "Missing X-Signature or X-Timestamp")
        match = _SIGNATURE.fullmatch(signature)
        if match is None or not timestamp.isascii() or not timestamp.isdigit():
            return _refuse(401, "Malformed X-Signature or X-Timestamp")
        if abs(time.time() - int(timestamp)) > self.max_skew:
            return _refuse(403, "Signature expired")
        target = f"{req.path}?{req.query}" if req.query else req.path
        expected = sign_request(self.key, req.method, target, timestamp, req.body)
        if not hmac.compare_digest(expected[7:].encode(), match.group(1).lower().encode()):
            return _refuse(403, "Signature mismatch")
        req.ctx["signed_at"] = timestamp  # per-request state lives in req.ctx, never on self
        return None

    def response(self, req: Request, resp: Response) -> None:
        timestamp = req.ctx.get("signed_at")
        if not self.config.sign_responses or timestamp is None:
            return
        message = f"{timestamp}\n".encode() + resp.body
        digest = hmac.new(self.key, message, hashlib.sha256).hexdigest()
        resp.set_header("X-Response-Signature", f"sha256={digest}")
