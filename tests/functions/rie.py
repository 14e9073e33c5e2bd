"""A Lambda Invoke API server for tests that behaves like the AWS Lambda Runtime Interface Emulator.

``RieServer`` runs a Python handler (``def handler(event, context)``) behind a real HTTP/1.1 server
on a free 127.0.0.1 port (an asyncio loop in a daemon thread), answering
``POST /2015-03-31/functions/function/invocations`` the way ``aws-lambda-rie`` does::

    from functions.rie import RieServer  # tests/ is on sys.path (see tests/conftest.py)

    def handler(event, context):
        return {"hello": event["name"], "id": context.aws_request_id}

    with RieServer(handler, timeout=3.0) as url:          # url == "http://127.0.0.1:<port>"
        ...  # RemoteFunction("f", url, client, timeout=5.0).invoke({"name": "x"}, "req-1")

As a pytest fixture::

    @pytest.fixture
    def rie_url():
        with RieServer(handler, timeout=1.0) as url:
            yield url

What it mimics (aws/aws-lambda-runtime-interface-emulator, cmd/aws-lambda-rie/handlers.go, http.go,
util.go; the Python runtime interface client awslambdaric, bootstrap.py and
lambda_runtime_marshaller.py):

* Routes: ``/2015-03-31/functions/function/invocations``, and
  ``/2015-03-31/functions/<function_name>/invocations`` when ``function_name`` is given (RIE:
  ``AWS_LAMBDA_FUNCTION_NAME``); any method. Anything else: Go's ``404 page not found``.
* The invocation id is the ``X-Amzn-RequestId`` request header, else a new UUID.
* Success: 200, the result as ``json.dumps`` renders it (``bytes`` results are sent raw, as
  awslambdaric does). Go's server picks the framing (Content-Length up to 2048 bytes, chunked
  above) and the sniffed Content-Type (``text/plain; charset=utf-8`` for text); RIE drops the
  runtime's own headers.
* The handler raises: still 200, *no* ``X-Amz-Function-Error`` header (RIE issue #20), body
  ``{"errorMessage", "errorType", "requestId", "stackTrace"}`` as awslambdaric sends it. An event
  that is not JSON gives ``Runtime.UnmarshalError``, a result that is not serialisable
  ``Runtime.MarshalError``.
* The handler runs past ``timeout``: 200 and the plain-text body ``Task timed out after
  N.NN seconds`` (RIE issue #21; RIE writes ``%d.00`` of its integer timeout, fractional timeouts
  are rendered with two decimals here), about 100 ms after the deadline (RIE sleeps 100 ms). The
  hung handler thread is abandoned (RIE resets the runtime); the next invocation runs normally.
* One invocation at a time, like RIE (``serialize=False`` runs them concurrently).

``aws_errors=True`` answers errors the way the AWS Invoke API does instead: header
``X-Amz-Function-Error: Unhandled``, ``Content-Type: application/json``, and for a timeout the body
``{"errorType": "Sandbox.Timedout", "errorMessage": "RequestId: <id> Error: Task timed out after
N.NN seconds"}``.

Every invocation is recorded in ``invocations`` (``Invocation``); ``connections`` counts the TCP
connections accepted. Traffic stays on the loopback interface.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import importlib
import json
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

__all__ = ["Invocation", "LambdaContext", "RieServer"]

Handler = Callable[[Any, "LambdaContext"], Any]

HOST = "127.0.0.1"
_INVOKE_PREFIX = "/2015-03-31/functions/"
_INVOKE_SUFFIX = "/invocations"
_MAX_HEAD = 64 * 1024
_MAX_BODY = 6 * 1024 * 1024 + 1024  # the AWS synchronous payload limit, with room for framing
_GO_CHUNKING_THRESHOLD = 2048  # net/http sets Content-Length only for a body that fits its buffer
_ARN = "arn:aws:lambda:us-east-1:012345678912:function:{}"


@dataclass
class Invocation:
    """One invocation as the server saw and answered it."""

    request_id: str
    function: str
    headers: list[tuple[str, str]]
    body: bytes
    outcome: str = "running"  # "result", "error" or "timeout" once answered
    response: bytes = b""
    started: float = field(default_factory=time.monotonic)
    finished: float = 0.0


class LambdaContext:
    """The ``context`` argument, with awslambdaric's attributes."""

    def __init__(self, request_id: str, function_name: str, deadline_ms: int) -> None:
        self.aws_request_id = request_id
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = _ARN.format(function_name)
        self.memory_limit_in_mb = "3008"
        self.log_group_name = "/aws/lambda/Functions"
        self.log_stream_name = "$LATEST"
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)


