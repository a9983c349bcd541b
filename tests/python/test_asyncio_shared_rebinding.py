"""A server whose handlers rebind a variable every connection shares (tm_asyncio._rebinding).

In parallel mode ``hits += 1`` on a module global or a closure variable from two connections at
once loses updates. The loop reads the handlers' code when the server is made: where parallel
mode was the loop's own choice, such a server serves serially on the loop's strand and says so;
where the program chose it, the loop only warns.
"""

from __future__ import annotations

import asyncio
import functools

import pytest

import tm
import tm_asyncio
from tm_asyncio import _loop
from tm_asyncio._rebinding import shared_rebindings
from tm_asyncio._transport import NativeStreamTransport

served = 0

# Module globals the handlers below change in place.
CHAT_WRITERS: set = set()
HITS: dict = {}
LOG: list = []
BACKGROUND: set = set()
ROUTES = {"/": "home"}


class Stats:
    total = 0  # over every instance

    def __init__(self) -> None:
        self.count = 0


STATS = Stats()


async def chat_handler(reader, writer):
    """The classic chat: every line to every connection in a module-level set."""
    CHAT_WRITERS.add(writer)
    try:
        while line := await reader.readline():
            for other in CHAT_WRITERS:
                other.write(line)
    finally:
        CHAT_WRITERS.discard(writer)
        writer.close()


async def counting_items(reader, writer):
    HITS["page"] += 1


async def counting_with_get(reader, writer):
    HITS["page"] = HITS.get("page", 0) + 1


async def deleting_what_it_finds(reader, writer):
    if "page" in HITS:
        del HITS["page"]


async def counting_on_a_global_object(reader, writer):
    STATS.count += 1


async def counting_on_a_class(reader, writer):
    Stats.total += 1


async def only_changing_in_place(reader, writer):
    LOG.append(Stats())  # a class only called
    task = asyncio.ensure_future(asyncio.sleep(0))
    BACKGROUND.add(task)  # asyncio's documented way to keep a task alive
    task.add_done_callback(BACKGROUND.discard)
    return ROUTES.get("/")  # only read


class GlobalCounting(asyncio.Protocol):
    def data_received(self, data: bytes) -> None:
        global served
        served += 1


class ClassAttributeCounting(asyncio.Protocol):
    served = 0  # over every connection

    def data_received(self, data: bytes) -> None:
        self.__class__.served += 1
        print(self.__class__.__name__)  # only read


class AttributeCounting(asyncio.Protocol):
    def __init__(self, server=None) -> None:
        self.server = server

    def data_received(self, data: bytes) -> None:
        mine = 0
        mine += 1
        self.server.hits += 1  # a managed object's attribute: transactional


class Server:
    def __init__(self) -> None:
        self.hits = 0

    def make_protocol(self):
        return AttributeCounting(self)


def counting_handler():
    hits = 0

    async def handle(reader, writer):
        nonlocal hits
        hits += 1

    return handle


def per_call_handler():
    limit = 10

    async def handle(reader, writer):
        seen = 0

        def bump():
            nonlocal seen  # the handler's own variable, one per connection
            seen += 1

        bump()
        return limit

    return handle


def test_rebinding_a_global_in_a_protocol_method_is_found():
    for factory in (GlobalCounting, lambda: GlobalCounting(), functools.partial(GlobalCounting)):
        (found,) = shared_rebindings(factory)
        assert found.startswith("global served (") and __file__ in found


def test_a_class_attribute_changed_through_self_s_class_is_found():
    (found,) = shared_rebindings(ClassAttributeCounting)
    assert found.startswith("a class attribute through __class__ (") and __file__ in found


def test_rebinding_an_enclosing_function_s_variable_is_found():
    (found,) = shared_rebindings(counting_handler())
    assert found.startswith("nonlocal hits (")


def test_locals_attributes_per_call_cells_and_library_code_are_not_reported():
    assert shared_rebindings(AttributeCounting) == []
    assert shared_rebindings(Server().make_protocol) == []
    assert shared_rebindings(per_call_handler()) == []
    assert shared_rebindings(asyncio.Protocol) == []
    assert shared_rebindings(asyncio.StreamReaderProtocol) == []


def test_a_global_changed_in_place_and_read_is_found():
    for handler, name in [
        (chat_handler, "CHAT_WRITERS"),
        (counting_items, "HITS"),
        (counting_with_get, "HITS"),
        (deleting_what_it_finds, "HITS"),
        (counting_on_a_global_object, "STATS"),
        (counting_on_a_class, "Stats"),
    ]:
        (found,) = shared_rebindings(handler)
        assert found.startswith(f"global {name} in place (") and __file__ in found, found


