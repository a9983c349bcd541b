"""Server workloads that look like real servers, for bench/server_workloads.py: a JSON API, a
template-rendered page and a chat broadcast with shared state. Never a pass/fail test.

Each workload exists three ways, doing the same per-request work:
- a twisted.web resource (JSON API, template page) or a Twisted factory (chat):
      twistd -n --reactor=tm|epoll web --class=workloads.resource      (bench/ on PYTHONPATH)
  serves /api/order (POST a JSON order) and /page?n=N (an HTML page of rows);
- an asyncio protocol (http_protocol_factory, ChatRooms/AsyncioChat), the same on asyncio's
  default loop and on tm_asyncio;
- a plain function (json_api, template_page, ChatRooms.deliver over sinks) that
  server_workloads.py calls from N plain threads with no reactor: the interpreter's ceiling.

The work:
  json      POST /api/order: a JSON order of about 4 KiB (a customer, an address, 30 line items)
            decoded, every field validated, totals computed in cents (coupon, tax by country,
            shipping by weight) and a summary of about 3 KiB encoded back. No shared state.
  template  GET /page?n=N: 60 product rows derived from N rendered through a small compiled
            template engine ({{ expr }} escaped, {% for %}, {% if %}), about 13 KiB of HTML. No
            shared state.
  chat      a line protocol over TCP: "JOIN NAME ROOM", then each line is broadcast as
            "NAME: TEXT" to every member of the room, the sender included (so that a client can
            wait for its own line and the load stays closed-loop). The rooms live in the factory
            (Twisted) or in an object shared through the protocol factory's partial (asyncio): on tm
            that state is managed (a tm.Dict of room -> tuple of members, a message counter), on the
            stock loops plain. Measured as lines delivered per second.

Only the standard library and Twisted; the request builders (make_order) also run on 3.11.
"""

from __future__ import annotations

import functools
import html
import json
import os
import re

# ---------------------------------------------------------------------------------------------
# JSON API

COUNTRIES = {"DE": 19, "FR": 20, "NL": 21, "US": 0, "GB": 20, "SE": 25, "IT": 22, "ES": 21}
COUPONS = {"SPRING10": 10, "VIP20": 20, "WELCOME5": 5}
_SKU = re.compile(r"SKU-[0-9]{5}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[a-z]{2,}")


def make_order(n: int, items: int = 30) -> bytes:
    """The JSON body a client posts: deterministic in n, about 4 KiB."""
    countries = sorted(COUNTRIES)
    coupons = [None, *sorted(COUPONS)]
    order = {
        "order_id": f"ord-{n}",
        "customer": {
            "id": 100000 + n % 9973,
            "name": f"Customer {n % 9973} Example",
            "email": f"customer{n % 9973}@example.org",
            "address": {
                "street": f"{n % 300 + 1} Long Street",
                "city": "Springfield",
                "zip": f"{10000 + n % 89999}",
                "country": countries[n % len(countries)],
            },
            "newsletter": n % 2 == 0,
        },
        "currency": "EUR",
        "coupon": coupons[n % len(coupons)],
        "items": [
            {
                "sku": f"SKU-{(n * 7 + i * 131) % 100000:05d}",
                "name": f"Product {(n + i) % 1000} in colour {i % 7}",
                "quantity": 1 + (n + i) % 5,
                "unit_price": round(1.99 + ((n * 31 + i * 17) % 20000) / 100, 2),
                "weight_g": 50 + (n + 3 * i) % 2000,
                "tags": ["gift", "sale"][: (n + i) % 3],
            }
            for i in range(items)
        ],
        "notes": "Please leave the parcel at the door. " * 2,
    }
    return json.dumps(order).encode()


class Invalid(ValueError):
    pass


def _require(obj: dict, key: str, kind) -> object:
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise Invalid(f"{key}: expected {kind.__name__ if isinstance(kind, type) else kind}")
    return value


