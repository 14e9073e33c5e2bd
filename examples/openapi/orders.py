"""The Lambda functions behind ``orders-rest.yaml``: plain AWS Lambda code, nothing imports fastgw.

``handler`` (function ``orders-api``) serves the API's non-proxy (``aws``) integrations. It never
sees the HTTP request: each method's request mapping template builds its event,

    {"action": "create", "customerId": "<the authorizer's principalId>", "order": {...}}
    {"action": "get", "customerId": "...", "orderId": "..."}
    {"action": "list", "customerId": "...", "status": "PENDING"}

and it returns plain data, which the integration response templates shape into the method
response. Failures are exceptions whose message starts with a tag, ``[BadRequest]``,
``[NotFound]`` or ``[Conflict]``: API Gateway matches the error message (``errorMessage``) against
the integration responses' selection patterns to pick 400, 404 or 409.

``attachments`` (function ``orders-attachments``) is a Lambda proxy handler (payload 1.0) for
``POST /orders/{orderId}/attachments``: ``image/png`` and ``application/pdf`` are binary media
types of the API, so their bodies arrive base64-encoded (``isBase64Encoded``).

Orders live in the process's memory, as module-level state lives in a Lambda execution
environment: run the gateway with one worker to see one store.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

CURRENCY = "EUR"
MAX_ATTACHMENT = 1024 * 1024
STATUSES = frozenset({"PENDING", "SHIPPED", "CANCELLED"})


@dataclass(frozen=True)
class Product:
    name: str
    price_cents: int


# The shop's products and their stock (a DynamoDB table in real life).
PRODUCTS: dict[str, Product] = {
    "SKU-1001": Product("Espresso beans, 1 kg", 2490),
    "SKU-1002": Product("Moka pot, 6 cups", 3900),
    "SKU-1003": Product("Milk frother", 7950),
}
INITIAL_STOCK: dict[str, int] = {"SKU-1001": 100, "SKU-1002": 3, "SKU-1003": 0}


class OrderError(Exception):
    """A failure the client caused; ``str()`` is the Lambda ``errorMessage``: ``[Tag] text``."""

    tag = "BadRequest"

    def __init__(self, text: str) -> None:
        super().__init__(f"[{self.tag}] {text}")


class BadRequest(OrderError):
    tag = "BadRequest"


class NotFound(OrderError):
    tag = "NotFound"


class Conflict(OrderError):
    tag = "Conflict"


class OrderStore:
    """Orders by id and the stock they draw from. Sync handlers run in a thread pool: a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._orders: dict[str, dict[str, Any]] = {}
        self._stock = dict(INITIAL_STOCK)
        self._attachments: dict[str, list[dict[str, Any]]] = {}

    def create(self, customer: str, lines: list[dict[str, Any]], note: str) -> dict[str, Any]:
        wanted: dict[str, int] = {}
        for line in lines:
            sku, quantity = line["sku"], line["quantity"]
            if sku not in PRODUCTS:
                raise BadRequest(f"unknown product {sku}")
            wanted[sku] = wanted.get(sku, 0) + quantity
        with self._lock:
            for sku, quantity in wanted.items():
                if self._stock[sku] < quantity:
                    raise Conflict(f"only {self._stock[sku]} of {sku} left in stock, {quantity} wanted")
            for sku, quantity in wanted.items():
                self._stock[sku] -= quantity
            items = [
                {
                    "sku": sku,
                    "name": PRODUCTS[sku].name,
                    "quantity": quantity,
                    "unitPrice": PRODUCTS[sku].price_cents / 100,
                }
                for sku, quantity in wanted.items()
            ]
            total = sum(PRODUCTS[sku].price_cents * quantity for sku, quantity in wanted.items())
            order = {
                "id": "ord-" + uuid.uuid4().hex[:10],
                "customerId": customer,
                "status": "PENDING",
                "items": items,
                "total": total / 100,
                "currency": CURRENCY,
                "note": note,
                "createdAt": int(time.time()),
            }
            self._orders[order["id"]] = order
            return json.loads(json.dumps(order))

    def get(self, customer: str, order_id: str) -> dict[str, Any]:
        with self._lock:
            order = self._orders.get(order_id)
            # Another customer's order does not exist, as far as this customer can tell.
            if order is None or order["customerId"] != customer:
                raise NotFound(f"no order {order_id}")
            return json.loads(json.dumps(order))

    def list(self, customer: str, status: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                json.loads(json.dumps(order))
                for order in self._orders.values()
                if order["customerId"] == customer and order["status"] == status
            ]

    def attach(self, customer: str, order_id: str, attachment: dict[str, Any]) -> int:
        self.get(customer, order_id)
        with self._lock:
            attached = self._attachments.setdefault(order_id, [])
            attached.append(attachment)
            return len(attached)


STORE = OrderStore()


# ------------------------------------------------------------ non-proxy integration (aws)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The ``orders-api`` function: the event is the request mapping template's output."""
    customer = event.get("customerId") or ""
    if not customer:  # the template reads $context.authorizer.principalId: never empty here
        raise RuntimeError("no customerId in the event: is the method's authorizer missing?")
    action = event.get("action")
    if action == "create":
        order = event.get("order") or {}
        return STORE.create(customer, order.get("items") or [], order.get("note", ""))
    if action == "get":
        return STORE.get(customer, str(event.get("orderId", "")))
    if action == "list":
        status = str(event.get("status", "")).upper()
        if status not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(sorted(STATUSES))}")
        return {"status": status, "orders": STORE.list(customer, status)}
    raise BadRequest(f"unknown action {action}")


# ------------------------------------------------------------ proxy integration (aws_proxy)
def respond(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def attachments(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The ``orders-attachments`` function: a Lambda proxy handler (payload format 1.0)."""
    customer = (event["requestContext"].get("authorizer") or {}).get("principalId", "")
    order_id = (event.get("pathParameters") or {}).get("orderId", "")
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    content_type = headers.get("content-type", "application/octet-stream").split(";")[0].strip()
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            data = base64.b64decode(body, validate=True)
        except binascii.Error:
            return respond(400, {"message": "the body is not valid base64"})
    else:
        data = body.encode()
    if not data:
        return respond(400, {"message": "an attachment body is required"})
    if len(data) > MAX_ATTACHMENT:
        return respond(413, {"message": f"attachments are limited to {MAX_ATTACHMENT} bytes"})
    attachment = {
        "contentType": content_type,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "binary": bool(event.get("isBase64Encoded")),
    }
    try:
        count = STORE.attach(customer, order_id, attachment)
    except NotFound as ex:
        return respond(404, {"message": str(ex).removeprefix("[NotFound] ")})
    return respond(201, {"orderId": order_id, "attachments": count, **attachment})
