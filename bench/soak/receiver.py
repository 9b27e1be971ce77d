"""A webhook or Caliper-endpoint receiver process for the soak: logs every POST, answers per its mode.

`python -m bench.soak.receiver PORT LOG MODE`. Modes: `ok`; `slow` (0.3 s per answer); `flaky`
(503 while the file `LOG.fail` exists, which the harness creates and removes); `gone` (410 to the
first request after the file `LOG.gone` appears, once, then 2xx; the harness may remove the file
again first). Each request is one JSON line in
LOG (time, status, the signature and auth headers, body) written before the answer, so a receiver
killed between the two has logged what the hub will send again.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature", "authorization")


def serve(port: int, log_path: Path, mode: str) -> None:
    lock = threading.Lock()
    if log_path.exists() and not log_path.read_bytes().endswith(b"\n"):
        with log_path.open("a", encoding="utf-8") as torn:  # the previous process died mid-line
            torn.write("\n")
    log = log_path.open("a", encoding="utf-8")
    fail_flag, gone_flag = Path(f"{log_path}.fail"), Path(f"{log_path}.gone")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            status = 200
            if mode == "flaky" and fail_flag.exists():
                status = 503
            if mode == "gone":
                try:  # whoever removes the flag first, this receiver or the harness taking the fault back
                    gone_flag.unlink()
                    status = 410
                except FileNotFoundError:
                    pass
            if mode == "slow":
                time.sleep(0.3)
            line = {"t": time.time(), "status": status, "body": body.decode("utf-8", "replace"),
                    "headers": {name: self.headers.get(name) for name in HEADERS if self.headers.get(name)}}
            with lock:
                log.write(json.dumps(line) + "\n")
                log.flush()
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