def json_api(body: bytes) -> bytes:
    """Decodes an order, validates it, computes its totals and encodes the answer."""
    order = json.loads(body)
    if not isinstance(order, dict):
        raise Invalid("order: expected an object")
    order_id = _require(order, "order_id", str)
    customer = _require(order, "customer", dict)
    _require(customer, "id", int)
    _require(customer, "name", str)
    if not _EMAIL.fullmatch(_require(customer, "email", str)):
        raise Invalid("customer.email: not an address")
    address = _require(customer, "address", dict)
    for key in ("street", "city", "zip"):
        _require(address, key, str)
    country = _require(address, "country", str)
    if country not in COUNTRIES:
        raise Invalid(f"country {country!r} not served")
    if _require(order, "currency", str) != "EUR":
        raise Invalid("currency: EUR only")
    coupon = order.get("coupon")
    if coupon is not None and coupon not in COUPONS:
        raise Invalid(f"coupon {coupon!r} unknown")
    items = _require(order, "items", list)
    if not 1 <= len(items) <= 100:
        raise Invalid("items: 1 to 100")
    lines = []
    subtotal = weight = 0
    for item in items:
        if not isinstance(item, dict):
            raise Invalid("item: expected an object")
        sku = _require(item, "sku", str)
        if not _SKU.fullmatch(sku):
            raise Invalid(f"sku {sku!r}")
        quantity = _require(item, "quantity", int)
        if not 1 <= quantity <= 1000:
            raise Invalid("quantity: 1 to 1000")
        price = _require(item, "unit_price", (int, float))
        if price < 0:
            raise Invalid("unit_price: negative")
        grams = _require(item, "weight_g", int)
        tags = _require(item, "tags", list)
        if not all(isinstance(t, str) for t in tags):
            raise Invalid("tags: strings")
        cents = round(price * 100) * quantity
        subtotal += cents
        weight += grams * quantity
        lines.append(
            {
                "sku": sku,
                "name": _require(item, "name", str).title(),
                "quantity": quantity,
                "total_cents": cents,
                "gift": "gift" in tags,
            }
        )
    discount = subtotal * COUPONS.get(coupon, 0) // 100
    tax = (subtotal - discount) * COUNTRIES[country] // 100
    shipping = 0 if subtotal - discount >= 10000 else 490 + weight // 1000 * 150
    answer = {
        "order_id": order_id,
        "status": "accepted",
        "currency": "EUR",
        "customer": {"id": customer["id"], "email": customer["email"].lower()},
        "lines": lines,
        "subtotal_cents": subtotal,
        "discount_cents": discount,
        "tax_cents": tax,
        "shipping_cents": shipping,
        "total_cents": subtotal - discount + tax + shipping,
        "weight_g": weight,
    }
    return json.dumps(answer, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------------------------
# Template page: a small template engine, compiled once

_TOKEN = re.compile(r"{{\s*(.+?)\s*}}|{%\s*(.+?)\s*%}", re.S)


def _lookup(context: dict, expr: str):
    name, *attrs = expr.split(".")
    value = context[name]
    for attr in attrs:
        value = value[attr] if isinstance(value, dict) else getattr(value, attr)
    return value


def compile_template(text: str):
    """{{ a.b }} (escaped), {{ a|raw }}, {% for x in xs %}...{% endfor %}, {% if a %}...{% endif %}.

    Returns a function context -> str.
    """
    pos = 0
    root: list = []
    stack = [root]
    for match in _TOKEN.finditer(text):
        if match.start() > pos:
            stack[-1].append(("text", text[pos : match.start()]))
        pos = match.end()
        if match.group(1) is not None:
            expr, _, flt = match.group(1).partition("|")
            stack[-1].append(("raw" if flt.strip() == "raw" else "var", expr.strip()))
            continue
        words = match.group(2).split()
        if words[0] == "for":
            node = ("for", words[1], words[3], [])
        elif words[0] == "if":
            node = ("if", words[1], None, [])
        elif words[0] in ("endfor", "endif"):
            stack.pop()
            continue
        else:
            raise ValueError(f"unknown tag {words[0]!r}")
        stack[-1].append(node)
        stack.append(node[3])
    stack[-1].append(("text", text[pos:]))
    escape = html.escape

    def render(nodes: list, context: dict, out: list) -> None:
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "var":
                out.append(escape(str(_lookup(context, node[1]))))
            elif kind == "raw":
                out.append(str(_lookup(context, node[1])))
            elif kind == "for":
                inner = dict(context)
                for item in _lookup(context, node[2]):
                    inner[node[1]] = item
                    render(node[3], inner, out)
            elif _lookup(context, node[1]):
                render(node[3], context, out)

    def run(context: dict) -> str:
        out: list[str] = []
        render(root, context, out)
        return "".join(out)

    return run


PAGE = compile_template("""<!doctype html>
<html><head><title>{{ title }}</title><meta charset="utf-8">
<link rel="stylesheet" href="/static/site.css"></head>
<body><header><h1>{{ title }}</h1><p>{{ user.name }} &lt;{{ user.email }}&gt;</p></header>
<nav>{% for link in nav %}<a href="{{ link.href }}">{{ link.label }}</a> {% endfor %}</nav>
<table class="products"><thead><tr><th>#</th><th>Product</th><th>Price</th><th>Stock</th>
<th>Tags</th></tr></thead><tbody>
{% for row in rows %}<tr class="{{ row.parity }}"><td>{{ row.id }}</td>
<td><a href="/product/{{ row.id }}">{{ row.name }}</a>{% if row.sale %} <b>sale</b>{% endif %}</td>
<td>{{ row.price }}</td><td>{{ row.stock }}</td>
<td>{% for tag in row.tags %}<span class="tag">{{ tag }}</span>{% endfor %}</td></tr>
{% endfor %}</tbody></table>
<footer>{{ footer }} page {{ page }}</footer></body></html>
""")

NAV = [{"href": f"/section/{i}", "label": f"Section <{i}> & more"} for i in range(8)]


def template_page(n: int, rows: int = 60) -> bytes:
    """The page for /page?n=n: rows derived from n, rendered."""
    context = {
        "title": f"Products, page {n % 1000}",
        "user": {"name": f"User {n % 977}", "email": f"user{n % 977}@example.org"},
        "nav": NAV,
        "rows": [
            {
                "id": n * rows + i,
                "parity": "odd" if i % 2 else "even",
                "name": f'Product "{(n + i) % 1000}" <{i % 7}> & co',
                "sale": (n + i) % 4 == 0,
                "price": f"{((n * 31 + i * 17) % 20000) / 100:.2f} EUR",
                "stock": (n + 5 * i) % 120,
                "tags": ["new", "gift", "eco"][: (n + i) % 4],
            }
            for i in range(rows)
        ],
        "footer": "(c) Example & Sons",
        "page": n,
    }
    return PAGE(context).encode()


def page_number(target: bytes) -> int:
    query = target.partition(b"?")[2]
    for part in query.split(b"&"):
        key, _, value = part.partition(b"=")
        if key == b"n":
            return int(value or b"0")
    return 0


def handle_http(method: bytes, target: bytes, body: bytes) -> tuple[bytes, bytes, bytes]:
    """(status, content type, body) for a request; the same for every server below."""
    path = target.partition(b"?")[0]
    try:
        if path == b"/api/order" and method == b"POST":
            return b"200 OK", b"application/json", json_api(body)
        if path == b"/page" and method == b"GET":
            return b"200 OK", b"text/html; charset=utf-8", template_page(page_number(target))
    except (Invalid, ValueError) as e:
        return b"400 Bad Request", b"text/plain", str(e).encode() + b"\n"
    return b"404 Not Found", b"text/plain", b"not found\n"


# ---------------------------------------------------------------------------------------------
# twisted.web


def _twisted_resource():
    from twisted.web import resource

    class Workloads(resource.Resource):
        """/api/order (POST) and /page (GET); `twistd web --class=workloads.resource`."""

        isLeaf = True

        def render(self, request):
            body = request.content.read() if request.method == b"POST" else b""
            status, content_type, page = handle_http(request.method, request.uri, body)
            request.setResponseCode(int(status.split(b" ")[0]))
            request.setHeader(b"content-type", content_type)
            return page

    return Workloads


def resource():
    return _twisted_resource()()


def site():
    from twisted.web import server

    s = server.Site(resource())
    s.displayTracebacks = False
    return s


# ---------------------------------------------------------------------------------------------
# asyncio HTTP: keep-alive HTTP/1.1 with Content-Length bodies, enough for the load generator


class _HttpMixin:
    def _init(self) -> None:
        self.buffer = b""
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end]
            request_line, *header_lines = head.split(b"\r\n")
            length = 0
            for line in header_lines:
                key, _, value = line.partition(b":")
                if key.strip().lower() == b"content-length":
                    length = int(value)
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            body = self.buffer[head_end + 4 : end]
            self.buffer = self.buffer[end:]
            method, target, _ = request_line.split(b" ", 2)
            status, content_type, page = handle_http(method, target, body)
            self.transport.write(
                b"HTTP/1.1 "
                + status
                + b"\r\ncontent-type: "
                + content_type
                + b"\r\ncontent-length: "
                + str(len(page)).encode()
                + b"\r\n\r\n"
                + page
            )

    def connection_lost(self, exc) -> None:
        self.transport = None


