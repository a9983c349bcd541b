"""A WebSocket chat on Starlette and uvicorn, its connections kept as FastAPI's documentation
keeps them: a module-level manager whose list every handler appends itself to, removes itself
from and iterates to send each message to everyone. uvicorn serves the WebSocket with its default
implementation, its own protocol over the websockets library's sans-I/O one, which it switches to
from its HTTP protocol in the callback that reads the upgrade request. A send to a connection
that is closing fails, as it can on any loop, and is skipped. Nothing here knows of tm.

    python starlette_chat.py [PORT]    prints "listening on PORT"; SIGTERM stops it
"""

import contextlib
import signal
import socket

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from serving import port_argument


class ConnectionManager:
    def __init__(self) -> None:
        self.active_connections: list[WebSocket] = []

    async def connect(self, websocket: WebSocket) -> None:
        await websocket.accept()
        self.active_connections.append(websocket)

    def disconnect(self, websocket: WebSocket) -> None:
        self.active_connections.remove(websocket)

    async def broadcast(self, message: str) -> None:
        for connection in self.active_connections:
            try:
                await connection.send_text(message)
            except (WebSocketDisconnect, RuntimeError):  # it closed; its handler removes it
                pass


manager = ConnectionManager()


async def chat(websocket: WebSocket) -> None:
    await manager.connect(websocket)
    try:
        while True:
            await manager.broadcast(await websocket.receive_text())
    except WebSocketDisconnect:
        manager.disconnect(websocket)


LISTENER = socket.socket()


@contextlib.asynccontextmanager
async def lifespan(app):
    print(f"listening on {LISTENER.getsockname()[1]}", flush=True)
    yield


application = Starlette(lifespan=lifespan, routes=[WebSocketRoute("/", chat)])


def main() -> None:
    LISTENER.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    LISTENER.bind(("127.0.0.1", port_argument()))
    LISTENER.listen(128)
    config = uvicorn.Config(application, loop="none", log_level="warning", access_log=False)
    signal.signal(signal.SIGTERM, lambda number, frame: None)  # as starlette_server.py
    uvicorn.Server(config).run(sockets=[LISTENER])
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
