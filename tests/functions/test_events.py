"""Lambda proxy / authorizer events and Lambda proxy responses, against AWS's documentation.

Each ``test_doc_*`` test rebuilds the request behind an example event of the AWS API Gateway
developer guide and compares the event key by key with the documented one (the documented
example is copied verbatim into ``DOC_*``); what is request-specific in the example (ids, IPs,
times) is given to the request so that it comes out the same. Where AWS's real events differ
from a schematic example, the test says so and checks the real behaviour.
"""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import orjson
import pytest

from fastgw.config.compile import ApiRuntime, MockRuntime, RouteRuntime, StageRuntime
from fastgw.functions import events
from fastgw.functions.events import (
    BadResponse,
    body_is_binary,
    build_event_v1,
    build_event_v2,
    build_request_authorizer_event_v1,
    build_request_authorizer_event_v2,
    build_token_authorizer_event,
    parse_response_v1,
    parse_response_v2,
)
from fastgw.pipeline.request import Request, Response
from fastgw.server import replies
from fastgw_core.router import RouteTrie


def make_route(
    kind: str = "rest",
    key: str = "GET /pets/{id}",
    stage: str = "prod",
    variables: dict[str, str] | None = None,
    api_id: str = "abcdef1234",
    binary: tuple[str, ...] = (),
    account_id: str = "123456789012",
    region: str = "us-east-1",
    key_required: bool = False,
) -> RouteRuntime:
    api = ApiRuntime(
        "api",
        api_id,
        kind,
        replies.NOT_FOUND,
        region=region,
        account_id=account_id,
        binary_types=binary,
    )
    st = StageRuntime(api, stage, dict(variables or {}), RouteTrie())
    if key == "$default":
        method, template = "$default", ""
    else:
        method, _, template = key.partition(" ")
    return RouteRuntime(
        key,
        api,
        st,
        MockRuntime(replies.LocalReply(200)),
        api_key_required=key_required,
        method=method,
        template=template,
    )


def make_req(
    route: RouteRuntime,
    method: str = "GET",
    path: str = "/prod/pets/1",
    resource_path: str = "/pets/1",
    query: str = "",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    source_ip: str = "192.0.2.1",
    request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
    time_ms: int = 1428582896000,
    params: dict[str, str] | None = None,
    domain: str | None = None,
) -> Request:
    headers = list(
        headers if headers is not None else [("Host", "abcdef1234.execute-api.us-east-1.amazonaws.com")]
    )
    if domain is None:
        host = next((v for k, v in headers if k.lower() == "host"), "")
        domain = host.partition(":")[0]
    return Request(
        route,
        method,
        path,
        resource_path,
        query,
        headers,
        body,
        source_ip,
        request_id,
        time_ms,
        params,
        domain,
    )


def assert_documented(event: dict[str, Any], doc: dict[str, Any], skip: set[str], where: str = "") -> None:
    """Every key of the documented example is in the event with the documented value.

    ``skip`` names the dotted paths whose value differs on purpose (said at each use).
    """
    for key, value in doc.items():
        path = f"{where}{key}"
        if path in skip:
            continue
        assert key in event, f"{path} is missing"
        if isinstance(value, dict) and isinstance(event[key], dict):
            assert_documented(event[key], value, skip, path + ".")
        else:
            assert event[key] == value, f"{path}: {event[key]!r} != {value!r}"


IDENTITY_NULLS = {
    "accessKey": None,
    "accountId": None,
    "caller": None,
    "cognitoAuthenticationProvider": None,
    "cognitoAuthenticationType": None,
    "cognitoIdentityId": None,
    "cognitoIdentityPoolId": None,
    "principalOrgId": None,
    "user": None,
    "userArn": None,
}

# ---------------------------------------------------------------------------------------------
# REST API, "Input format of a Lambda function for proxy integration" (developer guide example:
# POST /testStage/hello/world?name=me on a {proxy+} resource, stage variable
# stageVariableName=stageVariableValue). Verbatim, less the CloudFront headers of the example.
DOC_REST_EVENT: dict[str, Any] = {
    "resource": "/{proxy+}",
    "path": "/hello/world",
    "httpMethod": "POST",
    "headers": {
        "Accept": "*/*",
        "Accept-Encoding": "gzip, deflate",
        "cache-control": "no-cache",
        "Content-Type": "application/json",
        "headerName": "headerValue",
        "Host": "gy415nuibc.execute-api.us-east-1.amazonaws.com",
        "Postman-Token": "9f583ef0-ed83-4a38-aef3-eb9ce3f7a57f",
        "User-Agent": "PostmanRuntime/2.4.5",
        "X-Forwarded-For": "54.240.196.186, 54.182.214.83",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    },
    "multiValueHeaders": {
        "Accept": ["*/*"],
        "Accept-Encoding": ["gzip, deflate"],
        "cache-control": ["no-cache"],
        "Content-Type": ["application/json"],
        "headerName": ["headerValue"],
        "Host": ["gy415nuibc.execute-api.us-east-1.amazonaws.com"],
        "Postman-Token": ["9f583ef0-ed83-4a38-aef3-eb9ce3f7a57f"],
        "User-Agent": ["PostmanRuntime/2.4.5"],
        "X-Forwarded-For": ["54.240.196.186, 54.182.214.83"],
        "X-Forwarded-Port": ["443"],
        "X-Forwarded-Proto": ["https"],
    },
    "queryStringParameters": {"name": "me", "multivalueName": "me"},
    "multiValueQueryStringParameters": {"name": ["me"], "multivalueName": ["you", "me"]},
    "pathParameters": {"proxy": "hello/world"},
    "stageVariables": {"stageVariableName": "stageVariableValue"},
    "requestContext": {
        "accountId": "12345678912",
        "resourceId": "roq9wj",
        "stage": "testStage",
        "requestId": "deef4878-7910-11e6-8f14-25afc3e9ae33",
        "identity": {
            "cognitoIdentityPoolId": None,
            "accountId": None,
            "cognitoIdentityId": None,
            "caller": None,
            "apiKey": None,
            "sourceIp": "192.168.196.186",
            "cognitoAuthenticationType": None,
            "cognitoAuthenticationProvider": None,
            "userArn": None,
            "userAgent": "PostmanRuntime/2.4.5",
            "user": None,
        },
        "resourcePath": "/{proxy+}",
        "httpMethod": "POST",
        "apiId": "gy415nuibc",
    },
    "body": '{\r\n\t"a": 1\r\n}',
    "isBase64Encoded": False,
}


