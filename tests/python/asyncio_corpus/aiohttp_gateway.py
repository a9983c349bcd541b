"""An aiohttp gateway: every request is answered from a backend (aiohttp_server.py) through one
aiohttp.ClientSession the application shares, as aiohttp's documentation sets one up (made in a
cleanup context, stored on the application). Its connector keeps at most 4 connections, so
handlers of different client connections take turns on the same pooled backend connections and
wait for a free one.

    GET  /blob?seed=X&size=S   the backend's /blob, read whole
    GET  /stream?n=N&size=S    the backend's /stream, passed on 1000 bytes at a time
    GET  /fanout?k=K           K concurrent GET /hello/gK-I (asyncio.gather), joined with "|"
    POST /upload               the body read whole and posted to the backend's /upload

    python aiohttp_gateway.py PORT BACKEND_PORT    prints "listening on PORT"; SIGTERM stops it
"""

import asyncio
import sys

import aiohttp
from aiohttp import web

from serving import serve_app_until_sigterm

BACKEND = web.AppKey("backend", str)
SESSION = web.AppKey("session", aiohttp.ClientSession)


async def client_session(app: web.Application):
    app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4))
    yield
    await app[SESSION].close()


async def blob(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    async with request.app[SESSION].get(backend + "/blob", params=request.query) as answer:
        return web.Response(body=await answer.read(), content_type="application/octet-stream")


async def stream(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND]
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    await response.prepare(request)
    async with request.app[SESSION].get(backend + "/stream", params=request.query) as answer:
        async for chunk in answer.content.iter_chunked(1000):
            await response.write(chunk)
    await response.write_eof()
    return response


async def fanout(request: web.Request) -> web.Response:
    backend, session = request.app[BACKEND], request.app[SESSION]
    count = int(request.query["k"])

    async def hello(i: int) -> str:
        async with session.get(f"{backend}/hello/g{count}-{i}") as answer:
            return await answer.text()

    return web.Response(text="|".join(await asyncio.gather(*(hello(i) for i in range(count)))))


async def upload(request: web.Request) -> web.Response:
    backend, body = request.app[BACKEND], await request.read()
    async with request.app[SESSION].post(backend + "/upload", data=body) as answer:
        return web.Response(text=await answer.text())


async def main() -> None:
    app = web.Application()
    app[BACKEND] = f"http://127.0.0.1:{int(sys.argv[2])}"
    app.cleanup_ctx.append(client_session)
    app.add_routes(
        [
            web.get("/blob", blob),
            web.get("/stream", stream),
            web.get("/fanout", fanout),
            web.post("/upload", upload),
        ]
    )
    await serve_app_until_sigterm(app, int(sys.argv[1]))


if __name__ == "__main__":
    asyncio.run(main())
