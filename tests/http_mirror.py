"""A loopback HTTP server in the layout of Google's bucket, serving the shared mirror.

It honours ``Range: bytes=N-`` / ``bytes=N-M`` and ``If-Range`` (python's
SimpleHTTPRequestHandler has none), counts the body bytes it sends, and can misbehave on
demand: drop the connection after some bytes, announce more bytes than it sends, send no
validator, ignore Range or If-Range, answer with no HTTP at all. It listens on 127.0.0.1
only, never touches the internet, and a watchdog shuts it down even if a test hangs. Tests
get it as the ``server`` fixture (``tests/conftest.py``).
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
WRITE_PIECE = 1 << 14  # bytes per socket write, so "sent" counts what really left the server


class MirrorHandler(BaseHTTPRequestHandler):
    """GET files under ``server.root``, honouring ``Range: bytes=N-[M]`` and ``If-Range``."""

    timeout = 5  # seconds: a stuck client cannot hold a handler thread for long

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        server = self.server
        relative = posixpath.normpath(urllib.parse.unquote(urllib.parse.urlsplit(self.path).path))
        target = (server.root / relative.lstrip("/")).resolve()
        entry = {"path": self.path, "range": self.headers.get("Range"), "sent": 0}
        entry["if_range"] = self.headers.get("If-Range")
        server.requests.append(entry)
        if server.malformed:
            self.wfile.write(b"not an HTTP status line\r\n\r\n")
            return
        if server.root not in target.parents or not target.is_file():
            entry["status"] = 404
            self.send_error(404)
            return
        body = target.read_bytes()
        etag = f'"{hashlib.sha256(body).hexdigest()[:16]}-{server.version}"'
        start, stop, status = 0, len(body), 200
        wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if wanted and server.ranges and self._same_version(etag):
            start, status = int(wanted[1]), 206
            stop = min(stop, int(wanted[2]) + 1) if wanted[2] else stop
            if start >= len(body):
                entry["status"] = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
        payload = body[start:stop]
        entry["status"] = status
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload) + server.extra_length))
        if server.validators:
            self.send_header("ETag", etag)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(body)}")
        self.end_headers()
        cut = server.drop_after.pop(0) if server.drop_after else None
        # HTTP/1.0: the connection closes after the response, so a cut ends it midway.
        self._send(payload if cut is None else payload[:cut], entry)

    def _same_version(self, etag: str) -> bool:
        """Whether a ranged request may be answered with a range (RFC 9110's If-Range)."""
        if_range = self.headers.get("If-Range")
        if if_range is None or not self.server.if_range:
            return True
        return self.server.validators and if_range == etag

    def _send(self, payload: bytes, entry: dict) -> None:
        """Write in pieces, counting them; a client that closes early ends the response."""
        for offset in range(0, len(payload), WRITE_PIECE):
            piece = payload[offset : offset + WRITE_PIECE]
            try:
                self.wfile.write(piece)
            except (BrokenPipeError, ConnectionResetError):
                return
            entry["sent"] += len(piece)
            with self.server.count_lock:
                self.server.sent += len(piece)

    def log_message(self, *args) -> None:
        """Quiet: the request log above is what tests look at."""


@contextmanager
def serve(root: Path):
    """Serve ``root`` on a free loopback port for the duration of the ``with`` block."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), MirrorHandler)
    httpd.daemon_threads = True
    httpd.root = Path(root).resolve()
    httpd.requests = []  # one dict per GET: path, range, if_range, status, sent (body bytes)
    httpd.sent = 0  # body bytes sent over all GETs
    httpd.count_lock = threading.Lock()
    httpd.drop_after = []  # bytes to send before dropping, for the next GETs in turn
    httpd.extra_length = 0  # bytes announced in Content-Length but never sent
    httpd.version = 1  # part of the ETag: bump it to "change" every file on the server
    httpd.validators = True  # False: no ETag, so no client can tell two versions apart
    httpd.ranges = True  # False: ignore Range, answer every GET with the whole file (200)
    httpd.if_range = True  # False: ignore If-Range, resume whatever the client holds (broken)
    httpd.malformed = False  # True: answer with a line that is no HTTP status line
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