def doc_rest_request() -> Request:
    route = make_route(
        "rest",
        "ANY /{proxy+}",
        stage="testStage",
        variables={"stageVariableName": "stageVariableValue"},
        api_id="gy415nuibc",
        account_id="123456789012",
    )
    body = b'{\r\n\t"a": 1\r\n}'
    headers = [(k, v) for k, v in DOC_REST_EVENT["headers"].items()]
    headers.insert(4, ("Content-Length", str(len(body))))  # the gateway's Request has one
    return make_req(
        route,
        "POST",
        "/testStage/hello/world",
        "/hello/world",
        "name=me&multivalueName=you&multivalueName=me",
        headers,
        body,
        source_ip="192.168.196.186",
        request_id="deef4878-7910-11e6-8f14-25afc3e9ae33",
        time_ms=1519166937665,
        params={"proxy": "hello/world"},
    )


def test_doc_rest_proxy_event() -> None:
    event = build_event_v1(doc_rest_request())
    # Request-specific in the example: accountId (11 digits there), resourceId (AWS's opaque id).
    # Older example: identity.apiKey null; AWS sends apiKey only for methods requiring a key.
    skip = {"requestContext.accountId", "requestContext.resourceId", "requestContext.identity.apiKey"}
    assert_documented(event, DOC_REST_EVENT, skip)
    # The whole event, exactly (keys AWS adds beyond the old example, as in its newer example).
    assert event == {
        **DOC_REST_EVENT,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "gy415nuibc",
            "domainName": "gy415nuibc.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "gy415nuibc",
            "extendedRequestId": "deef4878-7910-11e6-8f14-25afc3e9ae33",
            "httpMethod": "POST",
            "identity": {
                **IDENTITY_NULLS,
                "sourceIp": "192.168.196.186",
                "userAgent": "PostmanRuntime/2.4.5",
            },
            "path": "/testStage/hello/world",
            "protocol": "HTTP/1.1",
            "requestId": "deef4878-7910-11e6-8f14-25afc3e9ae33",
            "requestTime": "20/Feb/2018:22:48:57 +0000",
            "requestTimeEpoch": 1519166937665,
            "resourceId": event["requestContext"]["resourceId"],
            "resourcePath": "/{proxy+}",
            "stage": "testStage",
        },
    }
    assert "Content-Length" not in event["headers"]  # REST APIs do not pass it on
    rid = event["requestContext"]["resourceId"]
    assert len(rid) == 6 and rid.isalnum() and rid == rid.lower()
    assert list(event) == [
        "resource",
        "path",
        "httpMethod",
        "headers",
        "multiValueHeaders",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "pathParameters",
        "stageVariables",
        "requestContext",
        "body",
        "isBase64Encoded",
    ]
    orjson.dumps(event)


def test_doc_rest_iam_request_context_fields() -> None:
    """The guide's second REST example (GET /test/ with AWS_IAM): requestTime, path, protocol."""
    route = make_route("rest", "GET /", stage="test", api_id="qr2gd9cfmf")
    req = make_req(
        route,
        "GET",
        "/test/",
        "/",
        headers=[
            ("Host", "qr2gd9cfmf.execute-api.us-east-1.amazonaws.com"),
            ("User-Agent", "PostmanRuntime/7.1.1"),
        ],
        source_ip="51.240.196.104",
        request_id="3c3ecbaa-1690-11e8-ae31-8f39f1d24afd",
        time_ms=1519166937665,
    )
    ctx = build_event_v1(req)["requestContext"]
    doc = {
        "requestTime": "20/Feb/2018:22:48:57 +0000",
        "path": "/test/",
        "accountId": "123456789012",
        "protocol": "HTTP/1.1",
        "stage": "test",
        "requestTimeEpoch": 1519166937665,
        "requestId": "3c3ecbaa-1690-11e8-ae31-8f39f1d24afd",
        "resourcePath": "/",
        "httpMethod": "GET",
        "apiId": "qr2gd9cfmf",
    }
    assert_documented(ctx, doc, set())
    assert "authorizer" not in ctx


# ---------------------------------------------------------------------------------------------
# HTTP API, payload format 1.0 ("Create AWS Lambda proxy integrations for HTTP APIs").
DOC_HTTP_V1_EVENT: dict[str, Any] = {
    "version": "1.0",
    "resource": "/my/path",
    "path": "/my/path",
    "httpMethod": "GET",
    "headers": {"Header1": "value1", "Header2": "value2"},
    "multiValueHeaders": {"Header1": ["value1"], "Header2": ["value1", "value2"]},
    "queryStringParameters": {"parameter1": "value1", "parameter2": "value"},
    "multiValueQueryStringParameters": {"parameter1": ["value1", "value2"], "parameter2": ["value"]},
    "requestContext": {
        "accountId": "123456789012",
        "apiId": "id",
        "authorizer": {"claims": None, "scopes": None},
        "domainName": "id.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "id",
        "extendedRequestId": "request-id",
        "httpMethod": "GET",
        "identity": {
            "accessKey": None,
            "accountId": None,
            "caller": None,
            "cognitoAuthenticationProvider": None,
            "cognitoAuthenticationType": None,
            "cognitoIdentityId": None,
            "cognitoIdentityPoolId": None,
            "principalOrgId": None,
            "sourceIp": "IP",
            "user": None,
            "userAgent": "user-agent",
            "userArn": None,
        },
        "path": "/my/path",
        "protocol": "HTTP/1.1",
        "requestId": "id=",
        "requestTime": "04/Mar/2020:19:15:17 +0000",
        "requestTimeEpoch": 1583349317135,
        "resourceId": None,
        "resourcePath": "/my/path",
        "stage": "$default",
    },
    "pathParameters": None,
    "stageVariables": None,
    "body": "Hello from Lambda!",
    "isBase64Encoded": False,
}


def doc_http_v1_request() -> Request:
    route = make_route("http", "GET /my/path", stage="$default", api_id="id")
    headers = [
        ("Host", "id.execute-api.us-east-1.amazonaws.com"),
        ("Header1", "value1"),
        ("Header2", "value1"),
        ("Header2", "value2"),
        ("User-Agent", "user-agent"),
        ("Content-Type", "text/plain"),
        ("Content-Length", "18"),
    ]
    return make_req(
        route,
        "GET",
        "/my/path",
        "/my/path",
        "parameter1=value1&parameter1=value2&parameter2=value",
        headers,
        b"Hello from Lambda!",
        source_ip="IP",
        request_id="id=",
        time_ms=1583349317135,
    )


def test_doc_http_v1_event() -> None:
    event = build_event_v1(doc_http_v1_request())
    # extendedRequestId: request-specific (ours is the request id); resourceId: the example has
    # null, AWS's real events carry the route key ("GET /my/path").
    # queryStringParameters.parameter1: this schematic example shows the first of two values
    # (while its headers show the last); AWS's recorded REST events keep the last value
    # ("category=electronics&category=books" -> "books"), which both 1.0 formats follow here.
    skip = {
        "requestContext.extendedRequestId",
        "requestContext.resourceId",
        "queryStringParameters.parameter1",
    }
    assert_documented(event, DOC_HTTP_V1_EVENT, skip)
    assert event["queryStringParameters"]["parameter1"] == "value2"
    assert event["requestContext"]["resourceId"] == "GET /my/path"
    assert event["requestContext"]["extendedRequestId"] == "id="
    # AWS's real HTTP 1.0 events also carry identity.cognitoAmr (null).
    assert event["requestContext"]["identity"] == {
        **DOC_HTTP_V1_EVENT["requestContext"]["identity"],
        "cognitoAmr": None,
    }
    assert event["headers"] == {
        "Host": "id.execute-api.us-east-1.amazonaws.com",
        "Header1": "value1",
        "Header2": "value2",
        "User-Agent": "user-agent",
        "Content-Type": "text/plain",
        "Content-Length": "18",  # HTTP APIs pass it on
    }
    assert set(event) == set(DOC_HTTP_V1_EVENT)
    assert set(event["requestContext"]) == set(DOC_HTTP_V1_EVENT["requestContext"])
    assert next(iter(event)) == "version"
    orjson.dumps(event)


