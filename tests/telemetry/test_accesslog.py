"""Access logs: AWS's $context formats compiled and rendered, the presets' exact lines, what is
refused and why, one line per request whatever the values, and the background file writer."""

from __future__ import annotations

import json
import os
import re
import time
import timeit
from pathlib import Path
from typing import Any

import pytest

from fastgw.telemetry.accesslog import (
    PRESETS,
    AccessLogFormatError,
    AccessLogWriter,
    Kind,
    compile_format,
    preset,
)

KINDS: list[Kind] = ["rest", "http"]

RID = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
XID = "Ab1CdE2fGhIAMkQ="
T = "12/Mar/2025:09:15:02 +0000"  # $context.requestTime: CLF time, as AWS

# One realistic request, as the pipeline would expose it (caller and user: no IAM auth -> None).
VALUES: dict[str, Any] = {
    "requestId": RID,
    "extendedRequestId": XID,
    "identity.sourceIp": "203.0.113.7",
    "identity.caller": None,
    "identity.user": None,
    "requestTime": T,
    "httpMethod": "GET",
    "resourcePath": "/pets/{petId}",
    "routeKey": "GET /pets/{petId}",
    "protocol": "HTTP/1.1",
    "status": 200,
    "responseLength": 512,
}

EXPECTED: dict[tuple[str, Kind], str] = {
    ("clf", "rest"): f'203.0.113.7 - - [{T}]"GET /pets/{{petId}} HTTP/1.1" 200 512 {RID} {XID}',
    ("clf", "http"): f'203.0.113.7 - - [{T}] "GET GET /pets/{{petId}} HTTP/1.1" 200 512 {RID} {XID}',
    ("json", "rest"): (
        f'{{ "requestId":"{RID}", "extendedRequestId":"{XID}","ip": "203.0.113.7", "caller":"-", '
        f'"user":"-", "requestTime":"{T}", "httpMethod":"GET", '
        '"resourcePath":"/pets/{petId}", "status":"200", "protocol":"HTTP/1.1", "responseLength":"512" }'
    ),
    ("json", "http"): (
        f'{{ "requestId":"{RID}", "ip": "203.0.113.7", "requestTime":"{T}", '
        '"httpMethod":"GET","routeKey":"GET /pets/{petId}", "status":"200","protocol":"HTTP/1.1", '
        f'"responseLength":"512", "extendedRequestId": "{XID}" }}'
    ),
    ("xml", "rest"): (
        f'<request id="{RID}"> <extendedRequestId>{XID}</extendedRequestId> <ip>203.0.113.7</ip> '
        f"<caller>-</caller> <user>-</user> <requestTime>{T}</requestTime> "
        "<httpMethod>GET</httpMethod> <resourcePath>/pets/{petId}</resourcePath> <status>200</status> "
        "<protocol>HTTP/1.1</protocol> <responseLength>512</responseLength> </request>"
    ),
    ("xml", "http"): (
        f'<request id="{RID}"> <ip>203.0.113.7</ip> <requestTime>{T}</requestTime> '
        "<httpMethod>GET</httpMethod> <routeKey>GET /pets/{petId}</routeKey> <status>200</status> "
        "<protocol>HTTP/1.1</protocol> <responseLength>512</responseLength> "
        f"<extendedRequestId>{XID}</extendedRequestId> </request>"
    ),
    ("csv", "rest"): f"203.0.113.7,-,-,{T},GET,/pets/{{petId}},HTTP/1.1,200,512,{RID},{XID}",
    ("csv", "http"): f"203.0.113.7,{T},GET,GET /pets/{{petId}},HTTP/1.1,200,512,{RID},{XID}",
}


def render(fmt: str, kind: Kind = "rest", **values: Any) -> str:
    return compile_format(fmt, kind).render(values.get)


def refused(fmt: str, kind: Kind = "rest") -> AccessLogFormatError:
    with pytest.raises(AccessLogFormatError) as info:
        compile_format(fmt, kind)
    return info.value


