"""A server that answers each request by running a pipeline of child processes
(asyncio.create_subprocess_exec, pipes between them pumped by the server).

Requests, one per line, each followed by N bytes of input; every reply is a header line
"KIND LENGTH" and LENGTH bytes:

    PIPE N    the input through two Python filters: NUMBER (each line numbered and reversed),
              then SHOUT (upper-cased, its SHA-256 appended; it exits with the input's length
              mod 7); the reply is "EXIT CODE1 CODE2" and the output
    ONE N     the input through SHOUT alone, with communicate()
    QUIT N    (N is 0) an empty BYE, and the server closes the connection

    python subprocess_server.py [PORT]    prints "listening on PORT"; SIGTERM stops it
"""

import asyncio
import sys

from serving import close_stream, port_argument, serve_until_sigterm

NUMBER = r"""
import sys
for i, line in enumerate(sys.stdin.buffer):
    sys.stdout.buffer.write(b"%d:" % i + line.rstrip(b"\n")[::-1] + b"\n")
"""
SHOUT = r"""
import hashlib, sys
data = sys.stdin.buffer.read()
sys.stdout.buffer.write(data.upper())
sys.stdout.buffer.write(hashlib.sha256(data).hexdigest().encode() + b"\n")
sys.exit(len(data) % 7)
"""
PIPE = asyncio.subprocess.PIPE


def python(code):
    return [sys.executable, "-I", "-S", "-c", code]


async def feed(data, stdin):
    stdin.write(data)
    await stdin.drain()
    stdin.close()
    await stdin.wait_closed()


async def pump(stdout, stdin):
    while chunk := await stdout.read(8192):
        stdin.write(chunk)
        await stdin.drain()
    stdin.close()
    await stdin.wait_closed()


async def pipeline(data):
    number = await asyncio.create_subprocess_exec(*python(NUMBER), stdin=PIPE, stdout=PIPE)
    shout = await asyncio.create_subprocess_exec(*python(SHOUT), stdin=PIPE, stdout=PIPE)
    _, _, output = await asyncio.gather(
        feed(data, number.stdin), pump(number.stdout, shout.stdin), shout.stdout.read()
    )
    codes = await asyncio.gather(number.wait(), shout.wait())
    return b"EXIT %d %d\n" % tuple(codes) + output


async def one(data):
    shout = await asyncio.create_subprocess_exec(*python(SHOUT), stdin=PIPE, stdout=PIPE)
    output, _ = await shout.communicate(data)
    return b"EXIT %d\n" % shout.returncode + output


async def handle(reader, writer):
    try:
        while line := await reader.readline():
            op, size = line.split()
            data = await reader.readexactly(int(size))
            if op == b"QUIT":
                writer.write(b"BYE 0\n")
                break
            body = await (pipeline(data) if op == b"PIPE" else one(data))
            writer.write(b"%s %d\n" % (op, len(body)) + body)
            await writer.drain()
        await writer.drain()
    finally:
        await close_stream(writer)


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", port_argument())
    await serve_until_sigterm(server)


if __name__ == "__main__":
    asyncio.run(main())
