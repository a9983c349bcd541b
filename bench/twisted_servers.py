"""The servers bench/twisted_bench.py loads: an echo Protocol, a twisted.web hello-world or
twisted.web's static.File over a folder (what `twistd web --path` serves), on Twisted's epoll
reactor or on the tm reactor with N workers. Only public Twisted APIs (listenTCP, Protocol, Site),
so the same file runs whatever transports the reactor has underneath.

    python bench/twisted_servers.py --reactor epoll|tm [--workers N] --kind echo|web|static
        [--root DIR] --port-file F

Listens on 127.0.0.1, an ephemeral port. Once listening it writes F (atomically: a temporary file
renamed) as one JSON object: the port, the reactor class and worker count really in use, the
interpreter, and where `tm` was imported from, so the bench can check it measured what it meant to.
Runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import sysconfig

from twisted.internet import protocol
from twisted.web import resource, server, static


class Echo(protocol.Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class EchoFactory(protocol.Factory):
    protocol = Echo


class Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain")
        return b"hello, world\n"


def factory(kind: str, root: str | None) -> protocol.Factory:
    if kind == "echo":
        return EchoFactory()
    site = server.Site(static.File(root) if kind == "static" else Hello())
    site.displayTracebacks = False
    return site


def install(reactor_name: str, workers: int):
    if reactor_name == "tm":
        import tm_twisted

        tm_twisted.install(workers)
    else:
        from twisted.internet import epollreactor

        epollreactor.install()
    from twisted.internet import reactor

    return reactor


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reactor", choices=["epoll", "tm"], required=True)
    parser.add_argument("--workers", type=int, default=1, help="tm only (0: one per core)")
    parser.add_argument("--kind", choices=["echo", "web", "static"], required=True)
    parser.add_argument("--root", help="static: the folder to serve")
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args(argv)

    reactor = install(args.reactor, args.workers)
    # A large backlog: the bench opens all its connections at once.
    port = reactor.listenTCP(0, factory(args.kind, args.root), backlog=1024, interface="127.0.0.1")
    tm_module = sys.modules.get("tm")
    info = {
        "port": port.getHost().port,
        "pid": os.getpid(),
        "reactor": type(reactor).__name__,
        "workers": getattr(reactor, "workers", 1),
        "python": sys.version.split()[0],
        "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "gil_enabled": getattr(sys, "_is_gil_enabled", lambda: True)(),
        "tm": getattr(tm_module, "__file__", None),
    }
    temporary = args.port_file + ".tmp"
    with open(temporary, "w") as f:
        json.dump(info, f)
    os.replace(temporary, args.port_file)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