def test_http_v1_named_stage_and_default_route() -> None:
    # AWS's HTTP 1.0 events: path and requestContext.path carry a named stage's prefix.
    route = make_route("http", "GET /api/core/services", stage="dev")
    event = build_event_v1(make_req(route, "GET", "/dev/api/core/services", "/api/core/services"))
    assert event["path"] == "/dev/api/core/services"
    assert event["requestContext"]["path"] == "/dev/api/core/services"
    assert event["resource"] == "/api/core/services"
    assert event["requestContext"]["resourcePath"] == "/api/core/services"
    assert event["requestContext"]["stage"] == "dev"
    default = make_route("http", "$default", stage="$default")
    event = build_event_v1(make_req(default, "GET", "/", "/"))
    assert event["resource"] == "$default"
    assert event["requestContext"]["resourcePath"] == "$default"
    assert event["requestContext"]["resourceId"] == "$default"


# ---------------------------------------------------------------------------------------------
# HTTP API, payload format 2.0.
DOC_V2_EVENT: dict[str, Any] = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/my/path",
    "rawQueryString": "parameter1=value1&parameter1=value2&parameter2=value",
    "cookies": ["cookie1", "cookie2"],
    "headers": {"header1": "value1", "header2": "value1,value2"},
    "queryStringParameters": {"parameter1": "value1,value2", "parameter2": "value"},
    "requestContext": {
        "accountId": "123456789012",
        "apiId": "api-id",
        "authorizer": {
            "jwt": {"claims": {"claim1": "value1", "claim2": "value2"}, "scopes": ["scope1", "scope2"]},
        },
        "domainName": "id.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "id",
        "http": {
            "method": "POST",
            "path": "/my/path",
            "protocol": "HTTP/1.1",
            "sourceIp": "IP",
            "userAgent": "agent",
        },
        "requestId": "id",
        "routeKey": "$default",
        "stage": "$default",
        "time": "12/Mar/2020:19:03:58 +0000",
        "timeEpoch": 1583348638390,
    },
    "body": "Hello from Lambda",
    "pathParameters": {"parameter1": "value1"},
    "isBase64Encoded": False,
    "stageVariables": {"stageVariable1": "value1", "stageVariable2": "value2"},
}


def doc_v2_request(authorizer: dict[str, Any] | None = None) -> Request:
    route = make_route(
        "http",
        "$default",
        stage="$default",
        variables={"stageVariable1": "value1", "stageVariable2": "value2"},
        api_id="api-id",
    )
    headers = [
        ("Host", "id.execute-api.us-east-1.amazonaws.com"),
        ("Header1", "value1"),
        ("Header2", "value1"),
        ("Cookie", "cookie1; cookie2"),
        ("Header2", "value2"),
        ("User-Agent", "agent"),
        ("Content-Type", "text/plain; charset=utf-8"),
    ]
    req = make_req(
        route,
        "POST",
        "/my/path",
        "/my/path",
        "parameter1=value1&parameter1=value2&parameter2=value",
        headers,
        b"Hello from Lambda",
        source_ip="IP",
        request_id="id",
        time_ms=1583348638390,
        params={"parameter1": "value1"},
    )
    req.authorizer = authorizer
    return req


def test_doc_v2_event() -> None:
    jwt = {"claims": {"claim1": "value1", "claim2": "value2"}, "scopes": ["scope1", "scope2"]}
    event = build_event_v2(doc_v2_request({"jwt": jwt}))
    # The example's "time" says 12/Mar but its timeEpoch (1583348638390) is 04/Mar 19:03:58.
    skip = {"requestContext.time"}
    assert_documented(event, DOC_V2_EVENT, skip)
    assert event["requestContext"]["time"] == "04/Mar/2020:19:03:58 +0000"
    assert event["headers"] == {
        "host": "id.execute-api.us-east-1.amazonaws.com",
        "header1": "value1",
        "header2": "value1,value2",
        "user-agent": "agent",
        "content-type": "text/plain; charset=utf-8",
    }
    assert set(event) == set(DOC_V2_EVENT)
    assert set(event["requestContext"]) == set(DOC_V2_EVENT["requestContext"])
    assert event["requestContext"]["authorizer"] == {"jwt": jwt}
    orjson.dumps(event)


def test_v2_lambda_authorizer_context() -> None:
    event = build_event_v2(doc_v2_request({"principalId": "me", "exampleKey1": "exampleValue1", "n": 1}))
    assert event["requestContext"]["authorizer"] == {"lambda": {"exampleKey1": "exampleValue1", "n": 1}}
    simple = build_event_v2(doc_v2_request({"exampleKey2": "exampleValue2"}))
    assert simple["requestContext"]["authorizer"] == {"lambda": {"exampleKey2": "exampleValue2"}}


def test_v2_iam_caller_and_client_certificate() -> None:
    req = doc_v2_request(None)
    req.iam = {
        "accessKey": "AKIAIOSFODNN7EXAMPLE",
        "accountId": "123456789012",
        "caller": "AIDACKCEVSQ6C2EXAMPLE",
        "user": "AIDACKCEVSQ6C2EXAMPLE",
        "userArn": "arn:aws:iam::123456789012:user/alice",
    }
    cert = {
        "clientCertPem": "-----BEGIN CERTIFICATE-----",
        "subjectDN": "CN=client",
        "issuerDN": "CN=ca",
        "serialNumber": "a1",
        "validity": {"notBefore": "x", "notAfter": "y"},
    }
    req.client_cert = cert
    ctx = build_event_v2(req)["requestContext"]
    assert ctx["authorizer"] == {
        "iam": {
            "accessKey": "AKIAIOSFODNN7EXAMPLE",
            "accountId": "123456789012",
            "callerId": "AIDACKCEVSQ6C2EXAMPLE",
            "cognitoIdentity": None,
            "principalOrgId": None,
            "userArn": "arn:aws:iam::123456789012:user/alice",
            "userId": "AIDACKCEVSQ6C2EXAMPLE",
        }
    }
    assert ctx["authentication"] == {"clientCert": cert}


