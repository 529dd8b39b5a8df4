"""A local Sentry: an HTTP server on a free port that keeps every envelope posted to it.

Point a DSN at it (``sink.dsn``: ``http://publickey@127.0.0.1:<port>/1``) and sentry-sdk sends
its envelopes here (``POST /api/1/envelope/``, gzip-compressed or not) instead of to sentry.io.
The tests read what arrived: the events (``events()``) and every byte, decompressed (``raw()``),
to prove what never leaves the process.
"""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def envelope_items(body: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """An envelope's items, as (item header, payload); the envelope's own header line is skipped.

    The format: a JSON header line, then per item a JSON header line and its payload, either
    ``length`` bytes long or up to the next newline.
    """
    _, _, rest = body.partition(b"\n")
    items = []
    while rest.strip():
        header_line, _, rest = rest.partition(b"\n")
        header = json.loads(header_line)
        length = header.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length:].removeprefix(b"\n")
        items.append((header, payload))
    return items


class EnvelopeSink:
    def __init__(self) -> None:
        self.envelopes: list[bytes] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with sink._lock:
                    sink.envelopes.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self.port}/1"

    def raw(self) -> bytes:
        with self._lock:
            return b"\n".join(self.envelopes)

    def events(self) -> list[dict[str, Any]]:
        """Every error event received so far, in the order they arrived."""
        with self._lock:
            envelopes = list(self.envelopes)
        return [
            json.loads(payload)
            for envelope in envelopes
            for header, payload in envelope_items(envelope)
            if header.get("type") == "event"
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> EnvelopeSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
