"""A real webhook receiver for notification tests: an HTTP server on loopback recording every POST."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST (headers and body) and answers ``status``."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.status = 204
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test reads the requests; the server's access log is noise

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def for_task(self, task_id: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
        """The requests whose JSON body is about ``task_id``, decoded."""
        found = [(headers, json.loads(body)) for headers, body in list(self.requests)]
        return [(headers, body) for headers, body in found if body.get("task_id") == task_id]


@contextlib.contextmanager
def running_receiver() -> Iterator[Receiver]:
    """A started ``Receiver``, shut down when the block ends."""
    receiver = Receiver()
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