def test_v2_minimal_event_leaves_out_empty_fields() -> None:
    route = make_route("http", "$default", stage="$default", api_id="xxx")
    req = make_req(
        route,
        "GET",
        "/",
        "/",
        headers=[("Host", "xxx.execute-api.us-east-1.amazonaws.com"), ("User-Agent", "curl/7.64.1")],
        source_ip="65.78.31.245",
        request_id="MIZRNhJtIAMEMDw=",
        time_ms=1588804615616,
    )
    assert build_event_v2(req) == {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {"host": "xxx.execute-api.us-east-1.amazonaws.com", "user-agent": "curl/7.64.1"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "xxx",
            "domainName": "xxx.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "xxx",
            "http": {
                "method": "GET",
                "path": "/",
                "protocol": "HTTP/1.1",
                "sourceIp": "65.78.31.245",
                "userAgent": "curl/7.64.1",
            },
            "requestId": "MIZRNhJtIAMEMDw=",
            "routeKey": "$default",
            "stage": "$default",
            "time": "06/May/2020:22:36:55 +0000",
            "timeEpoch": 1588804615616,
        },
        "isBase64Encoded": False,
    }


def test_v2_named_stage_raw_path_and_cookies() -> None:
    route = make_route("http", "GET /pets/{id}", stage="dev")
    req = make_req(
        route,
        "GET",
        "/dev/pets/1",
        "/pets/1",
        "a=1",
        [("Host", "h.example.com:8080"), ("Cookie", "a=1; b=2"), ("cookie", "c=3")],
        params={"id": "1"},
    )
    event = build_event_v2(req)
    assert event["rawPath"] == "/dev/pets/1"
    assert event["requestContext"]["http"]["path"] == "/dev/pets/1"
    assert event["requestContext"]["stage"] == "dev"
    assert event["routeKey"] == "GET /pets/{id}"
    assert event["cookies"] == ["a=1", "b=2", "c=3"]
    assert event["headers"] == {"host": "h.example.com:8080"}
    assert event["requestContext"]["domainName"] == "h.example.com"
    assert event["requestContext"]["domainPrefix"] == "h"
    assert event["requestContext"]["http"]["userAgent"] == ""


# ---------------------------------------------------------------------------------------------
# Query strings, headers, stage variables, path parameters.
def test_query_decoding_v1_v2() -> None:
    # AWS decodes names and values ('+' is a space, %2B a '+'); a repeated key keeps its last
    # value in queryStringParameters (v1) and all of them in the multi-value map / joined (v2).
    query = "email=test%2Balias%40gmail.com&plus=test+alias&w=foo%20bar&e=&flag&x=1&x=2&&%3D=%26"
    rest = make_route("rest")
    event = build_event_v1(make_req(rest, query=query))
    assert event["queryStringParameters"] == {
        "email": "test+alias@gmail.com",
        "plus": "test alias",
        "w": "foo bar",
        "e": "",
        "flag": "",
        "x": "2",
        "=": "&",
    }
    assert event["multiValueQueryStringParameters"] == {
        "email": ["test+alias@gmail.com"],
        "plus": ["test alias"],
        "w": ["foo bar"],
        "e": [""],
        "flag": [""],
        "x": ["1", "2"],
        "=": ["&"],
    }
    http = make_route("http")
    v2 = build_event_v2(make_req(http, query=query))
    assert v2["rawQueryString"] == query
    assert v2["queryStringParameters"]["x"] == "1,2"
    assert v2["queryStringParameters"]["email"] == "test+alias@gmail.com"


def test_nulls_without_query_params_variables_body() -> None:
    event = build_event_v1(make_req(make_route("rest")))
    for key in (
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "pathParameters",
        "stageVariables",
        "body",
    ):
        assert key in event and event[key] is None, key
    assert event["isBase64Encoded"] is False
    v2 = build_event_v2(make_req(make_route("http")))
    for key in ("cookies", "queryStringParameters", "pathParameters", "stageVariables", "body"):
        assert key not in v2, key


def test_repeated_and_cased_headers_v1() -> None:
    headers = [("Host", "x"), ("X-A", "1"), ("x-b", "2"), ("X-A", "3"), ("User-Agent", "ua")]
    event = build_event_v1(make_req(make_route("rest"), headers=headers))
    assert event["headers"] == {"Host": "x", "X-A": "3", "x-b": "2", "User-Agent": "ua"}
    assert event["multiValueHeaders"] == {
        "Host": ["x"],
        "X-A": ["1", "3"],
        "x-b": ["2"],
        "User-Agent": ["ua"],
    }
    event = build_event_v1(make_req(make_route("rest"), headers=[("user-agent", "lower")]))
    assert event["requestContext"]["identity"]["userAgent"] == "lower"
    event = build_event_v1(make_req(make_route("rest"), headers=[("USER-AGENT", "upper")]))
    assert event["requestContext"]["identity"]["userAgent"] == "upper"
    event = build_event_v1(make_req(make_route("rest"), headers=[("Host", "x")]))
    assert event["requestContext"]["identity"]["userAgent"] is None


def test_rest_drops_content_length_in_any_spelling() -> None:
    for name in ("Content-Length", "content-length", "CONTENT-LENGTH"):
        headers = [("Host", "x"), (name, "2"), ("Content-Type", "text/plain")]
        event = build_event_v1(make_req(make_route("rest"), "POST", headers=headers, body=b"hi"))
        assert event["headers"] == {"Host": "x", "Content-Type": "text/plain"}
        assert event["multiValueHeaders"] == {"Host": ["x"], "Content-Type": ["text/plain"]}
    # Content-Length: 0 without a body is dropped too
    headers = [("Host", "x"), ("Content-Length", "0")]
    assert build_event_v1(make_req(make_route("rest"), "POST", headers=headers))["headers"] == {"Host": "x"}
    # repeated header names take the general path
    headers = [("Host", "x"), ("content-length", "2"), ("A", "1"), ("A", "2")]
    event = build_event_v1(make_req(make_route("rest"), "POST", headers=headers, body=b"hi"))
    assert event["headers"] == {"Host": "x", "A": "2"}


def test_event_copies_are_independent() -> None:
    route = make_route("rest", variables={"v": "1"})
    req = make_req(route, params={"id": "1"})
    first = build_event_v1(req)
    first["stageVariables"]["v"] = "changed"
    first["pathParameters"]["id"] = "changed"
    second = build_event_v1(req)
    assert second["stageVariables"] == {"v": "1"}
    assert second["pathParameters"] == {"id": "1"}
    assert route.stage.variables == {"v": "1"}
    assert route.event_static is not None


def test_request_time_changes_with_the_second() -> None:
    route = make_route("rest")
    a = build_event_v1(make_req(route, time_ms=1428582896000))["requestContext"]
    b = build_event_v1(make_req(route, time_ms=1428582896999))["requestContext"]
    c = build_event_v1(make_req(route, time_ms=1428582897000))["requestContext"]
    d = build_event_v1(make_req(route, time_ms=1428582896500))["requestContext"]
    assert a["requestTime"] == b["requestTime"] == d["requestTime"] == "09/Apr/2015:12:34:56 +0000"
    assert c["requestTime"] == "09/Apr/2015:12:34:57 +0000"
    assert d["requestTimeEpoch"] == 1428582896500