# -- presets ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["clf", "json", "xml", "csv"])
def test_preset_renders_the_expected_line(name: str, kind: Kind) -> None:
    assert set(PRESETS) == {"clf", "json", "xml", "csv"}
    for spelling in (name, name.upper(), preset(name, kind)):
        fmt = compile_format(spelling, kind)
        assert fmt.source == PRESETS[name][kind]
        assert fmt.render(VALUES.get) == EXPECTED[name, kind]
    assert fmt.names <= set(VALUES)
    if name == "json":
        doc = json.loads(EXPECTED[name, kind])
        assert doc["requestId"] == RID and doc["status"] == "200"


def test_presets_differ_by_kind_as_aws() -> None:
    assert "$context.resourcePath" in PRESETS["clf"]["rest"]
    assert "$context.routeKey" in PRESETS["clf"]["http"]
    for name in PRESETS:
        with pytest.raises(AccessLogFormatError, match=r"\$context\.resourcePath"):
            compile_format(PRESETS[name]["rest"], "http")
    with pytest.raises(AccessLogFormatError, match="unknown access log preset"):
        preset("w3c", "rest")


# -- what is refused -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "kind", "why"),
    [
        ("$context.nope", "rest", "unknown access log variable"),
        ("$context.identitiy.sourceIp", "rest", r"did you mean \$context\.identity\.sourceIp"),
        ("$context.routeKey", "rest", r"an HTTP API access log variable.*\$context\.resourcePath"),
        ("$context.resourcePath", "http", r"a REST API access log variable.*\$context\.routeKey"),
        ("$context.identity.apiKey", "http", "a REST API access log variable"),
        ("$context.xrayTraceId", "http", "a REST API access log variable"),
        ("$context.authorizer.claims.a.b", "rest", "unknown access log variable"),
        ("$context.connectionId", "http", "WebSocket"),
    ],
)
def test_unknown_or_wrong_kind_variables_are_refused(var: str, kind: Kind, why: str) -> None:
    fmt = f"$context.requestId {var} end"
    err = refused(fmt, kind)
    assert err.name == var and err.position == fmt.index(var)
    assert var in str(err) and f"position {err.position}" in str(err)
    assert re.search(why, str(err))


@pytest.mark.parametrize(
    "var", ["waf.error", "waf.latency", "waf.status", "wafResponseCode", "webaclArn", "waf.other"]
)
@pytest.mark.parametrize("kind", KINDS)
def test_waf_variables_are_refused_with_the_reason(var: str, kind: Kind) -> None:
    err = refused(f'{{"id":"$context.requestId","waf":"$context.{var}"}}', kind)
    assert err.name == f"$context.{var}" and "AWS WAF" in str(err)


@pytest.mark.parametrize(
    ("var", "why"),
    [
        ("$context.identity.cognitoIdentityId", "Cognito identity pool"),
        ("$context.identity.principalOrgId", "Organizations"),
        ("$context.identity.vpceId", "VPC endpoints"),
        ("$context.endpointType", "endpoint types"),
    ],
)
def test_variables_without_a_fastgw_meaning_are_refused(var: str, why: str) -> None:
    err = refused(f"$context.requestId {var}")
    assert err.name == var and why in str(err)


@pytest.mark.parametrize(
    ("ref", "why"),
    [
        ("$context.requestOverride.header.x-trace", "mapping template variable"),
        ("$context.responseOverride.status", "mapping template variable"),
        ("$input.body", r"only \$context variables"),
        ("$stageVariables.lambdaAlias", r"only \$context variables"),
        ("$util.escapeJavaScript", r"only \$context variables"),
        ("${context.status}", r"write \$context\.status"),
        ("$context", "must name a variable"),
        ("$context.authorizer.claims", "always null"),
    ],
)
def test_template_only_references_are_refused(ref: str, why: str) -> None:
    fmt = f"$context.requestId {ref} end"
    err = refused(fmt)
    assert err.position == fmt.index(ref, 1)
    assert re.search(why, str(err))


def test_aws_format_rules() -> None:
    assert "requestId" in str(refused("$context.status $context.httpMethod"))
    assert compile_format("$context.extendedRequestId", "http").names == {"extendedRequestId"}
    err = refused("$context.requestId\n$context.status")
    assert err.position == 18 and "single line" in str(err)
    assert refused("$context.requestId\r$context.status").position == 18
    # AWS allows one newline at the end; the writer adds its own.
    assert render("$context.requestId\n", requestId="r") == "r"
    assert render("$context.requestId\r\n", requestId="r") == "r"
    assert "empty" in str(refused("  "))
    big = "$context.requestId " + "x" * 3100
    assert "3 KB" in str(refused(big, "http"))
    assert render(big, "rest", requestId="r").startswith("r xxx")


