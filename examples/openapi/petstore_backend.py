"""A local stand-in for AWS's demo PetStore backend (``http://petstore.execute-api.REGION.amazonaws.com``).

``petstore.yaml`` integrates with it over plain HTTP, as the AWS example does with the real one;
its stage variable ``petstoreHost`` says where it listens. The answers have the demo backend's
shapes:

- ``GET /petstore/pets?type=T&page=N``: a page of three pets, ``[{"id": 4, "type": "Dog",
  "price": 999.99}, ...]`` (ids ``3N-2 .. 3N``; every pet of type ``T`` when given);
- ``GET /petstore/pets/{petId}``: one pet, ``{"id": 1, "type": "dog", "price": 249.99}``;
- ``POST /petstore/pets`` with ``{"type": "cat", "price": 123.11}``: ``{"pet": {...}, "message":
  "success"}``.

Bad input gets a 400 whose body lists the problems (``{"errors": [{"key": ..., "message": ...}]}``).
The PetStore API maps every backend status to 200 (its only integration response is ``default``),
as on AWS.

Run it alone with ``python3 -m examples.openapi.petstore_backend --listen 127.0.0.1:8081``.
"""

from __future__ import annotations

import argparse
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TYPES = ("dog", "cat", "fish")
PRICES = (249.99, 124.99, 0.99, 999.99, 249.99, 49.97)
PET_TYPES = frozenset({"dog", "cat", "fish", "bird", "gecko"})
PAGE_SIZE = 3
MAX_ID = 10000


def pet(pet_id: int, pet_type: str | None = None) -> dict[str, Any]:
    """The demo backend's pet ``pet_id``: types cycle dog, cat, fish; prices cycle PRICES."""
    return {
        "id": pet_id,
        "type": pet_type or TYPES[(pet_id - 1) % len(TYPES)],
        "price": PRICES[(pet_id - 1) % len(PRICES)],
    }


def errors(key: str, message: str) -> dict[str, Any]:
    return {"errors": [{"key": key, "message": message}]}


def list_pets(query: dict[str, str]) -> tuple[int, Any]:
    page_text = query.get("page") or "1"
    if not page_text.isdigit() or not 1 <= int(page_text) <= MAX_ID // PAGE_SIZE:
        return 400, errors("ListPetsRequest.page", "The value is out of range.")
    first = (int(page_text) - 1) * PAGE_SIZE + 1
    return 200, [pet(i, query.get("type") or None) for i in range(first, first + PAGE_SIZE)]


def get_pet(pet_id: str) -> tuple[int, Any]:
    if not pet_id.isdigit() or not 1 <= int(pet_id) <= MAX_ID:
        return 400, errors("GetPetRequest.petId", "The value is out of range.")
    return 200, pet(int(pet_id))


def create_pet(body: bytes) -> tuple[int, Any]:
    try:
        doc = json.loads(body or b"null")
    except ValueError:
        return 400, errors("CreatePetRequest", "The request body is not valid JSON.")
    if not isinstance(doc, dict):
        return 400, errors("CreatePetRequest", "The request body must be a JSON object.")
    if str(doc.get("type", "")).lower() not in PET_TYPES:
        return 400, errors(
            "CreatePetRequest.type", f"The type must be one of {', '.join(sorted(PET_TYPES))}."
        )
    price = doc.get("price")
    if isinstance(price, bool) or not isinstance(price, int | float) or price < 0:
        return 400, errors("CreatePetRequest.price", "The price must be a positive number.")
    return 200, {"pet": {"type": doc["type"], "price": price}, "message": "success"}


@dataclass
class Seen:
    """One request as the backend received it (for tests and for curious readers)."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


class PetStoreHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the gateway pools its upstream connections
    server: PetStoreServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, doc: Any) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.record(Seen(method, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        segments = [s for s in parts.path.split("/") if s]
        if segments[:2] != ["petstore", "pets"] or len(segments) > 3:
            self._answer(404, {"message": "Not Found"})
        elif len(segments) == 3 and method == "GET":
            self._answer(*get_pet(segments[2]))
        elif len(segments) == 2 and method == "GET":
            self._answer(*list_pets(query))
        elif len(segments) == 2 and method == "POST":
            self._answer(*create_pet(body))
        else:
            self._answer(405, {"message": "Method Not Allowed"})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


class PetStoreServer(ThreadingHTTPServer):
    """The backend on ``(host, port)``; ``seen`` lists the requests it answered."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, PetStoreHandler)
        self.seen: list[Seen] = []
        self._lock = threading.Lock()

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def start(host: str = "127.0.0.1", port: int = 0) -> PetStoreServer:
    """Serve in a daemon thread; ``shutdown()`` then ``server_close()`` stop it."""
    server = PetStoreServer((host, port))
    threading.Thread(target=server.serve_forever, name="petstore-backend", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m examples.openapi.petstore_backend")
    parser.add_argument("--listen", default="127.0.0.1:8081", help="HOST:PORT (default 127.0.0.1:8081)")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    server = PetStoreServer((host or "127.0.0.1", int(port)))
    print(f"PetStore backend on http://{args.listen}/petstore/pets", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
