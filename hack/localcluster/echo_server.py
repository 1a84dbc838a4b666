"""The `kubesoar.dev/test/http-echo` image: a tiny HTTP server for cluster tests.

Binds $POD_IP (else the address the node agent gave the pod) on $PORT (8080).
GET /healthz -> 200 "ok"; any other GET -> 200 JSON naming the pod, the path
and the headers. Exits promptly on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType


class EchoHandler(BaseHTTPRequestHandler):
    server_version = "kubesoar-http-echo/1"

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._reply(200, b"ok\n", "text/plain")
            return
        body = {
            "pod": os.environ.get("POD_NAME") or os.environ.get("HOSTNAME", ""),
            "namespace": os.environ.get("POD_NAMESPACE", ""),
            "path": self.path,
            "headers": dict(self.headers.items()),
        }
        self._reply(200, json.dumps(body).encode(), "application/json")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main() -> int:
    host = os.environ.get("POD_IP") or os.environ.get("KUBESOAR_LOCAL_POD_IP", "127.0.0.1")
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer((host, port), EchoHandler)
    server.daemon_threads = True

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        # shutdown() blocks until serve_forever returns, so call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)
    print(f"http-echo listening on {host}:{port}", flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    print("http-echo stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
