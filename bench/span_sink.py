"""A minimal OTLP/HTTP receiver for the telemetry bench: accepts every POST, counts requests and
bytes, and rewrites ``OUT`` (JSON) after each one. It does not decode the spans (the tests do):
the bench measures the gateway's cost of producing and sending them.

Usage: ``python -m bench.span_sink PORT OUT``
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    port, out = int(argv[0]), Path(argv[1])
    seen = {"requests": 0, "bytes": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            n = int(self.headers.get("content-length") or 0)
            self.rfile.read(n)
            seen["requests"] += 1
            seen["bytes"] += n
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps(seen))
            tmp.replace(out)  # before the answer: an exporter that got it finds its POST counted
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
