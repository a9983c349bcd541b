"""What the corpus's servers share: their port argument, the lines a test reads from them
("listening on PORT" once listening, "stopped" at the end), the stop on SIGTERM, and the close of
a stream connection. Plain asyncio, nothing of tm: the servers import it as their neighbour
(run.py and each server sit in this folder, which Python puts first on sys.path)."""

import asyncio
import signal
import sys


def port_argument() -> int:
    """The port to listen on: the first argument, 0 (any free port) without one."""
    return int(sys.argv[1]) if len(sys.argv) > 1 else 0


async def listen_until_sigterm(port: int) -> None:
    """Prints "listening on PORT" and returns when SIGTERM comes."""
    print(f"listening on {port}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


async def serve_until_sigterm(server: asyncio.Server) -> None:
    """Prints the port the server listens on, serves until SIGTERM, closes the server and prints
    "stopped"."""
    async with server:
        await listen_until_sigterm(server.sockets[0].getsockname()[1])
    print("stopped", flush=True)


async def serve_app_until_sigterm(app, port: int) -> None:
    """Serves an aiohttp application on 127.0.0.1:port as serve_until_sigterm serves a server:
    "listening on PORT", SIGTERM, the application's clean-up, "stopped"."""
    from aiohttp import web  # only the aiohttp programs need it

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    await listen_until_sigterm(runner.addresses[0][1])
    await runner.cleanup()
    print("stopped", flush=True)


async def close_stream(
    writer: asyncio.StreamWriter, errors: tuple[type[BaseException], ...] = (ConnectionError,)
) -> None:
    """Closes a stream connection and waits for the close; the peer may have reset it already."""
    writer.close()
    try:
        await writer.wait_closed()
    except errors:
        pass
