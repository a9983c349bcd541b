"""A WebSocket server on the websockets library's asyncio implementation, as its documentation
writes one: a third framework, whose own protocol class (not asyncio's) reads the frames, a task
per connection runs the handler, and futures carry each message, each ping's pong and the
closing handshake between them. Nothing here knows of tm.

Each text message is a command, answered on the same connection:

    echo TEXT           the text reversed
    blob SEED SIZE      SIZE bytes of SHAKE-256(SEED), as one binary message
    parts SEED N SIZE   N binary messages of SIZE bytes, then the text "parts done"
    sleep MS TEXT       TEXT after MS milliseconds
    ping TEXT           a ping with TEXT as its payload, then "pong TEXT" once it is answered
    close REASON        the closing handshake (1000, normal closure) with that reason

and a binary message is answered with its length and SHA-256.

    python websockets_server.py [PORT]    prints "listening on PORT"; SIGTERM stops it
"""

import asyncio
import hashlib

from websockets.asyncio.server import serve

from serving import port_argument, serve_until_sigterm


async def answer(websocket) -> None:
    async for message in websocket:
        if isinstance(message, bytes):
            await websocket.send(f"{len(message)} {hashlib.sha256(message).hexdigest()}")
            continue
        command, _, rest = message.partition(" ")
        if command == "echo":
            await websocket.send(rest[::-1])
        elif command == "blob":
            seed, size = rest.split()
            await websocket.send(hashlib.shake_256(seed.encode()).digest(int(size)))
        elif command == "parts":
            seed, count, size = rest.split()
            for i in range(int(count)):
                await websocket.send(hashlib.shake_256(f"{seed}.{i}".encode()).digest(int(size)))
            await websocket.send("parts done")
        elif command == "sleep":
            ms, text = rest.split(" ", 1)
            await asyncio.sleep(int(ms) / 1000)
            await websocket.send(text)
        elif command == "ping":
            await (await websocket.ping(rest))
            await websocket.send(f"pong {rest}")
        elif command == "close":
            await websocket.close(reason=rest)
        else:
            await websocket.send(f"unknown command {command}")


async def main() -> None:
    await serve_until_sigterm(await serve(answer, "127.0.0.1", port_argument(), compression=None))


if __name__ == "__main__":
    asyncio.run(main())