def test_rest_authorizer_and_api_key_in_request_context() -> None:
    route = make_route("rest", key_required=True)
    req = make_req(route)
    req.authorizer = {"principalId": "admin", "clientId": 1, "clientName": "Exata"}
    req.api_key = "theApiKey"
    req.api_key_id = "theApiKeyId"
    ctx = build_event_v1(req)["requestContext"]
    assert ctx["authorizer"] == {"principalId": "admin", "clientId": 1, "clientName": "Exata"}
    assert ctx["identity"]["apiKey"] == "theApiKey"
    assert ctx["identity"]["apiKeyId"] == "theApiKeyId"


def test_http_v1_authorizers() -> None:
    req = make_req(make_route("http"))
    req.authorizer = {"principalId": "me", "k": "v"}
    assert build_event_v1(req)["requestContext"]["authorizer"] == {"principalId": "me", "k": "v"}
    req.authorizer = {"jwt": {"claims": {"sub": "x"}, "scopes": None}}
    assert build_event_v1(req)["requestContext"]["authorizer"] == {"claims": {"sub": "x"}, "scopes": None}


def test_custom_domain_paths() -> None:
    # A custom domain maps base path "orders" to the stage: the request has no stage prefix.
    rest = make_route("rest", "GET /pets/{id}", stage="prod")
    req = make_req(
        rest, path="/orders/pets/1", resource_path="/pets/1", headers=[("Host", "api.example.com")]
    )
    event = build_event_v1(req)
    assert event["path"] == "/orders/pets/1"  # REST: the mapping shows in path
    assert event["requestContext"]["path"] == "/orders/pets/1"
    assert event["requestContext"]["domainName"] == "api.example.com"
    assert event["requestContext"]["domainPrefix"] == "api"
    assert build_request_authorizer_event_v1(req, "arn")["path"] == "/orders/pets/1"
    # execute-api host: REST path has no stage, requestContext.path has it (also for "/").
    root = make_req(make_route("rest", "GET /", stage="prod"), path="/prod", resource_path="/")
    assert build_event_v1(root)["path"] == "/"
    assert build_event_v1(root)["requestContext"]["path"] == "/prod"
    http = make_route("http", "GET /pets/{id}", stage="dev")
    mapped = make_req(
        http, path="/orders/pets/1", resource_path="/pets/1", headers=[("Host", "api.example.com")]
    )
    v2 = build_event_v2(mapped)
    assert v2["rawPath"] == v2["requestContext"]["http"]["path"] == "/pets/1"  # no API mapping
    assert build_event_v1(mapped)["path"] == "/orders/pets/1"  # 1.0 path: "the API mapping"
    staged = make_req(http, path="/dev/pets/1", resource_path="/pets/1")
    assert build_event_v2(staged)["rawPath"] == "/dev/pets/1"
    assert build_request_authorizer_event_v2(mapped, "arn", [])["rawPath"] == "/pets/1"


def test_domain_fallback_without_host() -> None:
    route = make_route("rest", api_id="abc", region="eu-west-3")
    ctx = build_event_v1(make_req(route, headers=[], domain=""))["requestContext"]
    assert ctx["domainName"] == "abc.execute-api.eu-west-3.amazonaws.com"
    assert ctx["domainPrefix"] == "abc"


# ---------------------------------------------------------------------------------------------
# Binary bodies.
@pytest.mark.parametrize(
    ("content_type", "binary_types", "expected"),
    [
        ("image/png", ("image/png",), True),
        ("image/png", ("image/*",), True),
        ("image/jpeg; q=1", ("image/*",), True),
        ("IMAGE/PNG", ("image/png",), True),
        ("application/json", ("image/*",), False),
        ("application/json", ("*/*",), True),
        (None, ("*/*",), True),
        (None, ("image/png",), False),
        ("application/octet-stream", (), False),
        ("text/plain", ("application/octet-stream",), False),
    ],
)
def test_body_is_binary_rest(content_type: str | None, binary_types: tuple[str, ...], expected: bool) -> None:
    headers = [("Host", "x")] + ([("Content-Type", content_type)] if content_type else [])
    req = make_req(make_route("rest", binary=binary_types), "POST", headers=headers, body=b"\x00\x01")
    assert body_is_binary(req) is expected


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/plain", False),
        ("text/html; charset=utf-8", False),
        ("application/json", False),
        ("Application/JSON; charset=UTF-8", False),
        ("application/xml", False),
        ("application/javascript", False),
        ("application/x-www-form-urlencoded", True),
        ("multipart/form-data; boundary=x", True),
        ("application/octet-stream", True),
        ("image/png", True),
        ("application/vnd.api+json", True),
        (None, True),
    ],
)
def test_body_is_binary_http(content_type: str | None, expected: bool) -> None:
    headers = [("Host", "x")] + ([("content-type", content_type)] if content_type else [])
    req = make_req(make_route("http", binary=("*/*",)), "POST", headers=headers, body=b"a=1")
    assert body_is_binary(req) is expected


def test_binary_body_round_trip() -> None:
    raw = bytes(range(256))
    route = make_route("rest", binary=("application/octet-stream",))
    req = make_req(route, "POST", headers=[("Content-Type", "application/octet-stream")], body=raw)
    event = build_event_v1(req)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == raw
    req.set_header("Accept", "application/octet-stream")
    resp = parse_response_v1({"statusCode": 200, "body": event["body"], "isBase64Encoded": True}, req)
    assert resp.body == raw
    http = make_route("http")
    v2 = build_event_v2(make_req(http, "POST", headers=[("content-type", "image/png")], body=raw))
    assert v2["isBase64Encoded"] is True and base64.b64decode(v2["body"]) == raw
    resp = parse_response_v2({"statusCode": 200, "body": v2["body"], "isBase64Encoded": True}, req)
    assert resp.body == raw


def test_text_body_invalid_utf8_is_replaced() -> None:
    req = make_req(make_route("rest"), "POST", headers=[("Content-Type", "text/plain")], body=b"a\xffb")
    event = build_event_v1(req)
    assert event["body"] == "a\ufffdb" and event["isBase64Encoded"] is False


# ---------------------------------------------------------------------------------------------
# Authorizer events.
def test_doc_token_authorizer_event() -> None:
    req = make_req(make_route("rest", "GET /", api_id="ymy8tbxw7b"), headers=[("Authorization", "allow")])
    event = build_token_authorizer_event(
        req, "allow", "arn:aws:execute-api:us-west-2:123456789012:ymy8tbxw7b/*/GET/"
    )
    assert event == {
        "type": "TOKEN",
        "authorizationToken": "allow",
        "methodArn": "arn:aws:execute-api:us-west-2:123456789012:ymy8tbxw7b/*/GET/",
    }


