"""AWS_IAM authorization: AWS Signature Version 4 as API Gateway verifies it (service ``execute-api``).

The AWS documentation is the specification:

* "Create a signed AWS API request" / "Elements of an AWS API request signature" (IAM User Guide):
  the canonical request (method, canonical URI, canonical query string, canonical headers,
  signed headers, hashed payload), the string to sign, the signing-key derivation
  (``AWS4`` + secret -> date -> region -> service -> ``aws4_request``), the Authorization header
  form ``AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/execute-api/aws4_request,
  SignedHeaders=..., Signature=...`` and the query-string form (``X-Amz-Algorithm``,
  ``X-Amz-Credential``, ``X-Amz-Date``, ``X-Amz-Expires``, ``X-Amz-SignedHeaders``,
  ``X-Amz-Signature``). Every service but S3 URI-encodes the path a second time ("Each path
  segment must be URI-encoded twice"): the canonical URI is the path as sent (dot segments and
  empty segments removed, as botocore's ``normalize_url_path``) URI-encoded again.
* "Control access to a REST API with IAM permissions" and "How do I troubleshoot HTTP 403 errors
  from API Gateway?" (AWS Knowledge Center): the error bodies and ``x-amzn-ErrorType`` values
  API Gateway sends (403 in every case), quoted on each reply below.
* "$context variables": ``$context.identity.accessKey``, ``accountId``, ``caller``, ``user``,
  ``userArn`` of an IAM-authorized request.

fastgw verifies long-term access keys from ``iam.users`` only: it cannot verify STS session
tokens, so a request carrying ``X-Amz-Security-Token`` (header or query) is refused as AWS
refuses a token it does not recognise (UnrecognizedClientException) - fail closed.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import json
import os
import time
from email.utils import parsedate_tz
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from fastgw.authorizers import lambda_auth as la
from fastgw.server.replies import MISSING_AUTH_TOKEN, LocalReply

if TYPE_CHECKING:
    from fastgw.config.model import IamSettings
    from fastgw.pipeline.request import Request

__all__ = [
    "ALGORITHM",
    "SERVICE",
    "IamVerifier",
    "access_denied_reply",
    "mask_account",
]

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "execute-api"
_TERMINATOR = "aws4_request"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_UNSIGNED = "UNSIGNED-PAYLOAD"
#: X-Amz-Expires upper bound (SigV4 query auth: "The maximum value is 604800 seconds (7 days)").
MAX_EXPIRES = 604800
_JSON = ("content-type", "application/json")
_QUERY_AUTH = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-SignedHeaders", "X-Amz-Date")
_SAFE = "-_.~"

# ----------------------------------------------------------------------------------- replies


def _reply(
    message: str, error_type: str, key: str = "message", kind: str = "INVALID_SIGNATURE"
) -> LocalReply:
    body = json.dumps({key: message}, separators=(",", ":")).encode()
    return LocalReply(403, [_JSON, ("x-amzn-ErrorType", error_type)], body, kind, message)


#: Unknown access key id (Knowledge Center "troubleshoot HTTP 403": "The security token included
#: in the request is invalid."; header UnrecognizedClientException as AWS's JSON services send it).
INVALID_TOKEN = _reply(
    "The security token included in the request is invalid.", "UnrecognizedClientException"
)

_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details."
)


def _incomplete(message: str) -> LocalReply:
    return _reply(message, "IncompleteSignatureException")


def _invalid(message: str) -> LocalReply:
    return _reply(message, "InvalidSignatureException")


def mask_account(arn: str) -> str:
    """An execute-api ARN with its account id masked as API Gateway prints it in 403 bodies.

    Observed AWS bodies: "... on resource: arn:aws:execute-api:us-west-2:********2543:vd2gh6uqw3/
    api/GET/" (eight asterisks, then the account id's last four digits).
    """
    parts = arn.split(":", 5)
    if len(parts) == 6 and len(parts[4]) >= 4:
        parts[4] = "********" + parts[4][-4:]
        return ":".join(parts)
    return arn


def access_denied_reply(user_arn: str, resource_arn: str, explicit: bool) -> LocalReply:
    """403 AccessDeniedException when the caller's identity policy does not allow the method ARN.

    Knowledge Center ("troubleshoot signature mismatch errors ... IAM authentication"): "User:
    arn:aws:iam::xxxxxxxxxxxx:user/username is not authorized to perform: execute-api:Invoke on
    resource: arn:aws:execute-api:<region>:xxxxxxxxxxxx:<api-id>/stage/method/path because no
    identity-based policy allows the execute-api:Invoke action"; an explicit Deny ends "with an
    explicit deny in an identity-based policy" (IAM's wording). The body's key is "Message".
    """
    head = f"User: {user_arn} is not authorized to perform: {la.INVOKE_ACTION} on resource: "
    tail = (
        " with an explicit deny in an identity-based policy"
        if explicit
        else f" because no identity-based policy allows the {la.INVOKE_ACTION} action"
    )
    return _reply(
        head + mask_account(resource_arn) + tail, "AccessDeniedException", key="Message", kind="ACCESS_DENIED"
    )


# ------------------------------------------------------------------------------------ helpers


def _iso(ts: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ts))


_LAST_DATE: tuple[str, float | None] = ("", None)


def _parse_amz_date(value: str) -> float | None:
    # YYYYMMDDTHHMMSSZ, parsed by hand (no strptime / regex per request); the last one is kept
    # (one tuple, swapped atomically: threads never see a value with another value's time).
    global _LAST_DATE
    last = _LAST_DATE
    if value == last[0]:
        return last[1]
    ts = _parse_amz_date_uncached(value)
    _LAST_DATE = (value, ts)
    return ts


def _parse_amz_date_uncached(value: str) -> float | None:
    if len(value) != 16 or value[8] != "T" or value[15] != "Z":
        return None
    digits = value[:8] + value[9:15]
    if not digits.isdigit() or not digits.isascii():
        return None
    try:
        y, mo, d = int(value[0:4]), int(value[4:6]), int(value[6:8])
        h, mi, s = int(value[9:11]), int(value[11:13]), int(value[13:15])
        if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
            return None
        return float(calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)))
    except (ValueError, OverflowError):
        return None


def _parse_http_date(value: str) -> float | None:
    parsed = parsedate_tz(value)
    if parsed is None:
        return None
    try:
        return float(calendar.timegm(parsed[:9]) - (parsed[9] or 0))
    except (ValueError, OverflowError):
        return None


def _minutes(seconds: int) -> str:
    return f"{seconds // 60} min." if seconds % 60 == 0 else f"{seconds} sec."


_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"


def _encode(text: str) -> str:
    """SigV4 URI-encoding of a query key or value (given raw): decode, then encode all but unreserved."""
    if not text.strip(_UNRESERVED):  # PERF: already canonical (the common case)
        return text
    if "%" in text:
        text = unquote(text, errors="surrogateescape")
    return quote(text, safe=_SAFE, errors="surrogateescape")


def _bytes(text: str) -> bytes:
    # Header values arrive decoded as latin-1: encoding back gives the bytes the client signed.
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def _trimall(value: str) -> str:
    return " ".join(value.split())


_URIS: dict[str, str] = {}
_QUERIES: dict[tuple[str, bool], str] = {}


def _canonical_query(query: str, presigned: bool) -> str:
    """Every parameter (but X-Amz-Signature when presigned), names and values URI-encoded
    (unreserved characters kept), sorted by name then value. Memoised (bounded)."""
    if not query:
        return ""
    memo_key = (query, presigned)
    out = _QUERIES.get(memo_key)
    if out is None:
        pairs: list[tuple[str, str]] = []
        for pair in query.split("&"):
            if not pair:
                continue
            name, _, val = pair.partition("=")
            if presigned and name == "X-Amz-Signature":
                continue
            pairs.append((_encode(name), _encode(val)))
        pairs.sort()
        out = "&".join(f"{k}={v}" for k, v in pairs)
        if len(_QUERIES) >= 4096:
            _QUERIES.clear()
        _QUERIES[memo_key] = out
    return out


def _canonical_uri(path: str) -> str:
    """The path as sent (fastgw's normal form: dot and empty segments removed) URI-encoded again."""
    uri = _URIS.get(path)
    if uri is None:
        uri = quote(path or "/", safe="/~")
        if len(_URIS) >= 4096:
            _URIS.clear()
        _URIS[path] = uri
    return uri


def _user_id(arn: str) -> str:
    """A stable IAM-style unique id (AIDA + 17 base32 characters) derived from the user's ARN.

    AWS puts the IAM user's unique id (``AIDA...``) in ``caller`` and ``user``; fastgw's config
    has no such id, so one is derived from the ARN (same ARN, same id, on every node).
    """
    digest = hashlib.sha256(arn.encode()).digest()
    return "AIDA" + base64.b32encode(digest).decode()[:17]


class _User:
    __slots__ = ("access_key", "arn", "identity", "policy", "secret")

    def __init__(self, access_key: str, secret: str, arn: str, policy: la.CompiledPolicy | None) -> None:
        self.access_key = access_key
        self.secret = ("AWS4" + secret).encode()
        self.arn = arn
        self.policy = policy
        parts = arn.split(":")
        if len(parts) < 6 or parts[0] != "arn" or parts[2] not in ("iam", "sts"):
            raise ValueError(
                f"iam user {access_key}: arn {arn!r} is not an IAM ARN (arn:aws:iam::ACCOUNT:user/NAME)"
            )
        account = parts[4]
        if len(account) != 12 or not account.isdigit():
            raise ValueError(f"iam user {access_key}: arn {arn!r} has no 12-digit account id")
        uid = account if parts[5] == "root" else _user_id(arn)
        # $context.identity of an IAM user: its key, its account, its unique id as caller and user.
        self.identity: dict[str, Any] = {
            "accessKey": access_key,
            "accountId": account,
            "caller": uid,
            "user": uid,
            "userArn": arn,
        }


# ---------------------------------------------------------------------------------- verifier


class IamVerifier:
    """Verifies SigV4-signed requests against ``iam.users`` and their identity policies.

    ``verify(req, now)`` returns the caller's identity (``$context.identity`` fields) or the
    403 LocalReply AWS sends. Build once per config; it caches signing keys per (key, date).
    """

    __slots__ = ("_keys", "_region", "_skew", "_users", "account_id", "region")

    def __init__(self, settings: IamSettings, region: str, account_id: str) -> None:
        self.region = region
        self.account_id = account_id
        self._region = region
        self._skew = int(settings.clock_skew_seconds)
        users: dict[str, _User] = {}
        for i, user in enumerate(settings.users):
            where = f"iam.users[{i}] ({user.accessKeyId})"
            if user.accessKeyId in users:
                raise ValueError(f"{where}: duplicate accessKeyId")
            if (user.secretAccessKey is None) == (user.secret_env is None):
                raise ValueError(f"{where}: set exactly one of secretAccessKey and secret_env")
            secret = user.secretAccessKey
            if secret is None:
                secret = os.environ.get(user.secret_env or "")
                if not secret:
                    raise ValueError(f"{where}: environment variable {user.secret_env!r} is unset or empty")
            policy = None
            if user.policy is not None:
                try:
                    policy = la.compile_policy(user.policy)
                except la.AuthorizerConfigError as ex:
                    raise ValueError(f"{where}: policy: {ex}") from None
            users[user.accessKeyId] = _User(user.accessKeyId, secret, user.arn, policy)
        self._users = users
        self._keys: dict[tuple[str, str], bytes] = {}

    # ------------------------------------------------------------------------- signing keys

    def _signing_key(self, user: _User, date: str) -> bytes:
        cache_key = (user.access_key, date)
        key = self._keys.get(cache_key)
        if key is None:
            k = hmac.digest(user.secret, date.encode(), "sha256")
            k = hmac.digest(k, self._region.encode(), "sha256")
            k = hmac.digest(k, SERVICE.encode(), "sha256")
            key = hmac.digest(k, _TERMINATOR.encode(), "sha256")
            if len(self._keys) >= 1024:
                self._keys.clear()
            self._keys[cache_key] = key
        return key

    # ------------------------------------------------------------------------------ policy

    def may(self, identity: dict[str, Any], arn: str, action: str) -> bool:
        """Whether the identity's policy allows ``action`` (e.g. execute-api:InvalidateCache) on ``arn``."""
        user = self._users.get(identity["accessKey"])
        return user is not None and user.policy is not None and user.policy.decide(arn, action) == la.ALLOW

    def authorize(self, identity: dict[str, Any], arn: str) -> bool | None:
        """The identity policy's decision for ``arn``: True (Allow), False (explicit Deny), None (neither).

        The value ``resource_policy.combine`` takes as ``auth_allowed``. No policy: None.
        """
        user = self._users.get(identity["accessKey"])
        if user is None or user.policy is None:
            return None
        result = user.policy.decide(arn)
        if result == la.ALLOW:
            return True
        return False if result == la.EXPLICIT_DENY else None

    # ------------------------------------------------------------------------------ verify

    def verify(self, req: Request, now: float, *, authorize: bool = True) -> LocalReply | dict[str, Any]:
        """Verify ``req``'s signature at time ``now`` (epoch seconds); the identity dict or a 403.

        With ``authorize`` (the default) the user's identity policy must also allow
        ``method_arn(req)`` (IAM without a resource policy); pass False when a resource policy
        decides together with it (``authorize()`` then ``resource_policy.combine``).
        """
        auth = req.header("authorization")
        if auth is not None:
            parsed = self._parse_header(auth, req)
            presigned = False
        else:
            query = req.query
            if "X-Amz-" not in query:
                # "Missing Authentication Token": an IAM method called without a signature.
                return MISSING_AUTH_TOKEN
            parsed = self._parse_query(query)
            if parsed is None:
                return MISSING_AUTH_TOKEN
            presigned = True
        if isinstance(parsed, LocalReply):
            return parsed
        credential, signed_names, signature, amz_date, expires = parsed

        # Credential scope: AKID/DATE/REGION/SERVICE/aws4_request.
        scope = credential.split("/")
        if len(scope) != 5:
            return _incomplete(
                "Credential must have exactly 5 slash-delimited elements, e.g. "
                f"keyid/date/region/service/term, got '{credential}'"
            )
        akid, scope_date, scope_region, scope_service, terminator = scope

        # Request time, and the clock-skew / expiry window.
        ts = _parse_amz_date(amz_date) if not amz_date[:1].isalpha() else _parse_http_date(amz_date)
        if ts is None:
            return _incomplete(
                f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601"
            )
        iso = _iso(ts)
        skew = self._skew
        if presigned:
            if now > ts + expires:
                return _invalid(
                    f"Signature expired: {iso} is now earlier than {_iso(now - expires)} "
                    f"({_iso(now)} - {_minutes(expires)})"
                )
            if ts - skew > now:
                return _invalid(
                    f"Signature not yet current: {iso} is still later than {_iso(now + skew)} "
                    f"({_iso(now)} + {_minutes(skew)})"
                )
        elif ts < now - skew:
            return _invalid(
                f"Signature expired: {iso} is now earlier than {_iso(now - skew)} "
                f"({_iso(now)} - {_minutes(skew)})"
            )
        elif ts > now + skew:
            return _invalid(
                f"Signature not yet current: {iso} is still later than {_iso(now + skew)} "
                f"({_iso(now)} + {_minutes(skew)})"
            )

        user = self._users.get(akid)
        if user is None:
            return INVALID_TOKEN
        # Session credentials (STS) cannot be verified here: refuse them (fail closed).
        if req.header("x-amz-security-token") is not None or (
            presigned and "X-Amz-Security-Token=" in req.query
        ):
            return INVALID_TOKEN
        if scope_date != iso[:8]:
            return _invalid(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                f"'{scope_date}' != '{iso[:8]}', from '{iso}'."
            )
        if scope_region != self._region:
            return _invalid(f"Credential should be scoped to a valid region, not '{scope_region}'. ")
        if scope_service != SERVICE:
            return _invalid(f"Credential should be scoped to correct service: '{SERVICE}'. ")
        if terminator != _TERMINATOR:
            return _invalid(
                f"Credential should be scoped with a valid terminator: '{_TERMINATOR}', not '{terminator}'. "
            )
        if "host" not in signed_names:
            return _incomplete("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")

        # Payload hash: X-Amz-Content-Sha256 when sent (it must then be the body's hash or
        # UNSIGNED-PAYLOAD), else SHA-256 of the body.
        content_sha = req.header("x-amz-content-sha256")
        if content_sha is not None:
            if content_sha != _UNSIGNED:
                actual = hashlib.sha256(req.body).hexdigest() if req.body else _EMPTY_SHA256
                if content_sha.lower() != actual:
                    return _invalid(
                        "The provided 'x-amz-content-sha256' header does not match what was computed."
                    )
            payload_hash = content_sha
        else:
            payload_hash = hashlib.sha256(req.body).hexdigest() if req.body else _EMPTY_SHA256

        canonical = self._canonical_request(req, signed_names, payload_hash, presigned)
        key = self._signing_key(user, scope_date)
        string_to_sign = (
            f"{ALGORITHM}\n{iso}\n{scope_date}/{scope_region}/{SERVICE}/{_TERMINATOR}\n"
            + hashlib.sha256(_bytes(canonical)).hexdigest()
        )
        expected = hmac.digest(key, string_to_sign.encode(), "sha256").hex()
        if not hmac.compare_digest(expected, signature):
            if presigned and content_sha is None:
                # A presigned URL may sign UNSIGNED-PAYLOAD (as S3's presigners do) instead of the
                # body's hash: accept either; the signer chose which.
                alt = self._canonical_request(req, signed_names, _UNSIGNED, presigned)
                alt_sts = string_to_sign.rpartition("\n")[0] + "\n" + hashlib.sha256(_bytes(alt)).hexdigest()
                if hmac.compare_digest(hmac.digest(key, alt_sts.encode(), "sha256").hex(), signature):
                    return self._authorized(user, req, authorize)
            # API Gateway's body adds the canonical string and string-to-sign it computed
            # (observed execute-api bodies).
            return _invalid(
                f"{_MISMATCH}\n\nThe Canonical String for this request should have been\n'{canonical}'\n\n"
                f"The String-to-Sign should have been\n'{string_to_sign}'\n"
            )
        return self._authorized(user, req, authorize)

    def _authorized(self, user: _User, req: Request, authorize: bool) -> LocalReply | dict[str, Any]:
        if authorize:
            arn = la.method_arn(req)
            result = user.policy.decide(arn) if user.policy is not None else la.IMPLICIT_DENY
            if result != la.ALLOW:
                return access_denied_reply(user.arn, arn, result == la.EXPLICIT_DENY)
        return user.identity.copy()

    # ----------------------------------------------------------------------- parse forms

    def _parse_header(self, auth: str, req: Request) -> LocalReply | tuple[str, list[str], str, str, int]:
        """Parse ``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...``.

        AWS (observed): a part without '=' gives IncompleteSignatureException "Invalid key=value
        pair (missing equal-sign) in Authorization header (hashed with SHA-256 and encoded with
        Base64): '...'." (earlier AWS echoed the part and the header in clear); missing parameters
        give "Authorization header requires 'Credential' parameter. ... Authorization=<value>".
        """
        value = auth.strip()
        algorithm, _, rest = value.partition(" ")
        params: dict[str, str] = {}
        for part in rest.split(","):
            part = part.strip()
            if not part:
                continue
            name, eq, pval = part.partition("=")
            if not eq:
                digest = base64.b64encode(
                    hashlib.sha256(auth.encode("utf-8", "surrogateescape")).digest()
                ).decode()
                return _incomplete(
                    "Invalid key=value pair (missing equal-sign) in Authorization header "
                    f"(hashed with SHA-256 and encoded with Base64): '{digest}'."
                )
            params[name] = pval
        amz_date = req.header("x-amz-date")
        if amz_date is None:
            amz_date = req.header("date")
        missing = [
            f"Authorization header requires '{name}' parameter."
            for name in ("Credential", "Signature", "SignedHeaders")
            if not params.get(name)
        ]
        if amz_date is None:
            missing.append(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
            )
        if missing:
            return _incomplete(" ".join(missing) + f" Authorization={value}")
        if algorithm != ALGORITHM:
            return _incomplete(f"Unsupported AWS 'algorithm': '{algorithm}'")
        signed = params["SignedHeaders"].lower().split(";")
        return params["Credential"], signed, params["Signature"], amz_date.strip(), 0

    def _parse_query(self, query: str) -> LocalReply | tuple[str, list[str], str, str, int] | None:
        found: dict[str, str] = {}
        for pair in query.split("&"):
            if not pair.startswith("X-Amz-"):
                continue
            name, _, val = pair.partition("=")
            found[name] = unquote(val)
        if (
            "X-Amz-Algorithm" not in found
            and "X-Amz-Signature" not in found
            and "X-Amz-Credential" not in found
        ):
            return None
        missing = [
            f"AWS query-string parameters must include '{n}'." for n in _QUERY_AUTH if not found.get(n)
        ]
        if missing:
            return _incomplete(" ".join(missing) + " Re-examine the query-string parameters.")
        if found["X-Amz-Algorithm"] != ALGORITHM:
            return _incomplete(f"Unsupported AWS 'algorithm': '{found['X-Amz-Algorithm']}'")
        raw_expires = found.get("X-Amz-Expires", "")
        if not raw_expires.isdigit() or not raw_expires.isascii():
            return _incomplete(
                "AWS query-string parameters must include 'X-Amz-Expires'. "
                "Re-examine the query-string parameters."
            )
        expires = int(raw_expires)
        if expires > MAX_EXPIRES:
            return _invalid(f"X-Amz-Expires must be less than a week (in seconds) that is {MAX_EXPIRES}")
        signed = found["X-Amz-SignedHeaders"].lower().split(";")
        return found["X-Amz-Credential"], signed, found["X-Amz-Signature"], found["X-Amz-Date"], expires

    # ------------------------------------------------------------------- canonical request

    def _canonical_request(self, req: Request, signed: list[str], payload_hash: str, presigned: bool) -> str:
        # Canonical query: every parameter (but X-Amz-Signature when presigned), names and values
        # URI-encoded (unreserved characters kept), sorted by name then value.
        canonical_query = _canonical_query(req.query, presigned)
        # Canonical headers: lower-case names sorted, values trimmed with sequential spaces
        # collapsed, repeated headers joined with ','.
        names = sorted(set(signed))
        values: dict[str, list[str]] = {}
        wanted = set(names)
        for name, val in req.headers:
            lname = name.lower()
            if lname in wanted:
                values.setdefault(lname, []).append(_trimall(val))
        header_lines = "".join(f"{n}:{','.join(values.get(n, ()))}\n" for n in names)
        return (
            f"{req.method}\n{_canonical_uri(req.path)}\n{canonical_query}\n{header_lines}\n"
            f"{';'.join(names)}\n{payload_hash}"
        )
