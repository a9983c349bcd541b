"""The routes of aiohttp_server.py as a Sanic application, as Sanic's documentation writes one
for its low-level `create_server` (the program runs its own loop): a fourth web framework and
HTTP server, Sanic's own protocol over httptools, which starts the task serving each connection
itself. The replies are aiohttp's byte for byte, so that the tests drive it with aiohttp's plans;
the upload is read as it arrives (a streaming route). Nothing here knows of tm.

    python sanic_server.py [PORT]    prints "listening on PORT"; SIGTERM stops it
"""

import asyncio
import hashlib
import json

from sanic import Sanic, response
from sanic.exceptions import NotFound

from serving import listen_until_sigterm, port_argument

TEXT = "text/plain; charset=utf-8"

app = Sanic("corpus", configure_logging=False)


@app.get("/hello/<name>")
async def hello(request, name: str):
    return response.text("hello " + name, content_type=TEXT)


@app.post("/json")
async def summary(request):
    numbers = json.loads(request.body)["numbers"]
    answer = {"n": len(numbers), "sum": sum(numbers), "max": max(numbers, default=None)}
    return response.text(json.dumps(answer), content_type="application/json; charset=utf-8")


@app.get("/stream")
async def stream(request):
    count, size = int(request.args["n"][0]), int(request.args["size"][0])
    answer = await request.respond(content_type="application/octet-stream")
    for i in range(count):
        await answer.send(hashlib.shake_256(b"chunk %d" % i).digest(size))
    await answer.eof()


@app.post("/upload", stream=True)
async def upload(request):
    digest, length = hashlib.sha256(), 0
    while (chunk := await request.stream.read()) is not None:
        digest.update(chunk)
        length += len(chunk)
    return response.text(f"{length} {digest.hexdigest()}", content_type=TEXT)


@app.get("/blob")
async def blob(request):
    seed, size = request.args["seed"][0].encode(), int(request.args["size"][0])
    return response.raw(hashlib.shake_256(seed).digest(size))


@app.get("/sleep")
async def sleep(request):
    await asyncio.sleep(int(request.args["ms"][0]) / 1000)
    return response.text(request.args["text"][0][::-1], content_type=TEXT)


@app.get("/redirect/<name>")
async def redirect(request, name: str):
    return response.text(
        "302: Found", status=302, headers={"Location": f"/hello/{name}"}, content_type=TEXT
    )


@app.get("/bad")
async def bad(request):
    return response.text("no good", status=400, content_type=TEXT)


@app.exception(NotFound)
async def not_found(request, exception):
    return response.text("404: Not Found", status=404, content_type=TEXT)


async def main() -> None:
    server = await app.create_server(
        host="127.0.0.1", port=port_argument(), return_asyncio_server=True
    )
    await server.startup()
    await listen_until_sigterm(server.server.sockets[0].getsockname()[1])
    await server.close()
    print("stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