def test_a_global_only_changed_in_place_or_only_read_is_not_reported():
    # Each change is one atomic call, and nothing reads what it changes.
    assert shared_rebindings(only_changing_in_place) == []


@pytest.fixture
def loop_choosing_parallel(monkeypatch):
    """A 2-worker loop that chose parallel mode itself, as on a free-threaded interpreter with
    TM_ASYNCIO_PARALLEL unset (the GIL build is made to choose it too, to test the rule there)."""
    monkeypatch.delenv("TM_ASYNCIO_PARALLEL", raising=False)
    monkeypatch.setattr(_loop._reactor, "gil_enabled", lambda: False)
    loop = tm_asyncio.EventLoop(workers=2)
    assert loop.parallel
    yield loop
    loop.close()


async def _serve_clients(handler, clients: int) -> list[type]:
    """start_server(handler), `clients` clients at once that each send a line and wait for the
    server to close; returns the type of each connection's transport."""
    transports: list[type] = []

    async def handle(reader, writer):
        transports.append(type(writer.transport))
        await handler(reader, writer)
        await reader.readline()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def client():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"x\n")
        await reader.read()
        writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    server.close()
    await server.wait_closed()
    return transports


def test_a_server_rebinding_a_closure_variable_serves_serially_and_says_so(loop_choosing_parallel):
    hits = 0

    async def bump(reader, writer):
        nonlocal hits
        hits += 1

    with pytest.warns(
        RuntimeWarning, match=r"rebind or change nonlocal hits \(.*run one callback at a time"
    ):
        transports = loop_choosing_parallel.run_until_complete(
            asyncio.wait_for(_serve_clients(bump, 40), 30)
        )
    assert hits == 40
    assert len(transports) == 40
    assert not any(issubclass(t, NativeStreamTransport) for t in transports)


def test_a_server_without_shared_rebinding_stays_parallel(loop_choosing_parallel, recwarn):
    hits = tm.Counter()

    async def bump(reader, writer):
        hits.add(1)

    transports = loop_choosing_parallel.run_until_complete(
        asyncio.wait_for(_serve_clients(bump, 8), 30)
    )
    assert hits.value == 8
    assert all(issubclass(t, NativeStreamTransport) for t in transports)
    assert not [w for w in recwarn if "rebind" in str(w.message)]


def test_parallel_mode_chosen_by_the_program_stays_on_with_a_warning():
    loop = tm_asyncio.EventLoop(workers=2, parallel=True)
    count = 0

    async def bump(reader, writer):
        nonlocal count
        count += 1

    try:
        with pytest.warns(
            RuntimeWarning, match=r"rebind or change nonlocal count .*can lose updates"
        ):
            transports = loop.run_until_complete(asyncio.wait_for(_serve_clients(bump, 4), 30))
    finally:
        loop.close()
    assert all(issubclass(t, NativeStreamTransport) for t in transports)


CHAT_CLIENTS, CHAT_SESSIONS, CHAT_LINES = 8, 10, 20


async def _churning_chat_client(port: int, i: int) -> list[list[int]]:
    """Joins the chat CHAT_SESSIONS times while the others join, send and leave; in each session
    sends CHAT_LINES lines and reads until it has heard all of its own: their numbers as heard."""
    sessions = []
    for s in range(CHAT_SESSIONS):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for n in range(CHAT_LINES):
            writer.write(f"{i}:{s}:{n}\n".encode())
        own: list[int] = []
        while len(own) < CHAT_LINES and (line := await reader.readline()):
            sender, session, n = map(int, line.split(b":"))
            if (sender, session) == (i, s):
                own.append(n)
        writer.write_eof()  # and read what the others still send until the server closes
        while await reader.read(1 << 16):
            pass
        writer.close()
        await writer.wait_closed()
        sessions.append(own)
    return sessions


