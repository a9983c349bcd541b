"""The routes of aiohttp_server.py as a Tornado application, as Tornado's documentation writes
one: a third web framework, whose HTTP server reads and writes its sockets through the loop's
add_reader and add_writer (Tornado's IOStream) rather than through asyncio's transports. The
replies are aiohttp's byte for byte, so that the tests drive it with aiohttp's plans; the upload
is read as it arrives (`stream_request_body`). Nothing here knows of tm.

    python tornado_server.py [PORT]    prints "listening on PORT"; SIGTERM stops it
"""

import asyncio
import hashlib
import json

import tornado.httpserver
import tornado.netutil
import tornado.web

from serving import listen_until_sigterm, port_argument

TEXT = "text/plain; charset=utf-8"


class Text(tornado.web.RequestHandler):
    def reply(self, text: str, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", TEXT)
        self.finish(text)


class Hello(Text):
    def get(self, name: str) -> None:
        self.reply("hello " + name)


class Summary(tornado.web.RequestHandler):
    def post(self) -> None:
        numbers = json.loads(self.request.body)["numbers"]
        answer = {"n": len(numbers), "sum": sum(numbers), "max": max(numbers, default=None)}
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(answer))


class Stream(tornado.web.RequestHandler):
    async def get(self) -> None:
        count, size = int(self.get_query_argument("n")), int(self.get_query_argument("size"))
        self.set_header("Content-Type", "application/octet-stream")
        for i in range(count):
            self.write(hashlib.shake_256(b"chunk %d" % i).digest(size))
            await self.flush()


@tornado.web.stream_request_body
class Upload(Text):
    def prepare(self) -> None:
        self.digest, self.length = hashlib.sha256(), 0

    def data_received(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.length += len(chunk)

    def post(self) -> None:
        self.reply(f"{self.length} {self.digest.hexdigest()}")


class Blob(tornado.web.RequestHandler):
    def get(self) -> None:
        seed, size = self.get_query_argument("seed").encode(), int(self.get_query_argument("size"))
        if size:
            self.set_header("Content-Type", "application/octet-stream")
        else:
            self.clear_header("Content-Type")  # as aiohttp: none with an empty body
        self.finish(hashlib.shake_256(seed).digest(size))


class Sleep(Text):
    async def get(self) -> None:
        await asyncio.sleep(int(self.get_query_argument("ms")) / 1000)
        self.reply(self.get_query_argument("text")[::-1])


class Redirect(Text):
    def get(self, name: str) -> None:
        self.set_header("Location", f"/hello/{name}")
        self.reply("302: Found", 302)


class Bad(Text):
    def get(self) -> None:
        self.reply("no good", 400)


class NotFound(Text):
    def prepare(self) -> None:
        self.reply("404: Not Found", 404)


def application() -> tornado.web.Application:
    return tornado.web.Application(
        [
            (r"/hello/(.*)", Hello),
            (r"/json", Summary),
            (r"/stream", Stream),
            (r"/upload", Upload),
            (r"/blob", Blob),
            (r"/sleep", Sleep),
            (r"/redirect/(.*)", Redirect),
            (r"/bad", Bad),
        ],
        default_handler_class=NotFound,
        log_function=lambda handler: None,  # no access log: its lines carry each request's time
    )


async def main() -> None:
    sockets = tornado.netutil.bind_sockets(port_argument(), "127.0.0.1")
    server = tornado.httpserver.HTTPServer(application(), max_body_size=4 << 20)
    server.add_sockets(sockets)
    await listen_until_sigterm(sockets[0].getsockname()[1])
    server.stop()
    await server.close_all_connections()
    print("stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