DOC_REST_REQUEST_AUTH: dict[str, Any] = {
    "type": "REQUEST",
    "methodArn": "arn:aws:execute-api:us-east-1:123456789012:s4x3opwd6i/test/GET/request",
    "resource": "/request",
    "path": "/request",
    "httpMethod": "GET",
    "headers": {
        "X-AMZ-Date": "20170718T062915Z",
        "Accept": "*/*",
        "HeaderAuth1": "headerValue1",
        "CloudFront-Viewer-Country": "US",
        "User-Agent": "...",
        "X-Forwarded-Proto": "https",
        "Host": "....execute-api.us-east-1.amazonaws.com",
        "Content-Type": "application/x-www-form-urlencoded",
    },
    "queryStringParameters": {"QueryString1": "queryValue1"},
    "pathParameters": {},
    "stageVariables": {"StageVar1": "stageValue1"},
    "requestContext": {
        "path": "/request",
        "accountId": "123456789012",
        "resourceId": "05c7jb",
        "stage": "test",
        "requestId": "...",
        "identity": {"apiKey": "...", "sourceIp": "..."},
        "resourcePath": "/request",
        "httpMethod": "GET",
        "apiId": "s4x3opwd6i",
    },
}


def test_doc_rest_request_authorizer_event() -> None:
    route = make_route(
        "rest", "GET /request", stage="test", variables={"StageVar1": "stageValue1"}, api_id="s4x3opwd6i"
    )
    route.api_key_required = True
    req = make_req(
        route,
        "GET",
        "/test/request",
        "/request",
        "QueryString1=queryValue1",
        list(DOC_REST_REQUEST_AUTH["headers"].items()),
        source_ip="...",
        request_id="...",
    )
    req.api_key = "..."
    event = build_request_authorizer_event_v1(req, DOC_REST_REQUEST_AUTH["methodArn"])
    # requestContext.path: the example shows "/request"; AWS's requestContext.path carries the
    # stage ("/test/request"), as in its proxy events. resourceId is AWS's opaque id.
    skip = {"requestContext.path", "requestContext.resourceId"}
    assert_documented(event, DOC_REST_REQUEST_AUTH, skip)
    assert event["requestContext"]["path"] == "/test/request"
    assert event["multiValueHeaders"] == {k: [v] for k, v in DOC_REST_REQUEST_AUTH["headers"].items()}
    assert event["multiValueQueryStringParameters"] == {"QueryString1": ["queryValue1"]}
    assert "authorizer" not in event["requestContext"]
    assert "body" not in event and "isBase64Encoded" not in event
    # empty maps are {} in authorizer events
    bare = build_request_authorizer_event_v1(make_req(make_route("rest")), "arn")
    assert bare["queryStringParameters"] == {} and bare["multiValueQueryStringParameters"] == {}
    assert bare["pathParameters"] == {} and bare["stageVariables"] == {}
    assert "apiKey" not in bare["requestContext"]["identity"]


DOC_HTTP_V1_AUTH: dict[str, Any] = {
    "version": "1.0",
    "type": "REQUEST",
    "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abcdef123/test/GET/request",
    "identitySource": "user1,123",
    "authorizationToken": "user1,123",
    "resource": "/request",
    "path": "/request",
    "httpMethod": "GET",
    "headers": {
        "X-AMZ-Date": "20170718T062915Z",
        "Accept": "*/*",
        "HeaderAuth1": "headerValue1",
        "CloudFront-Viewer-Country": "US",
        "CloudFront-Forwarded-Proto": "https",
        "CloudFront-Is-Tablet-Viewer": "false",
        "CloudFront-Is-Mobile-Viewer": "false",
        "User-Agent": "...",
    },
    "queryStringParameters": {"QueryString1": "queryValue1"},
    "pathParameters": {},
    "stageVariables": {"StageVar1": "stageValue1"},
    "requestContext": {
        "path": "/request",
        "accountId": "123456789012",
        "resourceId": "05c7jb",
        "stage": "test",
        "requestId": "...",
        "identity": {"apiKey": "...", "sourceIp": "..."},
        "resourcePath": "/request",
        "httpMethod": "GET",
        "apiId": "abcdef123",
    },
}


def test_doc_http_v1_authorizer_event() -> None:
    route = make_route(
        "http", "GET /request", stage="test", variables={"StageVar1": "stageValue1"}, api_id="abcdef123"
    )
    req = make_req(
        route,
        "GET",
        "/test/request",
        "/request",
        "QueryString1=queryValue1",
        list(DOC_HTTP_V1_AUTH["headers"].items()),
        source_ip="...",
        request_id="...",
    )
    event = build_request_authorizer_event_v1(req, DOC_HTTP_V1_AUTH["methodArn"], ["user1", "123"])
    # path / requestContext.path: HTTP APIs send the full path, stage included, as in their
    # 1.0 proxy events; resourceId is the route key; identity.apiKey: HTTP APIs have no API keys.
    skip = {"path", "requestContext.path", "requestContext.resourceId", "requestContext.identity.apiKey"}
    assert_documented(event, DOC_HTTP_V1_AUTH, skip)
    assert event["path"] == event["requestContext"]["path"] == "/test/request"
    assert event["requestContext"]["resourceId"] == "GET /request"
    assert list(event)[:5] == ["version", "type", "methodArn", "identitySource", "authorizationToken"]
    assert set(event) == set(DOC_HTTP_V1_AUTH)
    assert "authorizer" not in event["requestContext"]


DOC_V2_AUTH: dict[str, Any] = {
    "version": "2.0",
    "type": "REQUEST",
    "routeArn": "arn:aws:execute-api:us-east-1:123456789012:abcdef123/test/GET/request",
    "identitySource": ["user1", "123"],
    "routeKey": "$default",
    "rawPath": "/my/path",
    "rawQueryString": "parameter1=value1&parameter1=value2&parameter2=value",
    "cookies": ["cookie1", "cookie2"],
    "headers": {"header1": "value1", "header2": "value2"},
    "queryStringParameters": {"parameter1": "value1,value2", "parameter2": "value"},
    "requestContext": {
        "accountId": "123456789012",
        "apiId": "api-id",
        "domainName": "id.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "id",
        "http": {
            "method": "POST",
            "path": "/my/path",
            "protocol": "HTTP/1.1",
            "sourceIp": "IP",
            "userAgent": "agent",
        },
        "requestId": "id",
        "routeKey": "$default",
        "stage": "$default",
        "time": "12/Mar/2020:19:03:58 +0000",
        "timeEpoch": 1583348638390,
    },
    "pathParameters": {"parameter1": "value1"},
    "stageVariables": {"stageVariable1": "value1", "stageVariable2": "value2"},
}