# -- rendering -------------------------------------------------------------------------------


def test_missing_values_print_a_dash() -> None:
    fmt = "$context.requestId|$context.identity.user|$context.identity.caller|$context.status"
    assert render(fmt, requestId="r", **{"identity.user": None, "identity.caller": ""}) == "r|-|-|-"
    assert render(fmt) == "-|-|-|-"


def test_value_types_print_as_aws() -> None:
    fmt = "$context.requestId $context.isCanaryRequest $context.responseLatency $context.authorizer.score"
    line = compile_format(fmt, "rest").render(
        {
            "requestId": "r",
            "isCanaryRequest": False,
            "responseLatency": 12,
            "authorizer.score": 0.5,
        }.get
    )
    assert line == "r false 12 0.5"
    assert render("$context.requestId $context.isCanaryRequest", requestId="r", isCanaryRequest=True) == (
        "r true"
    )


def test_authorizer_patterns_and_aliases() -> None:
    fmt = compile_format(
        "$context.requestId $context.authorizer.claims.sub $context.authorizer.tenant_id "
        "$context.integrationLatency $context.integration.latency $context.integrationErrorMessage "
        "$context.awsEndpointRequestId $context.integrationStatus",
        "http",
    )
    # AWS's documented equivalents are asked for once, under one name.
    assert fmt.names == {
        "requestId",
        "authorizer.claims.sub",
        "authorizer.tenant_id",
        "integration.latency",
        "integration.error",
        "integration.requestId",
        "integration.integrationStatus",
    }
    values = {
        "requestId": "r",
        "authorizer.claims.sub": "u-1",
        "authorizer.tenant_id": "t9",
        "integration.latency": 31,
        "integration.error": None,
        "integration.requestId": "fn-req",
        "integration.integrationStatus": 200,
    }
    assert fmt.render(values.get) == "r u-1 t9 31 31 - fn-req 200"


def test_error_message_string_is_the_quoted_message() -> None:
    fmt = '{"requestId":"$context.requestId","error":$context.error.messageString}'
    compiled = compile_format(fmt, "rest")
    assert compiled.names == {"requestId", "error.message"}
    line = compiled.render({"requestId": "r", "error.message": 'Missing "Authentication" token'}.get)
    assert json.loads(line) == {"requestId": "r", "error": 'Missing "Authentication" token'}
    assert compiled.render({"requestId": "r"}.get).endswith('"error":-}')


def test_literal_text_is_kept_exactly() -> None:
    assert render("100% $context.requestId%s.", requestId="r") == "100% r%s."
    assert render("$context.requestId.$contextual $5 $", requestId="r") == "r.$contextual $5 $"
    assert render("[$context.requestId]{}", requestId="r") == "[r]{}"


def test_values_are_inserted_as_is_like_aws() -> None:
    # AWS does not escape values: a quote in a user agent is logged as it came.
    fmt = '{"requestId":"$context.requestId","ua":"$context.identity.userAgent"}'
    line = render(fmt, requestId="r", **{"identity.userAgent": 'curl "8.5"'})
    assert line == '{"requestId":"r","ua":"curl "8.5""}'


@pytest.mark.parametrize("kind", KINDS)
def test_newlines_in_values_cannot_split_the_line(kind: Kind) -> None:
    fmt = compile_format("json", kind)
    values = dict(
        VALUES, **{"identity.sourceIp": "1.2.3.4\n203.0.113.9 - - [forged]", "httpMethod": "GET\r\n"}
    )
    line = fmt.render(values.get)
    assert "\n" not in line and "\r" not in line
    doc = json.loads(line)  # "\n" became the JSON escape \n: still one valid document
    assert doc["ip"] == "1.2.3.4\n203.0.113.9 - - [forged]" and doc["httpMethod"] == "GET\r\n"
    clf = compile_format("clf", kind).render(values.get)
    assert clf.count("\n") == 0 and "1.2.3.4\\n203.0.113.9" in clf


