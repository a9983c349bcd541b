"""websockets_chat.py on the websockets library's legacy implementation (websockets.legacy, the
only one before version 14, deprecated since and still shipped), as programs written for it keep
running: its own protocol class, whose broadcast() writes each connection's frame to its
transport from the sending handler. Nothing here knows of tm.

    python websockets_legacy_chat.py [PORT]    prints "listening on PORT"; SIGTERM stops it
"""

import asyncio

from websockets.legacy.protocol import broadcast
from websockets.legacy.server import serve

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