def http_protocol_factory():
    import asyncio

    class HttpProtocol(_HttpMixin, asyncio.Protocol):
        def __init__(self) -> None:
            self._init()

    return HttpProtocol


# ---------------------------------------------------------------------------------------------
# chat broadcast


class ChatRooms:
    """The state every connection shares: room -> tuple of members, and a message counter.

    Written as a user would: a dict and an int on one object. Under tm that object is managed (the
    Twisted factory, or the object in the asyncio protocol factory's partial): the dict becomes a
    tm.Dict, the counter a transactional attribute. A room's members are an immutable tuple,
    replaced on join and leave, so nothing inside the managed dict is a plain mutable container.
    """

    def __init__(self) -> None:
        self.rooms = {}
        self.messages = 0

    def join(self, room: str, member) -> None:
        self.rooms[room] = self.rooms.get(room, ()) + (member,)

    def leave(self, room: str, member) -> None:
        members = tuple(m for m in self.rooms.get(room, ()) if m is not member)
        if members:
            self.rooms[room] = members
        else:
            self.rooms.pop(room, None)

    def deliver(self, room: str, name: str, text: bytes) -> int:
        """The per-message work: format, look the room up, send to each member."""
        line = name.encode() + b": " + text + b"\n"
        members = self.rooms.get(room, ())
        for member in members:
            member.send_line(line)
        self.messages += 1
        return len(members)