def test_render_cost() -> None:
    names = [
        "requestId",
        "extendedRequestId",
        "apiId",
        "stage",
        "domainName",
        "httpMethod",
        "path",
        "resourcePath",
        "protocol",
        "requestTime",
        "requestTimeEpoch",
        "status",
        "responseLength",
        "responseLatency",
        "integration.latency",
        "integration.status",
        "identity.sourceIp",
        "identity.userAgent",
        "authorizer.principalId",
        "authorizer.claims.sub",
    ]
    fmt = compile_format("{" + ",".join(f'"{n}":"$context.{n}"' for n in names) + "}", "rest")
    assert len(fmt.names) == 20
    values: dict[str, Any] = {n: f"value-{i}" for i, n in enumerate(names)}
    values.update(
        status=200, responseLength=1234, requestTimeEpoch=1741770902000, responseLatency=12, apiId=None
    )
    get = values.get
    assert len(json.loads(fmt.render(get))) == 20
    number = 20_000
    cost = min(timeit.repeat(lambda: fmt.render(get), number=number, repeat=3)) / number
    print(f"\nrender of a 20-variable format: {cost * 1e6:.2f} us")
    assert cost < 50e-6


# -- the writer ------------------------------------------------------------------------------


def lines_of(path: Path) -> list[str]:
    return path.read_text("utf-8").splitlines()


def wait_for(cond: Any, timeout: float = 3.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_writer_writes_every_line_in_order(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    writer = AccessLogWriter(str(path), flush_bytes=4096)
    try:
        sent = [f"{i} GET /pets/{i} 200 é" for i in range(20_000)]
        for line in sent:
            writer.write(line)
    finally:
        writer.close()
    assert lines_of(path) == sent
    assert writer.dropped == 0 and writer.errors == 0


def test_writer_flushes_on_its_interval_and_past_64_kb(tmp_path: Path) -> None:
    timed = tmp_path / "timed.log"
    writer = AccessLogWriter(str(timed), flush_interval=0.05)
    try:
        writer.write("one")
        assert wait_for(lambda: timed.read_bytes() == b"one\n")
    finally:
        writer.close()
    sized = tmp_path / "sized.log"
    writer = AccessLogWriter(str(sized), flush_interval=60.0)  # only the 64 KB mark can wake it
    try:
        for i in range(700):
            writer.write(f"{i:04d} " + "x" * 95)  # 101 characters a line: ~70 KB
        assert wait_for(lambda: sized.stat().st_size >= 64 * 1024)
    finally:
        writer.close()
    assert len(lines_of(sized)) == 700


def test_writer_reopen_after_logrotate_rename(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    writer = AccessLogWriter(str(path))
    try:
        writer.write("before-1")
        writer.write("before-2")
        assert writer.flush()
        os.rename(path, rotated)  # logrotate renames, then sends SIGUSR1
        writer.write("between")  # still the open (renamed) file, as with any process
        writer.reopen()
        writer.write("after-1")
        writer.write("after-2")
    finally:
        writer.close()
    assert lines_of(rotated) == ["before-1", "before-2", "between"]
    assert lines_of(path) == ["after-1", "after-2"]


def test_writer_full_queue_drops_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    # The thread sleeps for a minute and 64 KB are never queued: nothing drains until close().
    writer = AccessLogWriter(str(path), flush_interval=60.0, max_queued=100)
    try:
        for i in range(20):
            writer.write(f"line-{i:03d}")  # 8 characters + newline: 11 fit in 100
        assert writer.dropped == 9
    finally:
        writer.close()
    assert lines_of(path) == [f"line-{i:03d}" for i in range(11)]
    writer.write("late")
    assert writer.dropped == 10
    writer.close()  # idempotent


def test_writer_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    writer = AccessLogWriter(None)
    try:
        writer.write('{"requestId":"r1"}')
        writer.write('{"requestId":"r2"}')
        writer.reopen()  # no file: nothing to reopen
    finally:
        writer.close()
    assert capsys.readouterr().err == '{"requestId":"r1"}\n{"requestId":"r2"}\n'


def test_writer_bad_path_fails_at_configuration(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        AccessLogWriter(str(tmp_path / "missing-dir" / "access.log"))