def test_doc_v2_authorizer_event() -> None:
    req = doc_v2_request({"principalId": "not sent to the authorizer"})
    req.headers = [(k, v) for k, v in req.headers if not (k == "Header2" and v == "value1")]
    event = build_request_authorizer_event_v2(req, DOC_V2_AUTH["routeArn"], ["user1", "123"])
    skip = {"requestContext.time"}  # the example's day does not match its timeEpoch (04/Mar)
    assert_documented(event, DOC_V2_AUTH, skip)
    assert set(event) == set(DOC_V2_AUTH)
    assert set(event["requestContext"]) == set(DOC_V2_AUTH["requestContext"])


# ---------------------------------------------------------------------------------------------
# Responses, payload 1.0.
def rest_req(accept: str | None = None, binary: tuple[str, ...] = ()) -> Request:
    headers = [("Host", "x")] + ([("Accept", accept)] if accept is not None else [])
    return make_req(make_route("rest", binary=binary), headers=headers)


def http_req() -> Request:
    return make_req(make_route("http"))


def test_doc_v1_output_format() -> None:
    resp = parse_response_v1(
        {
            "isBase64Encoded": False,
            "statusCode": 201,
            "headers": {"headerName": "headerValue", "Content-Type": "text/plain"},
            "multiValueHeaders": {"X-Multi": ["headerValue", "headerValue2"]},
            "body": "...",
        },
        rest_req(),
    )
    assert resp.status == 201
    assert resp.headers == [
        ("headerName", "headerValue"),
        ("Content-Type", "text/plain"),
        ("X-Multi", "headerValue"),
        ("X-Multi", "headerValue2"),
    ]
    assert resp.body == b"..."


def test_rest_response_defaults() -> None:
    resp = parse_response_v1({"statusCode": 200}, rest_req())
    assert (resp.status, resp.headers, resp.body) == (200, [("Content-Type", "application/json")], b"")
    # no statusCode: 200 (AWS answers 200 to {"headers": {...}})
    resp = parse_response_v1({"headers": {"test-header": "value"}}, rest_req())
    assert resp.status == 200
    assert resp.headers == [("Content-Type", "application/json"), ("test-header", "value")]
    # a null Content-Type keeps API Gateway from adding application/json
    resp = parse_response_v1({"statusCode": 204, "headers": {"Content-Type": None}}, rest_req())
    assert resp.headers == []
    resp = parse_response_v1({"statusCode": 200, "headers": None, "body": None}, rest_req())
    assert resp.headers == [("Content-Type", "application/json")] and resp.body == b""


def test_rest_header_value_types() -> None:
    resp = parse_response_v1(
        {
            "statusCode": 200,
            "headers": {"test-header": "value", "header-bool": True, "n": 5, "f": 1.5, "z": False},
        },
        rest_req(),
    )
    assert resp.headers[1:] == [
        ("test-header", "value"),
        ("header-bool", "true"),
        ("n", "5"),
        ("f", "1.5"),
        ("z", "false"),
    ]
    for bad in ({"a": {"x": 1}}, {"a": ["x"]}, {"a": "x\r\nInjected: 1"}, {"bad name": "x"}, {"": "x"}):
        with pytest.raises(BadResponse) as ex:
            parse_response_v1({"statusCode": 200, "headers": bad}, rest_req())
        assert ex.value.status == 502


def test_rest_multi_value_headers() -> None:
    resp = parse_response_v1(
        {"statusCode": 200, "multiValueHeaders": {"test-multi": ["value1", "value2"]}}, rest_req()
    )
    assert resp.headers == [
        ("Content-Type", "application/json"),
        ("test-multi", "value1"),
        ("test-multi", "value2"),
    ]
    # the same name in both: only multiValueHeaders' values (AWS: "only the values from
    # multiValueHeaders will appear in the merged list"), whatever the case
    for name in ("test-multi", "tesT-Multi"):
        resp = parse_response_v1(
            {
                "statusCode": 200,
                "multiValueHeaders": {name: ["value-multi"]},
                "headers": {"test-multi": "value-solo"},
            },
            rest_req(),
        )
        assert resp.headers == [("Content-Type", "application/json"), (name, "value-multi")]
    resp = parse_response_v1(
        {"statusCode": 200, "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]}, "headers": {"X": "y"}},
        rest_req(),
    )
    assert resp.headers == [
        ("Content-Type", "application/json"),
        ("X", "y"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]
    with pytest.raises(BadResponse) as ex:
        parse_response_v1(
            {"statusCode": 200, "multiValueHeaders": {"test-multi-invalid": "value1"}}, rest_req()
        )
    assert ex.value.status == 502


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": 200, "wrongValue": "value"},  # unknown key
        {},  # empty object
        {"statusCode": "test"},
        {"statusCode": True},
        {"statusCode": 1000},
        {"statusCode": 99},
        {"statusCode": 200, "body": {"hey": "dude"}},  # body must be a string
        {"statusCode": 200, "body": ["x"]},
        {"statusCode": 200, "headers": "x"},
        {"statusCode": 200, "multiValueHeaders": ["x"]},
        {"statusCode": 200, "isBase64Encoded": "maybe"},
        {"statusCode": 200, "body": {1, 2}},  # not JSON at all
        "justAString",
        None,
        ["statusCode", 200],
        42,
    ],
)
def test_rest_malformed_responses(result: object) -> None:
    with pytest.raises(BadResponse) as ex:
        parse_response_v1(result, rest_req())
    assert ex.value.status == 502
    assert str(ex.value)


def test_rest_status_code_forms() -> None:
    assert parse_response_v1({"statusCode": "201"}, rest_req()).status == 201
    assert parse_response_v1({"statusCode": 404.0}, rest_req()).status == 404
    assert parse_response_v1({"statusCode": Decimal(302)}, rest_req()).status == 302
    assert parse_response_v1({"statusCode": 200, "body": 12}, rest_req()).body == b"12"
    assert parse_response_v1({"statusCode": 200, "body": "héllo"}, rest_req()).body == "héllo".encode()


def test_rest_base64_body_follows_accept_and_binary_media_types() -> None:
    result = {"statusCode": 200, "body": base64.b64encode(b"test-data").decode(), "isBase64Encoded": True}
    # first Accept media type matches binaryMediaTypes: decoded
    assert parse_response_v1(result, rest_req("image/png", ("image/*",))).body == b"test-data"
    assert (
        parse_response_v1(result, rest_req("image/webp,image/*,*/*;q=0.8", ("image/webp",))).body
        == b"test-data"
    )
    assert parse_response_v1(result, rest_req(None, ("*/*",))).body == b"test-data"
    # only the first Accept media type counts; no binaryMediaTypes: the base64 text goes out
    assert parse_response_v1(result, rest_req("text/html,image/png", ("image/png",))).body == b"dGVzdC1kYXRh"
    assert parse_response_v1(result, rest_req("image/png")).body == b"dGVzdC1kYXRh"
    # isBase64Encoded false: never decoded
    plain = {"statusCode": 200, "body": base64.b64encode(b"test-data").decode()}
    assert parse_response_v1(plain, rest_req("image/png", ("*/*",))).body == b"dGVzdC1kYXRh"
    # a body that cannot be decoded: AWS's conversion failure, 500
    with pytest.raises(BadResponse) as ex:
        parse_response_v1(
            {"statusCode": 200, "body": "not base64!", "isBase64Encoded": True}, rest_req(None, ("*/*",))
        )
    assert ex.value.status == 500