def parse_join(line: bytes) -> tuple[str, str] | None:
    parts = line.split()
    if len(parts) != 3 or parts[0] != b"JOIN":
        return None
    return parts[1].decode(), parts[2].decode()


# Twisted leaves Nagle's algorithm on (asyncio turns it off on every TCP transport):
# TM_BENCH_NODELAY=1 makes the Twisted chat server set TCP_NODELAY on its connections.
NODELAY = os.environ.get("TM_BENCH_NODELAY", "0") == "1"


def _twisted_chat():
    from twisted.internet import protocol

    class ChatProtocol(protocol.Protocol):
        def __init__(self) -> None:
            self.buffer = b""
            self.name = self.room = None

        def connectionMade(self) -> None:
            if NODELAY:
                self.transport.setTcpNoDelay(True)

        def send_line(self, line: bytes) -> None:
            self.transport.write(line)

        def dataReceived(self, data: bytes) -> None:
            self.buffer += data
            while b"\n" in self.buffer:
                line, _, self.buffer = self.buffer.partition(b"\n")
                if self.name is None:
                    joined = parse_join(line)
                    if joined is None:
                        self.transport.write(b"* bad join\n")
                        self.transport.loseConnection()
                        return
                    self.name, self.room = joined
                    self.factory.join(self.room, self)
                    self.transport.write(b"* joined\n")
                else:
                    self.factory.deliver(self.room, self.name, line)

        def connectionLost(self, reason=None) -> None:
            if self.room is not None:
                self.factory.leave(self.room, self)

    class ChatFactory(ChatRooms, protocol.ServerFactory):
        protocol = ChatProtocol

    return ChatFactory


def chat_factory():
    return _twisted_chat()()


def asyncio_chat_protocol():
    import asyncio

    class AsyncioChat(asyncio.Protocol):
        def __init__(self, rooms: ChatRooms) -> None:
            self.rooms = rooms
            self.buffer = b""
            self.name = self.room = None
            self.transport = None

        def connection_made(self, transport) -> None:
            self.transport = transport

        def send_line(self, line: bytes) -> None:
            self.transport.write(line)

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while b"\n" in self.buffer and self.transport is not None:
                line, _, self.buffer = self.buffer.partition(b"\n")
                if self.name is None:
                    joined = parse_join(line)
                    if joined is None:
                        self.transport.write(b"* bad join\n")
                        self.transport.close()
                        return
                    self.name, self.room = joined
                    self.rooms.join(self.room, self)
                    self.transport.write(b"* joined\n")
                else:
                    self.rooms.deliver(self.room, self.name, line)

        def connection_lost(self, exc) -> None:
            if self.room is not None:
                self.rooms.leave(self.room, self)
            self.transport = None

    return AsyncioChat


def asyncio_chat_factory(rooms: ChatRooms):
    # A partial, not a lambda: it shows the tm loop the object the connections share, which it
    # then manages (docs/MANAGED_STATE.md); the stock loop just calls it.
    return functools.partial(asyncio_chat_protocol(), rooms)


class Sink:
    """A member for the plain-thread ceiling: send_line keeps the line, as a transport's buffer."""

    __slots__ = ("out",)

    def __init__(self) -> None:
        self.out: list[bytes] = []

    def send_line(self, line: bytes) -> None:
        out = self.out
        out.append(line)
        if len(out) > 256:
            out.clear()
