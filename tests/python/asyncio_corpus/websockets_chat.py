"""A chat on the websockets library, as its documentation writes one: every connection is kept
in a set, and every message a client sends goes to every connection with `broadcast()`, which
queues it in each connection's protocol from the sending handler. Nothing here knows of tm.

    python websockets_chat.py [PORT]    prints "listening on PORT"; SIGTERM stops it
"""

import asyncio

from websockets.asyncio.server import broadcast, serve

from serving import port_argument, serve_until_sigterm

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
