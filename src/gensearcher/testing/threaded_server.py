"""Run an ASGI app under uvicorn in a background thread, on 127.0.0.1 and a free port."""

from __future__ import annotations

import threading
import time
from typing import Any


class ThreadedUvicorn:
    """`with ThreadedUvicorn(app) as server: server.url` — starts, waits until listening, stops on exit."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="auto", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="uvicorn", daemon=True)
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ThreadedUvicorn:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=3)
        if self._thread.is_alive():  # a hanging test request: stop waiting for it
            self._server.force_exit = True
            self._thread.join(timeout=10)

    def __enter__(self) -> ThreadedUvicorn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
