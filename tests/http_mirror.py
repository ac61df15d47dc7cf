"""A loopback HTTP server in the layout of Google's bucket, serving the shared mirror.

It honours ``Range: bytes=N-`` / ``bytes=N-M`` and ``If-Range`` (python's
SimpleHTTPRequestHandler has none) and can misbehave on demand: drop the connection after
some bytes, or announce more bytes than it sends. It listens on 127.0.0.1 only, never
touches the internet, and a watchdog shuts it down even if a test hangs. Tests get it as
the ``server`` fixture (``tests/conftest.py``).
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import threading
import urllib.parse
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SERVER_LIFETIME_S = 60.0  # watchdog: the server stops by itself even if a test hangs


class MirrorHandler(BaseHTTPRequestHandler):
    """GET files under ``server.root``, honouring ``Range: bytes=N-`` and ``If-Range``."""

    timeout = 5  # seconds: a stuck client cannot hold a handler thread for long

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        server = self.server
        relative = posixpath.normpath(urllib.parse.unquote(urllib.parse.urlsplit(self.path).path))
        target = (server.root / relative.lstrip("/")).resolve()
        entry = {"path": self.path, "range": self.headers.get("Range")}
        entry["if_range"] = self.headers.get("If-Range")
        server.requests.append(entry)
        if server.root not in target.parents or not target.is_file():
            entry["status"] = 404
            self.send_error(404)
            return
        body = target.read_bytes()
        etag = f'"{hashlib.sha256(body).hexdigest()[:16]}-{server.version}"'
        start, status = 0, 200
        wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if wanted and self.headers.get("If-Range") in (None, etag):
            start, status = int(wanted[1]), 206
            if start >= len(body):
                entry["status"] = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
        payload = body[start:]
        entry["status"] = status
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload) + server.extra_length))
        self.send_header("ETag", etag)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        cut = server.drop_after.pop(0) if server.drop_after else None
        # HTTP/1.0: the connection closes after the response, so a cut ends it midway.
        self.wfile.write(payload if cut is None else payload[:cut])

    def log_message(self, *args) -> None:
        """Quiet: the request log above is what tests look at."""


@contextmanager
def serve(root: Path):
    """Serve ``root`` on a free loopback port for the duration of the ``with`` block."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), MirrorHandler)
    httpd.daemon_threads = True
    httpd.root = Path(root).resolve()
    httpd.requests = []  # one dict per GET: path, range, if_range, status
    httpd.drop_after = []  # bytes to send before dropping, for the next GETs in turn
    httpd.extra_length = 0  # bytes announced in Content-Length but never sent
    httpd.version = 1  # part of the ETag: bump it to "change" every file on the server
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    watchdog = threading.Timer(SERVER_LIFETIME_S, httpd.shutdown)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield httpd
    finally:
        watchdog.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
