"""The product service behind ``catalog-rest.yaml``: a small JSON backend over plain HTTP.

The catalog API proxies to it (``http_proxy``) through the stage variable ``catalogHost``:

- ``GET /v1/products?category=C``: ``{"category": C, "count": N, "products": [...], "servedBy":
  REQUEST_NUMBER}`` (every product when no category is given);
- ``GET /v1/products/{sku}``: one product, 404 when unknown;
- ``GET /v1/products/{sku}/reviews``: its reviews.

``servedBy`` counts the requests this backend answered, so a response served from the API's
cache shows an old number. The full list is a few kilobytes: over the API's minimum compression
size. Run it alone with ``python3 -m examples.openapi.catalog_backend --listen 127.0.0.1:8083``.
"""

from __future__ import annotations

import argparse
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

CATEGORIES = {
    "beans": ["Espresso blend", "Single origin Ethiopia", "Decaf Colombia", "House blend", "Dark roast"],
    "brewers": ["Moka pot", "French press", "Pour-over cone", "AeroPress", "Cold brew jar"],
    "grinders": ["Hand grinder", "Burr grinder", "Travel grinder"],
    "cups": ["Espresso cup", "Cappuccino cup", "Travel mug", "Double-wall glass"],
}


def _catalog() -> dict[str, dict[str, Any]]:
    products: dict[str, dict[str, Any]] = {}
    number = 1000
    for category, names in CATEGORIES.items():
        for name in names:
            number += 1
            sku = f"SKU-{number}"
            products[sku] = {
                "sku": sku,
                "name": name,
                "category": category,
                "price": round(4.5 + (number % 17) * 3.25, 2),
                "currency": "EUR",
                "description": f"{name}: one of our {category}, chosen and tested by the shop's baristas.",
            }
    return products


PRODUCTS = _catalog()
REVIEWS = {
    "SKU-1001": [{"stars": 5, "text": "Crema for days."}, {"stars": 4, "text": "A little bitter."}],
    "SKU-1007": [{"stars": 5, "text": "Lasts forever."}],
}


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]


class CatalogHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CatalogServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, doc: dict[str, Any]) -> None:
        doc = {**doc, "servedBy": self.server.count}
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.record(Seen("GET", self.path, {k.lower(): v for k, v in self.headers.items()}))
        parts = urlsplit(self.path)
        segments = [unquote(s) for s in parts.path.split("/") if s]
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if segments[:2] != ["v1", "products"]:
            self._answer(404, {"message": "Not Found"})
        elif len(segments) == 2:
            category = query.get("category")
            products = [p for p in PRODUCTS.values() if category in (None, p["category"])]
            self._answer(200, {"category": category, "count": len(products), "products": products})
        elif segments[2] not in PRODUCTS:
            self._answer(404, {"message": f"no product {segments[2]}"})
        elif len(segments) == 3:
            self._answer(200, PRODUCTS[segments[2]])
        elif len(segments) == 4 and segments[3] == "reviews":
            self._answer(200, {"sku": segments[2], "reviews": REVIEWS.get(segments[2], [])})
        else:
            self._answer(404, {"message": "Not Found"})


class CatalogServer(ThreadingHTTPServer):
    """The backend on ``(host, port)``; ``seen`` lists the requests it answered."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, CatalogHandler)
        self.seen: list[Seen] = []
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return len(self.seen)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def targets(self) -> list[str]:
        with self._lock:
            return [s.target for s in self.seen]


def start(host: str = "127.0.0.1", port: int = 0) -> CatalogServer:
    """Serve in a daemon thread; ``shutdown()`` then ``server_close()`` stop it."""
    server = CatalogServer((host, port))
    threading.Thread(target=server.serve_forever, name="catalog-backend", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m examples.openapi.catalog_backend")
    parser.add_argument("--listen", default="127.0.0.1:8083", help="HOST:PORT (default 127.0.0.1:8083)")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    server = CatalogServer((host or "127.0.0.1", int(port)))
    print(f"catalog backend on http://{args.listen}/v1/products", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
