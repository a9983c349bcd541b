"""A line-protocol server on asyncio streams over TLS.

Requests, one per line; every reply is a header line "KIND LENGTH" and LENGTH bytes:

    GET SEED SIZE     SIZE bytes of SHAKE-256(SEED), written in 64 KiB pieces, each drained
    ECHO N            then N bytes: they come back reversed
    SLEEP MS TEXT     TEXT upper-cased, MS milliseconds later
    QUIT              an empty BYE, and the server closes the connection
    DUMP SEED SIZE    as GET, but in one write, and the server closes the connection right
                      after it, without waiting for it to drain
    PUT NAME          then bytes up to the end of the client's stream, however the client ends
                      it (TLS close_notify or a TCP half-close): no reply, the server prints
                      "upload NAME LENGTH SHA256" once it has read them all, a piece at a time
    PUTALL NAME       the same, read with one read() to the end of the stream
    ABORT             no reply: the server aborts the connection (transport.abort())

    python tls_server.py PORT CERTFILE KEYFILE    prints "listening on PORT"; SIGTERM stops it
"""

import asyncio
import hashlib
import ssl
import sys

from serving import close_stream, serve_until_sigterm

PIECE = 64 * 1024


async def reply(writer, kind, body):
    writer.write(b"%s %d\n" % (kind, len(body)))
    for start in range(0, len(body), PIECE):
        writer.write(body[start : start + PIECE])
        await writer.drain()
    await writer.drain()


async def upload(reader, name):
    digest, size, chunks = hashlib.sha256(), 0, 0
    while chunk := await reader.read(16384):
        digest.update(chunk)
        size += len(chunk)
        chunks += 1
        if chunks % 8 == 0:
            await asyncio.sleep(0.001)  # a slow consumer, as one storing the upload would be
    print(f"upload {name} {size} {digest.hexdigest()}", flush=True)


async def serve(reader, writer):
    while line := await reader.readline():
        op, *args = line.split()
        if op == b"GET":
            await reply(writer, b"DATA", hashlib.shake_256(args[0]).digest(int(args[1])))
        elif op == b"ECHO":
            payload = await reader.readexactly(int(args[0]))
            await reply(writer, b"ECHO", payload[::-1])
        elif op == b"SLEEP":
            await asyncio.sleep(int(args[0]) / 1000)
            await reply(writer, b"AWAKE", b" ".join(args[1:]).upper())
        elif op == b"DUMP":
            size = int(args[1])
            writer.write(b"DATA %d\n" % size + hashlib.shake_256(args[0]).digest(size))
            return
        elif op == b"PUT":
            await upload(reader, args[0].decode())
            return
        elif op == b"PUTALL":
            data = await reader.read()
            print(
                f"upload {args[0].decode()} {len(data)} {hashlib.sha256(data).hexdigest()}",
                flush=True,
            )
            return
        elif op == b"ABORT":
            writer.transport.abort()
            return
        elif op == b"QUIT":
            await reply(writer, b"BYE", b"")
            return
        else:
            await reply(writer, b"ERR", b"unknown request " + op)


async def handle(reader, writer):
    try:
        await serve(reader, writer)
    except (ConnectionError, ssl.SSLError) as e:
        print(f"connection error {type(e).__name__}", flush=True)
    finally:
        await close_stream(writer, (ConnectionError, ssl.SSLError))


async def main():
    port, certfile, keyfile = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    server = await asyncio.start_server(handle, "127.0.0.1", port, ssl=context)
    await serve_until_sigterm(server)


if __name__ == "__main__":
    asyncio.run(main())
