"""The vendor emulator as a second uvicorn server inside the gateway's process and event loop.

It listens on 127.0.0.1 only, on its own port: mounted on the gateway's port it would hand out
free completions to anyone who can reach the gateway. `python -m tokenrelay.emulator` runs the
same app standalone (then point TOKENRELAY_EMULATOR_URL at it).
"""

from __future__ import annotations

import asyncio
import socket

import uvicorn


class EmbeddedEmulator:
    def __init__(self, server: uvicorn.Server, sock: socket.socket) -> None:
        self._server = server
        self._sock = sock
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._main: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, port: int = 0) -> EmbeddedEmulator:
        """Listen on 127.0.0.1:`port` (0: any free port) and serve until `close`."""
        # Imported here: a gateway with every vendor's key never loads the emulator.
        from tokenrelay.emulator.app import create_app

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        config = uvicorn.Config(
            create_app(),
            lifespan="off",
            access_log=False,
            # Leave logging as the gateway configured it (uvicorn would reset its loggers).
            log_config=None,
            log_level=None,
            timeout_graceful_shutdown=5,
        )
        config.load()
        # Server.serve() would install its own signal handlers over the gateway's; the
        # startup/main_loop/shutdown steps it runs are public and leave signals alone.
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        emulator = cls(server, sock)
        await server.startup(sockets=[sock])
        emulator._main = asyncio.create_task(server.main_loop())
        return emulator

    async def close(self) -> None:
        self._server.should_exit = True
        if self._main is not None:
            await self._main
        await self._server.shutdown(sockets=[self._sock])