class RieServer:
    """A Lambda Invoke API test server for one handler; see the module docstring."""

    def __init__(
        self,
        handler: Handler,
        timeout: float = 3.0,
        *,
        function_name: str | None = None,
        aws_errors: bool = False,
        serialize: bool = True,
        host: str = HOST,
        port: int = 0,
    ) -> None:
        self.handler = handler
        self.timeout = timeout
        self.function_name = function_name or "test_function"
        self.names = {"function"} | ({function_name} if function_name else set())
        self.aws_errors = aws_errors
        self.serialize = serialize
        self.host = host
        self.port = port
        self.invocations: list[Invocation] = []
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._lock: asyncio.Lock | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._start_error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- lifecycle (from the test's thread)
    def start(self) -> str:
        """Start listening; return the base URL."""
        if self._thread is not None:
            return self.url
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="rie-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the RIE test server did not start within 10 s")
        if self._start_error is not None:
            raise RuntimeError(f"the RIE test server did not start: {self._start_error!r}")
        return self.url

    def close(self) -> None:
        """Stop listening, close every connection, stop the loop (hung handler threads are left)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def outcomes(self) -> list[str]:
        return [inv.outcome for inv in list(self.invocations)]

    # -- the server thread
    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            self._lock = asyncio.Lock()
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, self.host, self.port, limit=_MAX_HEAD)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as ex:
            self._start_error = ex
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                request = _parse_head(head)
                if request is None:
                    await _write(
                        writer, 400, [("Content-Type", "text/plain; charset=utf-8")], b"400 Bad Request"
                    )
                    return
                method, target, version, headers = request
                try:
                    body = await _read_body(reader, headers)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                except ValueError:
                    await _write(
                        writer, 400, [("Content-Type", "text/plain; charset=utf-8")], b"400 Bad Request"
                    )
                    return
                status, resp_headers, resp_body = await self._route(method, target, headers, body)
                conn = (_header(headers, "connection") or "").lower()
                keep = "close" not in conn and (version == "HTTP/1.1" or "keep-alive" in conn)
                if not keep:
                    resp_headers.append(("Connection", "close"))
                await _write(writer, status, resp_headers, resp_body, head_only=method == "HEAD")
                if not keep:
                    return
        except (ConnectionError, OSError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _route(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        path = target.split("?", 1)[0]
        name = path[len(_INVOKE_PREFIX) : -len(_INVOKE_SUFFIX)]
        if not (path.startswith(_INVOKE_PREFIX) and path.endswith(_INVOKE_SUFFIX) and name in self.names):
            return (
                404,
                [*_go_text_headers(b"x"), ("X-Content-Type-Options", "nosniff")],
                b"404 page not found\n",
            )
        inv = Invocation(_header(headers, "x-amzn-requestid") or str(uuid.uuid4()), name, headers, body)
        self.invocations.append(inv)
        assert self._lock is not None
        if self.serialize:
            async with self._lock:
                return await self._invoke(inv)
        return await self._invoke(inv)

    async def _invoke(self, inv: Invocation) -> tuple[int, list[tuple[str, str]], bytes]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[str, bytes]] = loop.create_future()
        deadline_ms = int((time.time() + self.timeout) * 1000)
        context = LambdaContext(inv.request_id, self.function_name, deadline_ms)

        def settle(outcome: tuple[str, bytes]) -> None:
            if not done.done():
                done.set_result(outcome)

        def run() -> None:
            outcome = _run_handler(self.handler, inv.body, context)
            with contextlib.suppress(RuntimeError):  # the loop is gone: the server was closed
                loop.call_soon_threadsafe(settle, outcome)

        threading.Thread(target=run, name=f"rie-handler-{inv.request_id}", daemon=True).start()
        try:
            kind, payload = await asyncio.wait_for(done, self.timeout)
        except TimeoutError:
            kind = "timeout"
            seconds = f"{self.timeout:.2f}"
            if self.aws_errors:
                message = f"RequestId: {inv.request_id} Error: Task timed out after {seconds} seconds"
                payload = json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": message}).encode()
            else:
                payload = f"Task timed out after {seconds} seconds".encode()
                await asyncio.sleep(0.1)
        inv.outcome = kind
        inv.response = payload
        inv.finished = time.monotonic()
        if self.aws_errors:
            headers = [
                ("Content-Type", "application/json"),
                ("X-Amz-Executed-Version", "$LATEST"),
                ("X-Amzn-Requestid", inv.request_id),
            ]
            if kind != "result":
                headers.append(("X-Amz-Function-Error", "Unhandled"))
            return 200, headers, payload
        return 200, _go_text_headers(payload), payload


def _run_handler(handler: Handler, body: bytes, context: LambdaContext) -> tuple[str, bytes]:
    """Run the handler as awslambdaric does: ("result", body) or ("error", error JSON)."""
    try:
        event = json.loads(body)
    except Exception as ex:
        return "error", _error_body(f"Unable to unmarshal input: {ex}", "Runtime.UnmarshalError", [], context)
    try:
        result = handler(event, context)
    except Exception as ex:
        frames = traceback.extract_tb(ex.__traceback__)[1:]  # without this function's frame
        return "error", _error_body(str(ex), type(ex).__name__, traceback.format_list(frames), context)
    if isinstance(result, bytes):
        return "result", result
    try:
        return "result", json.dumps(result).encode()
    except Exception as ex:
        return "error", _error_body(f"Unable to marshal response: {ex}", "Runtime.MarshalError", [], context)


def _error_body(message: str, error_type: str, stack: list[str], context: LambdaContext) -> bytes:
    doc = {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": context.aws_request_id,
        "stackTrace": stack,
    }
    return json.dumps(doc).encode()


def _go_text_headers(body: bytes) -> list[tuple[str, str]]:
    """The Content-Type net/http sniffs for a body written without one (none for an empty body)."""
    if not body:
        return []
    try:
        text = body[:512].decode("utf-8")
        binary = any(ord(c) < 0x20 and c not in "\t\n\r\x0c\x1b" for c in text)
    except UnicodeDecodeError:
        binary = True
    return [("Content-Type", "application/octet-stream" if binary else "text/plain; charset=utf-8")]


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _parse_head(head: bytes) -> tuple[str, str, str, list[tuple[str, str]]] | None:
    lines = head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
        return None
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        headers.append((name, value.strip(" \t")))
    return parts[0], parts[1], parts[2], headers


async def _read_body(reader: asyncio.StreamReader, headers: list[tuple[str, str]]) -> bytes:
    te = (_header(headers, "transfer-encoding") or "").lower()
    cl = _header(headers, "content-length")
    if te:
        if te != "chunked" or cl is not None:
            raise ValueError("unsupported framing")
        parts: list[bytes] = []
        size = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            n = int(line.split(b";", 1)[0].strip(), 16)
            if n == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                return b"".join(parts)
            size += n
            if size > _MAX_BODY:
                raise ValueError("body too large")
            parts.append((await reader.readexactly(n + 2))[:n])
    if cl is None:
        return b""
    n = int(cl)
    if n < 0 or n > _MAX_BODY:
        raise ValueError("bad content-length")
    return await reader.readexactly(n)


async def _write(
    writer: asyncio.StreamWriter,
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    head_only: bool = False,
) -> None:
    """Write a response the way net/http frames it (header names sorted, Date, CL or chunked)."""
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Status")
    headers = [*headers, ("Date", email.utils.formatdate(usegmt=True))]
    chunked = len(body) > _GO_CHUNKING_THRESHOLD
    headers.append(("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(len(body))))
    headers.sort(key=lambda kv: kv[0])
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    writer.write(head.encode("latin-1"))
    if not head_only:
        if chunked:
            for i in range(0, len(body), 4096):
                piece = body[i : i + 4096]
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(body)
    await writer.drain()


def main() -> None:  # pragma: no cover - a manual tool
    """``python tests/functions/rie.py package.module:handler [--port 8080] [--timeout 3]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("handler", help="module:function")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--aws-errors", action="store_true")
    args = parser.parse_args()
    module, _, attr = args.handler.partition(":")
    handler = getattr(importlib.import_module(module), attr)
    with RieServer(handler, args.timeout, port=args.port, aws_errors=args.aws_errors) as url:
        print(f"listening on {url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":  # pragma: no cover
    main()
