"""An aiohttp web application, as aiohttp's documentation writes one: routes, JSON, a streamed
response, a request body read in chunks, a large body, a timer in a handler, a redirect, and
aiohttp's own 404 and 400 answers. aiohttp's server is the web framework the project's issues saw
hang on tm_asyncio (its protocol starts the task serving each connection itself, with
eager_start on 3.12+); nothing here knows of tm.

    GET  /hello/{name}       "hello NAME" (text/plain)
    POST /json               {"numbers": [...]} -> {"n": count, "sum": total, "max": largest}
    GET  /stream?n=N&size=S  N chunks of S bytes of SHAKE-256("chunk I"), each written and
                             drained on its own (chunked transfer encoding)
    POST /upload             the body read 4 KiB at a time: "LENGTH SHA256"
    GET  /blob?seed=X&size=S S bytes of SHAKE-256(X) in one response
    GET  /sleep?ms=M&text=T  T reversed, M milliseconds later
    GET  /redirect/{name}    302 to /hello/{name}
    GET  /bad                400 (web.HTTPBadRequest raised by the handler)

    python aiohttp_server.py [PORT]    prints "listening on PORT"; SIGTERM stops it
"""

import asyncio
import hashlib

from aiohttp import web

from serving import port_argument, serve_app_until_sigterm


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello " + request.match_info["name"])


async def summary(request: web.Request) -> web.Response:
    numbers = (await request.json())["numbers"]
    return web.json_response(
        {"n": len(numbers), "sum": sum(numbers), "max": max(numbers, default=None)}
    )


async def stream(request: web.Request) -> web.StreamResponse:
    count, size = int(request.query["n"]), int(request.query["size"])
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    await response.prepare(request)
    for i in range(count):
        await response.write(hashlib.shake_256(b"chunk %d" % i).digest(size))
    await response.write_eof()
    return response


async def upload(request: web.Request) -> web.Response:
    digest, length = hashlib.sha256(), 0
    async for chunk in request.content.iter_chunked(4096):
        digest.update(chunk)
        length += len(chunk)
    return web.Response(text=f"{length} {digest.hexdigest()}")


async def blob(request: web.Request) -> web.Response:
    seed, size = request.query["seed"].encode(), int(request.query["size"])
    return web.Response(body=hashlib.shake_256(seed).digest(size))


async def sleep(request: web.Request) -> web.Response:
    await asyncio.sleep(int(request.query["ms"]) / 1000)
    return web.Response(text=request.query["text"][::-1])


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound(f"/hello/{request.match_info['name']}")


async def bad(request: web.Request) -> web.Response:
    raise web.HTTPBadRequest(text="no good")


def application() -> web.Application:
    app = web.Application()
    app.add_routes(
        [
            web.get("/hello/{name}", hello),
            web.post("/json", summary),
            web.get("/stream", stream),
            web.post("/upload", upload),
            web.get("/blob", blob),
            web.get("/sleep", sleep),
            web.get("/redirect/{name}", redirect),
            web.get("/bad", bad),
        ]
    )
    return app


async def main() -> None:
    await serve_app_until_sigterm(application(), port_argument())


if __name__ == "__main__":
    asyncio.run(main())
