"""The routes of aiohttp_server.py as a Starlette application served by uvicorn, as their
documentation writes them: a second web framework and a second HTTP server (uvicorn's protocol
over h11), with the same replies byte for byte, so that the tests drive it with aiohttp's plans.
Nothing here knows of tm: uvicorn makes its loop through asyncio's policy (loop="none"), which
run.py sets.

    python starlette_server.py [PORT]    prints "listening on PORT"; SIGTERM stops it
"""

import asyncio
import contextlib
import hashlib
import json
import signal
import socket

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from serving import port_argument


async def hello(request):
    return PlainTextResponse("hello " + request.path_params["name"])


async def summary(request):
    numbers = (await request.json())["numbers"]
    answer = {"n": len(numbers), "sum": sum(numbers), "max": max(numbers, default=None)}
    return Response(json.dumps(answer), media_type="application/json; charset=utf-8")


async def stream(request):
    count, size = int(request.query_params["n"]), int(request.query_params["size"])

    async def chunks():
        for i in range(count):
            yield hashlib.shake_256(b"chunk %d" % i).digest(size)

    return StreamingResponse(chunks(), media_type="application/octet-stream")


async def upload(request):
    digest, length = hashlib.sha256(), 0
    async for chunk in request.stream():
        digest.update(chunk)
        length += len(chunk)
    return PlainTextResponse(f"{length} {digest.hexdigest()}")


async def blob(request):
    seed, size = request.query_params["seed"].encode(), int(request.query_params["size"])
    kind = "application/octet-stream" if size else None
    return Response(hashlib.shake_256(seed).digest(size), media_type=kind)


async def sleep(request):
    await asyncio.sleep(int(request.query_params["ms"]) / 1000)
    return PlainTextResponse(request.query_params["text"][::-1])


async def redirect(request):
    location = f"/hello/{request.path_params['name']}"
    return PlainTextResponse("302: Found", status_code=302, headers={"Location": location})


async def bad(request):
    return PlainTextResponse("no good", status_code=400)


async def not_found(request, exc: HTTPException):
    return PlainTextResponse("404: Not Found", status_code=404)


@contextlib.asynccontextmanager
async def lifespan(app):
    # On the loop uvicorn made: the runner has printed which one by now.
    print(f"listening on {LISTENER.getsockname()[1]}", flush=True)
    yield


application = Starlette(
    lifespan=lifespan,
    routes=[
        Route("/hello/{name}", hello),
        Route("/json", summary, methods=["POST"]),
        Route("/stream", stream),
        Route("/upload", upload, methods=["POST"]),
        Route("/blob", blob),
        Route("/sleep", sleep),
        Route("/redirect/{name}", redirect),
        Route("/bad", bad),
    ],
    exception_handlers={404: not_found},
)


LISTENER = socket.socket()


def main() -> None:
    LISTENER.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    LISTENER.bind(("127.0.0.1", port_argument()))
    LISTENER.listen(128)  # clients that come before uvicorn accepts wait in the backlog
    config = uvicorn.Config(application, loop="none", log_level="warning", access_log=False)
    # uvicorn stops on SIGTERM and raises it again once stopped, to the handler it found.
    signal.signal(signal.SIGTERM, lambda number, frame: None)
    uvicorn.Server(config).run(sockets=[LISTENER])
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
