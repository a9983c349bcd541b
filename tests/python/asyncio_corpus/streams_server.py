"""A line-protocol server on asyncio streams (start_server, readline, readexactly, drain).

Requests, one per line; every reply is a header line "KIND LENGTH" and LENGTH bytes:

    GET SEED SIZE     SIZE bytes of SHAKE-256(SEED), written in 64 KiB pieces, each drained
    ECHO N            then N bytes: they come back reversed
    SUM A B ...       the sum, in decimal
    SLEEP MS TEXT     TEXT upper-cased, MS milliseconds later
    PUT               then bytes up to the end of the stream: their length and SHA-256
    QUIT              an empty BYE, and the server closes the connection

    python streams_server.py [PORT]     prints "listening on PORT"; SIGTERM stops it
"""

import asyncio
import hashlib

from serving import close_stream, port_argument, serve_until_sigterm

PIECE = 64 * 1024


async def reply(writer, kind, body):
    writer.write(b"%s %d\n" % (kind, len(body)))
    for start in range(0, len(body), PIECE):
        writer.write(body[start : start + PIECE])
        await writer.drain()
    await writer.drain()


async def serve(reader, writer):
    while line := await reader.readline():
        words = line.split()
        if not words:
            continue
        op, args = words[0], words[1:]
        if op == b"GET":
            await reply(writer, b"DATA", hashlib.shake_256(args[0]).digest(int(args[1])))
        elif op == b"ECHO":
            payload = await reader.readexactly(int(args[0]))
            await reply(writer, b"ECHO", payload[::-1])
        elif op == b"SUM":
            await reply(writer, b"SUM", str(sum(map(int, args))).encode())
        elif op == b"SLEEP":
            await asyncio.sleep(int(args[0]) / 1000)
            await reply(writer, b"AWAKE", b" ".join(args[1:]).upper())
        elif op == b"PUT":
            digest, size = hashlib.sha256(), 0
            while chunk := await reader.read(16384):
                digest.update(chunk)
                size += len(chunk)
            await reply(writer, b"PUT", b"%d %s" % (size, digest.hexdigest().encode()))
            return
        elif op == b"QUIT":
            await reply(writer, b"BYE", b"")
            return
        else:
            await reply(writer, b"ERR", b"unknown request " + op)


async def handle(reader, writer):
    try:
        await serve(reader, writer)
    finally:
        await close_stream(writer)


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", port_argument())
    await serve_until_sigterm(server)


if __name__ == "__main__":
    asyncio.run(main())
