"""A stand-in W&B server on 127.0.0.1 that answers every request with one HTTP status.

For tests that run the CLI in a subprocess against `WANDB_BASE_URL=<url>`: wandb-core
really sends its requests there, and gets the status (429, 401, ...) a real server can
answer. Nothing else on the network is touched.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def standin(status: int) -> Iterator[str]:
    """Serve `status` to everything while the block runs; yields the server's URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            body = b'{"errors": [{"message": "stand-in server"}]}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
