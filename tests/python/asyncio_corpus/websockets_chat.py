"""A chat on the websockets library, as its documentation writes one: every connection is kept
in a set, and every message a client sends goes to every connection with `broadcast()`, which
queues it in each connection's protocol from the sending handler. With `legacy`, the same on the
library's legacy implementation (websockets.legacy, the only one before version 14, deprecated
since and still shipped), as programs written for it keep running: its own protocol class, whose
`broadcast()` writes each connection's frame to its transport from the sending handler. Nothing
here knows of tm.

    python websockets_chat.py [PORT [legacy]]    prints "listening on PORT"; SIGTERM stops it
"""

import asyncio
import sys

from serving import port_argument, serve_until_sigterm

if sys.argv[2:] == ["legacy"]:
    from websockets.legacy.protocol import broadcast
    from websockets.legacy.server import serve
else:
    from websockets.asyncio.server import broadcast, serve

CONNECTIONS = set()


async def chat(websocket) -> None:
    CONNECTIONS.add(websocket)
    try:
        async for message in websocket:
            broadcast(CONNECTIONS, message)
    finally:
        CONNECTIONS.discard(websocket)


async def main() -> None:
    await serve_until_sigterm(await serve(chat, "127.0.0.1", port_argument(), compression=None))


if __name__ == "__main__":
    asyncio.run(main())