def test_http_v1_responses() -> None:
    req = http_req()
    resp = parse_response_v1({"statusCode": 200}, req)
    assert (resp.status, resp.headers, resp.body) == (
        200,
        [("Content-Type", "text/plain; charset=utf-8")],
        b"",
    )
    resp = parse_response_v1(
        {"statusCode": 200, "headers": {"test-header": "value", "header-bool": True}}, req
    )
    assert resp.headers[1:] == [("test-header", "value"), ("header-bool", "true")]
    # HTTP APIs ignore unknown keys
    assert parse_response_v1({"statusCode": 200, "wrongValue": "value"}, req).status == 200
    assert parse_response_v1({"statusCode": "201"}, req).status == 201
    # base64 bodies are decoded unconditionally
    b64 = {"statusCode": 200, "body": base64.b64encode(b"test-data").decode(), "isBase64Encoded": True}
    assert parse_response_v1(b64, req).body == b"test-data"
    resp = parse_response_v1(
        {
            "statusCode": 200,
            "multiValueHeaders": {"test-multi": ["value-multi"]},
            "headers": {"test-multi": "value-solo"},
        },
        req,
    )
    assert resp.headers[1:] == [("test-multi", "value-multi")]
    for bad in (
        {},
        {"headers": {"test-header": "value"}},  # HTTP APIs require statusCode
        {"statusCode": "test"},
        {"statusCode": 200, "multiValueHeaders": {"test-multi-invalid": "value1"}},
        {"statusCode": 200, "extra": {1, 2}},  # ignored, but Lambda could not serialise it
        {"statusCode": 200, "body": "%%%", "isBase64Encoded": True},
        "justAString",
    ):
        with pytest.raises(BadResponse) as ex:
            parse_response_v1(bad, req)
        assert ex.value.status == 500, bad


# ---------------------------------------------------------------------------------------------
# Responses, payload 2.0.
def test_doc_v2_response_inference() -> None:
    # "Hello from Lambda!" -> statusCode 200, body "Hello from Lambda!", application/json
    resp = parse_response_v2("Hello from Lambda!", http_req())
    assert (resp.status, resp.headers, resp.body) == (
        200,
        [("Content-Type", "application/json")],
        b"Hello from Lambda!",
    )
    # { "message": "Hello from Lambda!" } -> the object's JSON as body
    resp = parse_response_v2({"message": "Hello from Lambda!"}, http_req())
    assert resp.status == 200
    assert resp.headers == [("Content-Type", "application/json")]
    assert orjson.loads(resp.body) == {"message": "Hello from Lambda!"}


@pytest.mark.parametrize(
    ("result", "body"),
    [
        ({}, b"{}"),
        ({"headers": {"test-header": "value"}}, b'{"headers":{"test-header":"value"}}'),
        ({"random": {"json-body": "value"}}, b'{"random":{"json-body":"value"}}'),
        ("null", b"null"),
        ("", b""),
        ("errorMessage", b"errorMessage"),
        (None, b"null"),
        ([1, "a", None], b'[1,"a",null]'),
        (42, b"42"),
        (True, b"true"),
        ({"statusCode": None, "a": 1}, b'{"statusCode":null,"a":1}'),
        ({"price": Decimal("1.5")}, b'{"price":1.5}'),
        ({1: "int key"}, b'{"1":"int key"}'),
    ],
)
def test_v2_inferred_responses(result: object, body: bytes) -> None:
    resp = parse_response_v2(result, http_req())
    assert (resp.status, resp.headers, resp.body) == (200, [("Content-Type", "application/json")], body)


def test_v2_structured_responses() -> None:
    req = http_req()
    resp = parse_response_v2({"statusCode": 200}, req)
    assert (resp.status, resp.headers, resp.body) == (
        200,
        [("Content-Type", "text/plain; charset=utf-8")],
        b"",
    )
    resp = parse_response_v2(
        {"statusCode": 200, "headers": {"test-header": "value", "header-bool": True}}, req
    )
    assert resp.headers[1:] == [("test-header", "value"), ("header-bool", "true")]
    assert parse_response_v2({"statusCode": 200, "wrongValue": "value"}, req).status == 200
    assert parse_response_v2({"statusCode": "201"}, req).status == 201
    b64 = {"statusCode": 200, "body": base64.b64encode(b"test-data").decode(), "isBase64Encoded": True}
    assert parse_response_v2(b64, req).body == b"test-data"
    plain = {"statusCode": 200, "body": base64.b64encode(b"test-data").decode()}
    assert parse_response_v2(plain, req).body == b"dGVzdC1kYXRh"
    # the function URL / HTTP API documented custom response
    resp = parse_response_v2(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "application/json", "My-Custom-Header": "Custom Value"},
            "body": '{ "message": "Hello, world!" }',
            "cookies": ["Cookie_1=Value1; Expires=21 Oct 2021 07:48 GMT", "Cookie_2=Value2; Max-Age=78000"],
            "isBase64Encoded": False,
        },
        req,
    )
    assert resp.status == 201
    assert resp.headers == [
        ("Content-Type", "application/json"),
        ("My-Custom-Header", "Custom Value"),
        ("set-cookie", "Cookie_1=Value1; Expires=21 Oct 2021 07:48 GMT"),
        ("set-cookie", "Cookie_2=Value2; Max-Age=78000"),
    ]
    assert resp.body == b'{ "message": "Hello, world!" }'
    # multiValueHeaders is not part of 2.0: ignored like any unknown key
    resp = parse_response_v2({"statusCode": 200, "multiValueHeaders": {"a": ["b"]}}, req)
    assert resp.headers == [("Content-Type", "text/plain; charset=utf-8")]


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": 200, "cookies": {"test-cookies-invalid": "value1"}},
        {"statusCode": "test"},
        {"statusCode": 200, "headers": ["x"]},
        {"statusCode": 200, "headers": {"a": "b\nc"}},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "body": "!!", "isBase64Encoded": True},
        {"statusCode": 200, "extra": object()},
        {"errorMessage": "test fake error message"},
        {1, 2},
        object(),
        b"bytes",
        "\ud800",
    ],
)
def test_v2_bad_responses(result: object) -> None:
    with pytest.raises(BadResponse) as ex:
        parse_response_v2(result, http_req())
    assert ex.value.status == 500
    assert str(ex.value)


def test_response_type() -> None:
    assert isinstance(parse_response_v2("x", http_req()), Response)
    assert isinstance(parse_response_v1({"statusCode": 200}, rest_req()), Response)
    assert events.BadResponse is BadResponse
