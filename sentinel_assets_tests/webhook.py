"""A webhook endpoint on 127.0.0.1 for the alert tests: it answers a script of statuses
(or hangs past the client's timeout), then 200, and keeps what it accepted."""

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANG = "hang"  # answer nothing for `hang_s`: the client times out


class Receiver(ThreadingHTTPServer):
    """Answers `statuses` in turn (an HTTP status or HANG), then 200."""

    daemon_threads = True

    def __init__(self, statuses: list[int | str], port: int = 0, hang_s: float = 3.0):
        super().__init__(("127.0.0.1", port), Handler)
        self.statuses = list(statuses)
        self.hang_s = hang_s
        self.bodies: list[dict] = []
        self.keys: list[str | None] = []  # Idempotency-Key of each accepted POST
        self.answers: list[int | str] = []
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            status = self.server.statuses.pop(0) if self.server.statuses else 200
            self.server.answers.append(status)
        if status == HANG:
            time.sleep(self.server.hang_s)
            return
        if status == 200:
            with self.server.lock:
                self.server.bodies.append(body)
                self.server.keys.append(self.headers.get("Idempotency-Key"))
        self.send_response(int(status))
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


@contextmanager
def serving(statuses: list[int | str], port: int = 0, hang_s: float = 3.0) -> Iterator[Receiver]:
    server = Receiver(statuses, port=port, hang_s=hang_s)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    """A URL on which nothing listens: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"
