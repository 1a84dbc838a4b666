"""A loopback HTTP server standing in for the integration a test playbook calls: it
records the JSON body of every POST, which is how cluster tests prove what each run did."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY_BYTES = 65536


class RecordingSink:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        lock, records = threading.Lock(), self.records

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = min(int(self.headers.get("Content-Length", "0")), MAX_BODY_BYTES)
                body = json.loads(self.rfile.read(length) or b"{}")
                with lock:
                    records.append(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/records"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
