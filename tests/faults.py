"""A fault-injecting HTTP proxy for object stores: drills and tests of the store's retries.

    proxy = FaultProxy("http://127.0.0.1:9000")      # in front of any S3 API (moto, MinIO)
                                                      # or a GCS emulator (gcsfs reads the status)
    proxy.inject("503", 3, method="PUT")              # the next 3 PUTs get 503 SlowDown
    store = ResultStore("s3://bucket/x", endpoint_url=proxy.url)
    ...
    proxy.injected()                                  # how many faults were served
    proxy.close()

Faults: ``"500"`` (InternalError), ``"503"`` (SlowDown), ``"403"`` (AccessDenied) or
``"drop"`` (the connection is closed without an answer). Requests that match no
rule are forwarded unchanged. Loopback only; not a general-purpose proxy.
"""
from __future__ import annotations

import http.client
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

__all__ = ["FaultProxy", "FAULTS"]

FAULTS_HTTP = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "SlowDown", "Please reduce your request rate."),
    "403": (403, "AccessDenied", "Access Denied"),
}
#: every fault :meth:`FaultProxy.inject` knows
FAULTS = set(FAULTS_HTTP) | {"drop"}

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
        "proxy-authorization", "proxy-authenticate", "expect", "content-length"}


class FaultProxy:
    """Forwards HTTP to ``upstream``; the first ``count`` requests matching a rule get
    the rule's fault instead ("500", "503", "403" or "drop": close without answering)."""

    def __init__(self, upstream: str) -> None:
        u = urlsplit(upstream)
        self.up = (u.hostname, u.port)
        self.rules: list[dict] = []
        self.log: list[tuple[str, str, str]] = []  # (method, path, outcome)
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def _body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _handle(self) -> None:
                body = self._body()
                fault = proxy._take(self.command, self.path)
                if fault == "drop":
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if fault is not None:
                    status, code, msg = FAULTS_HTTP[fault]
                    xml = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                           f"<Message>{msg}</Message><RequestId>x</RequestId></Error>").encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(xml)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(xml)
                    return
                conn = http.client.HTTPConnection(*proxy.up, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self.send_response(resp.status, resp.reason)
                length = None
                for k, v in resp.getheaders():
                    kl = k.lower()
                    if kl == "content-length":
                        length = v
                    elif kl not in _HOP and kl not in ("server", "date"):
                        self.send_header(k, v)
                if self.command == "HEAD":
                    self.send_header("Content-Length", length or "0")
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def inject(self, fault: str, count: int, method: str | None = None,
               path: str | None = None) -> None:
        """The next ``count`` requests with this method whose path matches the regex fail."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose from {sorted(FAULTS)}")
        if not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be an int >= 0, got {count!r}")
        with self.lock:
            self.rules.append({"fault": fault, "left": count, "method": method,
                               "path": re.compile(path) if path else None})

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()

    def _take(self, method: str, path: str) -> str | None:
        with self.lock:
            for r in self.rules:
                if r["left"] > 0 and (r["method"] in (None, method)) and (
                        r["path"] is None or r["path"].search(path)):
                    r["left"] -= 1
                    self.log.append((method, path, r["fault"]))
                    return r["fault"]
            self.log.append((method, path, "ok"))
            return None

    def injected(self, fault: str | None = None) -> int:
        with self.lock:
            return sum(1 for *_, o in self.log if o != "ok" and (fault is None or o == fault))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
