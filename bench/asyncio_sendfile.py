"""loop.sendfile() from a server's accepted connection: tm_asyncio's native path (os.sendfile)
against asyncio's fallback (the file read in chunks and written), side by side in one run, and
asyncio's default loop beside them. A benchmark: it never passes or fails.

    PYTHONPATH=... python bench/asyncio_sendfile.py [--mib 64] [--repeat 3]

Each configuration runs in a process of its own under this interpreter: a server whose protocol
answers each connection with loop.sendfile(transport, file) of a file of MIB MiB and closes, and a
streams client in the same loop that reads to EOF; the best of REPEAT transfers is printed in MiB/s.
tm runs with 2 workers in parallel mode (accepted connections on native transports); "tm
fallback" is the same with the native path turned off (the file read in chunks and written).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time


def serve_and_fetch(loop_kind: str, path: str, size: int, repeat: int) -> float:
    import tm_asyncio
    from tm_asyncio import _loop

    if loop_kind == "tm-fallback":

        async def no_native_path(self, transp, file, offset, count):
            raise asyncio.SendfileNotAvailableError("the native path is turned off")

        _loop.EventLoop._sendfile_native = no_native_path

    class SendsTheFile(asyncio.Protocol):
        def connection_made(self, transport) -> None:
            self.transport = transport
            asyncio.get_running_loop().create_task(self.send())

        async def send(self) -> None:
            with open(path, "rb") as file:
                await asyncio.get_running_loop().sendfile(self.transport, file)
            self.transport.close()

    async def main() -> float:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(SendsTheFile, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
            received = 0
            while chunk := await reader.read(1 << 20):
                received += len(chunk)
            writer.close()
            best = min(best, time.perf_counter() - start)
            assert received == size, (received, size)
        server.close()
        await server.wait_closed()
        return size / (1 << 20) / best

    if loop_kind == "default":
        loop = asyncio.new_event_loop()
    else:
        loop = tm_asyncio.EventLoop(workers=2, parallel=True)
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("LOOP", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = args.mib << 20
    if args.child:
        print(f"{serve_and_fetch(args.child[0], args.child[1], size, args.repeat):.0f}")
        return 0
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "file.bin")
        with open(path, "wb") as file:
            block = os.urandom(1 << 20)
            for _ in range(args.mib):
                file.write(block)
        rates = {}
        for kind in ("default", "tm-native", "tm-fallback"):
            out = subprocess.run(
                [sys.executable, __file__, "--mib", str(args.mib), "--repeat", str(args.repeat)]
                + ["--child", kind, path],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            rates[kind] = float(out.strip())
    free_threaded = not getattr(sys, "_is_gil_enabled", lambda: True)()
    python = sys.version.split()[0] + ("t" if free_threaded else "")
    print(
        f"loop.sendfile() of {args.mib} MiB, best of {args.repeat}, {os.cpu_count()} cores, "
        f"Python {python}"
    )
    for kind, rate in rates.items():
        print(f"  {kind:12} {rate:7.0f} MiB/s  ({rate / rates['default']:.2f}x default)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
