"""Loopback servers for channel tests: started on a free 127.0.0.1 port, stopped by fixtures."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorder:
    """What the server saw, and what it will answer (the script, then ``default``)."""

    requests: list[Request] = field(default_factory=list)
    script: list[Reply] = field(default_factory=list)
    default: Reply = field(default_factory=Reply)
    respond: Callable[[Request], Reply] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def next_reply(self, request: Request) -> Reply:
        with self.lock:
            self.requests.append(request)
            if self.respond is not None:
                return self.respond(request)
            return self.script.pop(0) if self.script else self.default


def _handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = recorder.next_reply(Request(self.command, self.path, headers, body))
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that timed out and hung up is part of the tests


@contextmanager
def http_server() -> Iterator[Recorder]:
    """A threaded HTTP/1.1 server that records every request."""
    recorder = Recorder()
    server = _Server(("127.0.0.1", 0), _handler(recorder))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
