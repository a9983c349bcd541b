"""A Protocol server that starts the task serving each connection itself, in connection_made,
as aiohttp's and uvicorn's servers do: asyncio.Task(coro, loop=loop, eager_start=True) on Python
3.12+, loop.create_task() before. data_received queues request lines; the task answers them in
order (pipelining), waiting in its own flow control while the transport is paused; at the end of
the client's stream the task answers what is left and closes.

Requests, one per line; every reply is a header line "KIND LENGTH" and LENGTH bytes:

    HELLO NAME        "hi NAME, request N of this connection"
    HASH ROUNDS TEXT  SHA-256 applied ROUNDS times to TEXT, in hex
    BLOB SEED SIZE    SIZE bytes of SHAKE-256(SEED), in one write
    WAIT MS TEXT      TEXT reversed, MS milliseconds later

    python protocol_server.py [PORT]    prints "listening on PORT"; SIGTERM stops it
"""

import asyncio
import hashlib
import sys

from serving import port_argument, serve_until_sigterm


class Service(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.loop = asyncio.get_running_loop()
        self.requests = asyncio.Queue()
        self.buffer = bytearray()
        self.writable = None  # a future while the transport is paused
        self.served = 0
        if sys.version_info >= (3, 12):
            self.task = asyncio.Task(self.serve(), loop=self.loop, eager_start=True)
        else:
            self.task = self.loop.create_task(self.serve())

    def data_received(self, data):
        self.buffer += data
        while (end := self.buffer.find(b"\n")) >= 0:
            self.requests.put_nowait(bytes(self.buffer[:end]))
            del self.buffer[: end + 1]

    def eof_received(self):
        self.requests.put_nowait(None)
        return True  # half-closed: the task still answers what came before the end

    def connection_lost(self, exc):
        self.requests.put_nowait(None)
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def pause_writing(self):
        self.writable = self.loop.create_future()

    def resume_writing(self):
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    async def send(self, kind, body):
        if self.writable is not None:
            await self.writable
        self.transport.write(b"%s %d\n%s" % (kind, len(body), body))

    async def serve(self):
        while (line := await self.requests.get()) is not None:
            if self.transport.is_closing():
                break
            self.served += 1
            op, *args = line.split(b" ", 2)
            if op == b"HELLO":
                await self.send(
                    b"HI", b"hi %s, request %d of this connection" % (args[0], self.served)
                )
            elif op == b"HASH":
                digest = args[1]
                for _ in range(int(args[0])):
                    digest = hashlib.sha256(digest).digest()
                await self.send(b"HASH", digest.hex().encode())
            elif op == b"BLOB":
                await self.send(b"BLOB", hashlib.shake_256(args[0]).digest(int(args[1])))
            elif op == b"WAIT":
                await asyncio.sleep(int(args[0]) / 1000)
                await self.send(b"WAITED", args[1][::-1])
            else:
                await self.send(b"ERR", b"unknown request " + op)
        self.transport.close()


async def main():
    server = await asyncio.get_running_loop().create_server(Service, "127.0.0.1", port_argument())
    await serve_until_sigterm(server)


if __name__ == "__main__":
    asyncio.run(main())
