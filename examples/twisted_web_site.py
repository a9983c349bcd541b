"""A twisted.web site with shared state and a CPU-bound page, unchanged on any reactor.

    python examples/twisted_web_site.py [--reactor epoll|tm] [--workers N] [--port PORT]
    twistd -n --reactor=tm web --class=examples.twisted_web_site.resource   (with examples/ on the path)

Pages:
  /         a hello page
  /work     about 1 ms of CPU work per request (iterated SHA-256), the page to scale
  /stats    the hit counter, as JSON

The hit counter is a tm.Counter: its increments commute, so requests never conflict on it, and on
a stock reactor it is just a counter.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

from twisted.web import resource, server

import tm

WORK_ROUNDS = int(os.environ.get("TM_EXAMPLE_WORK_ROUNDS", "2000"))


class Root(resource.Resource):
    def __init__(self) -> None:
        super().__init__()
        self.hits = tm.Counter()
        self.putChild(b"", Hello(self))
        self.putChild(b"work", Work(self))
        self.putChild(b"stats", Stats(self))


class Hello(resource.Resource):
    isLeaf = True

    def __init__(self, root: Root) -> None:
        super().__init__()
        self.root = root

    def render_GET(self, request):
        self.root.hits.add(1)
        request.setHeader(b"content-type", b"text/plain")
        return b"hello from twisted.web\n"


class Work(Hello):
    def render_GET(self, request):
        self.root.hits.add(1)
        digest = request.uri
        for _ in range(WORK_ROUNDS):
            digest = hashlib.sha256(digest).digest()
        request.setHeader(b"content-type", b"text/plain")
        return digest.hex().encode() + b"\n"


class Stats(Hello):
    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"hits": int(self.root.hits)}).encode()


def site() -> server.Site:
    return server.Site(Root())


resource = Root  # for `twistd web --class=twisted_web_site.resource`


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reactor", choices=["epoll", "tm"], default="tm")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    if args.reactor == "tm":
        import tm_twisted

        tm_twisted.install(args.workers)
    else:
        from twisted.internet import epollreactor

        epollreactor.install()
    from twisted.internet import reactor

    port = reactor.listenTCP(args.port, site(), interface="127.0.0.1")
    print(f"listening on {port.getHost().port}", flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