def test_a_chat_on_a_module_level_set_serves_serially_and_says_so(loop_choosing_parallel):
    # In parallel mode a handler's add() or discard() ran beside another's iteration of the set:
    # "RuntimeError: Set changed size during iteration" in client_connected_cb, at 2 workers on
    # 3.13t (tm_asyncio._rebinding).
    loop = loop_choosing_parallel
    reported: list[dict] = []
    loop.set_exception_handler(lambda loop, context: reported.append(context))

    async def chat():
        server = await asyncio.start_server(chat_handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await asyncio.gather(
                *(_churning_chat_client(port, i) for i in range(CHAT_CLIENTS))
            )
        finally:
            server.close()
            await server.wait_closed()

    with pytest.warns(RuntimeWarning, match=r"change global CHAT_WRITERS in place \("):
        heard = loop.run_until_complete(asyncio.wait_for(chat(), 60))
    assert [str(context.get("exception")) for context in reported] == []
    assert heard == [[list(range(CHAT_LINES))] * CHAT_SESSIONS] * CHAT_CLIENTS
    assert not CHAT_WRITERS


# A Starlette application's endpoint counting in module globals, served by uvicorn: its factory
# (a closure of uvicorn's over its Config) leads to the endpoint through the application's routes.
PAGE_HITS: dict = {}
pages_served = 0


async def counted_page(request):
    from starlette.responses import PlainTextResponse

    global pages_served
    name = request.path_params["name"]
    PAGE_HITS[name] = PAGE_HITS.get(name, 0) + 1
    pages_served += 1
    return PlainTextResponse(str(PAGE_HITS[name]))


def _counting_application():
    pytest.importorskip("uvicorn")
    starlette = pytest.importorskip("starlette.applications")
    from starlette.routing import Route

    return starlette.Starlette(routes=[Route("/count/{name}", counted_page)])


def test_a_framework_s_factory_leads_to_the_program_s_handlers():
    import uvicorn

    config = uvicorn.Config(_counting_application(), loop="none", lifespan="off")
    config.load()
    rebound = shared_rebindings(functools.partial(config.http_protocol_class, config=config))
    assert [what.split(" (")[0] for what in rebound] == [
        "global pages_served",
        "global PAGE_HITS in place",
    ]


async def counted_sanic_page(request, name):
    from sanic import response

    PAGE_HITS[name] = PAGE_HITS.get(name, 0) + 1
    return response.text(str(PAGE_HITS[name]))


def test_a_sanic_application_s_handlers_are_found_through_its_slots():
    # Sanic's server factory is a partial of its protocol class with the application, which keeps
    # its router (and so the handlers) in slots.
    sanic = pytest.importorskip("sanic")
    from sanic.server.protocols.http_protocol import HttpProtocol

    application = sanic.Sanic("counting")
    application.get("/count/<name>")(counted_sanic_page)
    application.router.finalize()
    rebound = shared_rebindings(functools.partial(HttpProtocol, app=application))
    assert [what.split(" (")[0] for what in rebound] == ["global PAGE_HITS in place"]


async def _ask_pages(port: int, i: int, count: int) -> list[bytes]:
    """`count` keep-alive GET /count/... on one connection; the bodies."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    bodies = []
    for n in range(count):
        writer.write(b"GET /count/page%d HTTP/1.1\r\nHost: test\r\n\r\n" % (n % 3))
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        bodies.append(await reader.readexactly(length))
    writer.close()
    await writer.wait_closed()
    return bodies


def test_a_starlette_application_counting_in_module_globals_serves_serially_and_says_so(
    loop_choosing_parallel,
):
    # In parallel mode the endpoint's `PAGE_HITS[name] = PAGE_HITS.get(name, 0) + 1` and
    # `pages_served += 1` from two connections at once lost updates: a program of its own, 8
    # clients x 2,000 requests at 2 workers on 3.13t, counted 15,994 and 15,724 of 16,000.
    import socket

    import uvicorn

    application = _counting_application()
    PAGE_HITS.clear()
    global pages_served
    pages_served = 0

    async def serve_and_ask():
        # IPPROTO_TCP: asyncio's transports set TCP_NODELAY only on sockets that say TCP
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        config = uvicorn.Config(application, loop="none", lifespan="off", log_level="warning")
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            port = listener.getsockname()[1]
            return await asyncio.gather(*(_ask_pages(port, i, 150) for i in range(8)))
        finally:
            server.should_exit = True
            await serving

    with pytest.warns(RuntimeWarning, match=r"change global pages_served \(.*one callback at"):
        answers = loop_choosing_parallel.run_until_complete(asyncio.wait_for(serve_and_ask(), 60))
    assert pages_served == 8 * 150
    assert PAGE_HITS == {"page0": 400, "page1": 400, "page2": 400}
    assert sorted(int(body) for bodies in answers for body in bodies) == sorted(
        n for _ in range(3) for n in range(1, 401)
    )
