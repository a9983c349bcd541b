"""A twisted.web site with shared state and a CPU-bound page, unchanged on any reactor.

    python examples/twisted_web_site.py [--reactor epoll|tm] [--workers N] [--port PORT]
    twistd -n --reactor=tm web --class=twisted_web_site.resource   (with examples/ on the path)

Pages:
  /           a hello page
  /work?...   about 1 ms of CPU work per request (iterated SHA-256 of the request's URI), the page
              to scale; its results are cached by query in a bounded in-memory cache
  /stats      the hit counter and the cache's size, as JSON; on the tm reactor also tm.stats()
              (commits, aborts by cause, time inevitable, ...)

The shared state is written for many workers without locks:
- the hit counter is a tm.Counter: its increments commute, so requests never conflict on it (on a
  stock reactor it is just a counter);
- the cache is a tm.Dict read inside `with tm.snapshot():`. A snapshot read never makes the
  request inevitable, so cache misses compute in parallel; the result is stored at the end of the
  request, the only point where a request takes the inevitable token (a short one). A stale read
  only costs a recomputation, which is why a cache may be read this way. With
  TM_EXAMPLE_CACHE_READ=transactional the cache is read as ordinary shared state instead: the
  request becomes inevitable at that first read and holds the token through its 1 ms of work, so
  requests run one at a time (docs/TUNING.md measures both).

TM_EXAMPLE_WORK_ROUNDS sets the SHA-256 rounds of /work (default 2000), TM_EXAMPLE_CACHE_SIZE the
cache's bound (default 1024 entries; once full it stops filling).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from twisted.web import resource, server

import tm

try:  # CPython's own SHA-256 (hashlib's fallback): same digests as hashlib.sha256
    from _sha2 import sha256
except ImportError:  # CPython 3.11
    from _sha256 import sha256

# Why not hashlib.sha256: on OpenSSL 3 every call takes and drops a reference on one process-wide
# EVP_MD object, and on a free-threaded interpreter two threads hashing at once fight over that
# counter's cache line: measured here, two threads of hashlib.sha256 rounds did 0.68x the work of
# one, CPython's own SHA-256 1.5x (docs/TUNING.md). The page is meant to measure the reactor.

WORK_ROUNDS = int(os.environ.get("TM_EXAMPLE_WORK_ROUNDS", "2000"))
CACHE_SIZE = int(os.environ.get("TM_EXAMPLE_CACHE_SIZE", "1024"))
SNAPSHOT_READS = os.environ.get("TM_EXAMPLE_CACHE_READ", "snapshot") != "transactional"


def on_tm_reactor() -> bool:
    from twisted.internet import reactor

    return type(reactor).__module__.startswith("tm_twisted")


class Root(resource.Resource):
    def __init__(self) -> None:
        super().__init__()
        self.hits = tm.Counter()
        self.cache = tm.Dict()  # query -> rendered page, at most CACHE_SIZE entries
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
        request.setHeader(b"content-type", b"text/plain")
        key = request.uri.partition(b"?")[2]
        cache = self.root.cache
        if SNAPSHOT_READS:
            with tm.snapshot():
                page = cache.get(key)
                full = len(cache) >= CACHE_SIZE
        else:
            page = cache.get(key)
            full = len(cache) >= CACHE_SIZE
        if page is not None:
            return page
        digest = request.uri
        for _ in range(WORK_ROUNDS):
            digest = sha256(digest).digest()
        page = digest.hex().encode() + b"\n"
        if not full:
            cache[key] = page  # a write: the request is inevitable from here to its end
        return page


class Stats(Hello):
    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json")
        with tm.snapshot():
            stats = {"hits": int(self.root.hits), "cache_entries": len(self.root.cache)}
        if on_tm_reactor():
            stats["tm"] = tm.stats()
        return json.dumps(stats).encode()


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
