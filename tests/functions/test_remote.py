"""fastgw.functions.remote.RemoteFunction through RieServer, a real RIE-like server on loopback.

Also checks that RieServer answers the way aws-lambda-rie does (status, headers, bodies), since
other tests rely on it as a stand-in for RIE.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from fastgw.functions.remote import FunctionError, FunctionTimeout, InvokeError, RemoteFunction
from fastgw.upstream.client import HttpClient
from functions.rie import LambdaContext, RieServer

HOST = "127.0.0.1"
INVOKE = "/2015-03-31/functions/function/invocations"
release = threading.Event()  # set at the end of the module: lets abandoned handler threads end


def handler(event: Any, context: LambdaContext) -> Any:
    """What the test events ask for: a result, an exception, a sleep, a raw body."""
    action = event.get("action") if isinstance(event, dict) else None
    if action == "raise":
        raise ValueError(f"bad input {event.get('n')}")
    if action == "sleep":
        release.wait(event["seconds"])
        return {"slept": event["seconds"]}
    if action == "bytes":
        return b"<html>not json</html>"
    if action == "error-shaped":
        return {"errorMessage": "looks like an error", "errorType": "Fake"}
    if action == "unserialisable":
        return {"x": object()}
    if action == "return":
        return event["value"]
    return {"event": event, "request_id": context.aws_request_id, "function": context.function_name}


@pytest.fixture(scope="module", autouse=True)
def _release_handlers() -> Any:
    yield
    release.set()


@pytest.fixture(scope="module")
def rie() -> Any:
    with RieServer(handler, timeout=0.5) as url:
        yield url


def run(fn: Callable[[HttpClient], Awaitable[None]]) -> None:
    async def main() -> None:
        async with asyncio.timeout(20):
            client = HttpClient(asyncio.get_running_loop())
            try:
                await fn(client)
            finally:
                await client.aclose()

    asyncio.run(main())


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- RemoteFunction
def test_result_round_trip(rie: str) -> None:
    async def body(client: HttpClient) -> None:
        fn = RemoteFunction("echo", rie, client, timeout=5.0)
        event = {"path": "/x", "headers": {"a": "b"}, "body": "é", "n": [1, 2.5, None, True]}
        assert await fn.invoke(event, "req-1") == {
            "event": event,
            "request_id": "req-1",  # X-Amzn-RequestId became the invocation id
            "function": "test_function",
        }
        for value in ({"statusCode": 200, "body": "ok"}, [1, "two"], "text", 42, None, True):
            assert await fn.invoke({"action": "return", "value": value}, "req-2") == value

    run(body)


def test_keep_alive_through_rie() -> None:
    server = RieServer(handler, timeout=1.0)
    with server as url:

        async def body(client: HttpClient) -> None:
            fn = RemoteFunction("echo", url + "/", client, timeout=5.0)
            for i in range(3):
                assert (await fn.invoke({"i": i}, f"req-{i}"))["event"] == {"i": i}  # type: ignore[index]

        run(body)
    assert server.connections == 1
    assert [inv.request_id for inv in server.invocations] == ["req-0", "req-1", "req-2"]
    assert server.outcomes() == ["result"] * 3
    headers = dict((k.lower(), v) for k, v in server.invocations[0].headers)
    assert headers["x-amz-invocation-type"] == "RequestResponse"
    assert headers["content-type"] == "application/json"
    assert headers["host"] == url.removeprefix("http://")


def test_handler_exception(rie: str) -> None:
    async def body(client: HttpClient) -> None:
        fn = RemoteFunction("failing", rie, client, timeout=5.0)
        with pytest.raises(FunctionError) as info:
            await fn.invoke({"action": "raise", "n": 7}, "req-3")
        err = info.value
        assert err.error_type == "ValueError"
        assert err.error_message == "bad input 7"
        assert str(err) == "ValueError: bad input 7"
        assert err.stack_trace and all(isinstance(line, str) for line in err.stack_trace)
        assert "in handler" in err.stack_trace[-1]

        with pytest.raises(FunctionError) as info:
            await fn.invoke({"action": "unserialisable"}, "req-4")
        assert info.value.error_type == "Runtime.MarshalError"

        # RIE cannot tell a failure from a result shaped like one (no X-Amz-Function-Error).
        with pytest.raises(FunctionError) as info:
            await fn.invoke({"action": "error-shaped"}, "req-5")
        assert (info.value.error_type, info.value.error_message) == ("Fake", "looks like an error")

    run(body)


def test_timeout_reported_by_rie(rie: str) -> None:
    async def body(client: HttpClient) -> None:
        fn = RemoteFunction("slow", rie, client, timeout=5.0)
        start = time.monotonic()
        with pytest.raises(FunctionTimeout) as info:
            await fn.invoke({"action": "sleep", "seconds": 3}, "req-6")
        assert time.monotonic() - start < 1.5  # RIE's own 0.5 s timeout, not ours
        assert "Task timed out after 0.50 seconds" in str(info.value)
        # The next invocation runs normally.
        assert (await fn.invoke({"k": 1}, "req-7"))["event"] == {"k": 1}  # type: ignore[index]

    run(body)


def test_timeout_of_the_caller() -> None:
    with RieServer(handler, timeout=10.0) as url:

        async def body(client: HttpClient) -> None:
            fn = RemoteFunction("slow", url, client, timeout=0.3)
            start = time.monotonic()
            with pytest.raises(FunctionTimeout):
                await fn.invoke({"action": "sleep", "seconds": 3}, "req-8")
            assert time.monotonic() - start < 0.8

        run(body)


def test_aws_style_errors() -> None:
    with RieServer(handler, timeout=0.5, aws_errors=True) as url:

        async def body(client: HttpClient) -> None:
            fn = RemoteFunction("aws", url, client, timeout=5.0)
            assert (await fn.invoke({"k": 2}, "req-9"))["event"] == {"k": 2}  # type: ignore[index]
            with pytest.raises(FunctionError) as info:
                await fn.invoke({"action": "raise", "n": 1}, "req-10")
            assert (info.value.error_type, info.value.error_message) == ("ValueError", "bad input 1")
            with pytest.raises(FunctionTimeout):
                await fn.invoke({"action": "sleep", "seconds": 3}, "req-11")

        run(body)


def test_non_json_body(rie: str) -> None:
    async def body(client: HttpClient) -> None:
        fn = RemoteFunction("html", rie, client, timeout=5.0)
        with pytest.raises(InvokeError) as info:
            await fn.invoke({"action": "bytes"}, "req-12")
        assert "not JSON" in str(info.value)

    run(body)


def test_server_down() -> None:
    async def body(client: HttpClient) -> None:
        fn = RemoteFunction("gone", f"http://{HOST}:{closed_port()}", client, timeout=5.0)
        with pytest.raises(InvokeError):
            await fn.invoke({}, "req-13")

    run(body)


def test_unknown_function_name(rie: str) -> None:
    async def body(client: HttpClient) -> None:
        fn = RemoteFunction("other", rie, client, timeout=5.0, remote_name="other")
        with pytest.raises(InvokeError) as info:
            await fn.invoke({}, "req-14")
        assert "404" in str(info.value)

    run(body)


def test_named_function_and_base_path() -> None:
    with RieServer(handler, timeout=1.0, function_name="my-func") as url:

        async def body(client: HttpClient) -> None:
            fn = RemoteFunction("mine", url, client, timeout=5.0, remote_name="my-func")
            assert (await fn.invoke({}, "req-15"))["function"] == "my-func"  # type: ignore[index]
            bad = RemoteFunction("mine", url + "/base", client, timeout=5.0)
            with pytest.raises(InvokeError):
                await bad.invoke({}, "req-16")  # /base/2015-03-31/...: not found

        run(body)


def test_bad_inputs(rie: str) -> None:
    async def body(client: HttpClient) -> None:
        fn = RemoteFunction("echo", rie, client, timeout=5.0)
        with pytest.raises(InvokeError):
            await fn.invoke({"x": object()}, "req-17")  # not JSON-serialisable
        with pytest.raises(InvokeError):
            await fn.invoke({}, "req\r\nx-injected: 1")

    run(body)
    client = HttpClient.__new__(HttpClient)
    for url in ("https://example.com", "ftp://x", "http://", "http://u:p@host", "http://h/?q=1"):
        with pytest.raises(ValueError):
            RemoteFunction("x", url, client, 1.0)


# ---------------------------------------------------------------- RieServer fidelity
def test_rie_wire_format() -> None:
    with RieServer(handler, timeout=0.3) as url:
        port = int(url.rsplit(":", 1)[1])

        async def body(client: HttpClient) -> None:
            ok = await client.request(
                HOST, port, "POST", INVOKE, [], b'{"action": "return", "value": [1]}', 5.0
            )
            assert ok.status == 200
            assert [k for k, _ in ok.headers] == ["Content-Length", "Content-Type", "Date"]
            assert ok.header("content-type") == "text/plain; charset=utf-8"
            assert ok.body == b"[1]"

            err = await client.request(
                HOST, port, "POST", INVOKE, [("X-Amzn-RequestId", "rid-1")], b'{"action": "raise"}', 5.0
            )
            assert err.status == 200
            assert err.header("x-amz-function-error") is None
            doc = json.loads(err.body)
            assert list(doc) == ["errorMessage", "errorType", "requestId", "stackTrace"]
            assert (doc["errorType"], doc["errorMessage"], doc["requestId"]) == (
                "ValueError",
                "bad input None",
                "rid-1",
            )

            bad = await client.request(HOST, port, "POST", INVOKE, [], b"{not json", 5.0)
            assert json.loads(bad.body)["errorType"] == "Runtime.UnmarshalError"

            timed_out = await client.request(
                HOST, port, "POST", INVOKE, [], b'{"action": "sleep", "seconds": 2}', 5.0
            )
            assert (timed_out.status, timed_out.body) == (200, b"Task timed out after 0.30 seconds")
            assert timed_out.header("content-type") == "text/plain; charset=utf-8"

            big = await client.request(
                HOST, port, "POST", INVOKE, [], b'{"action": "return", "value": "%s"}' % (b"z" * 5000), 5.0
            )
            assert big.header("transfer-encoding") == "chunked"  # Go chunks bodies over 2 KiB
            assert json.loads(big.body) == "z" * 5000

            missing = await client.request(
                HOST, port, "POST", "/2015-03-31/functions/nope/invocations", [], b"{}", 5.0
            )
            assert (missing.status, missing.body) == (404, b"404 page not found\n")

        run(body)


def test_error_bodies() -> None:
    """How error bodies map to exceptions, for the AWS shapes RieServer does not produce."""
    from fastgw.functions.remote import _function_failure, _is_error_object

    old_timeout = {"errorMessage": "2019-05-01T10:00:00.000Z 1a2b Task timed out after 3.00 seconds"}
    assert isinstance(_function_failure("f", "r", old_timeout, "Unhandled"), FunctionTimeout)
    node = {"errorType": "TypeError", "errorMessage": "x is undefined", "trace": ["TypeError: x", "  at h"]}
    err = _function_failure("f", "r", node, "Unhandled")
    assert isinstance(err, FunctionError)
    assert (err.error_type, err.stack_trace) == ("TypeError", ["TypeError: x", "  at h"])
    err = _function_failure("f", "r", "just a string", "Handled")
    assert isinstance(err, FunctionError)
    assert (err.error_type, err.error_message) == ("Handled", "just a string")
    # A user exception whose message mentions a timeout is still a function error.
    err = _function_failure(
        "f", "r", {"errorType": "Exception", "errorMessage": "Task timed out after 1"}, "U"
    )
    assert isinstance(err, FunctionError)
    assert _is_error_object({"errorType": "E", "errorMessage": "m", "requestId": "", "stackTrace": []})
    assert not _is_error_object({"errorType": "E", "errorMessage": "m", "statusCode": 500})
    assert not _is_error_object({"errorType": "E"})
    assert not _is_error_object([{"errorType": "E", "errorMessage": "m"}])
