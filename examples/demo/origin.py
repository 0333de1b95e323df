#!/usr/bin/env python3
"""The demo origin behind `make demo`: a few pages with cache headers.

Usage: origin.py [PORT [ADDRESS]]   (default 8081 on 127.0.0.1)
"""
import hashlib
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGES = {
    "/static/app.css": ("text/css", "public, max-age=300", b"body { font-family: sans-serif; }\n"),
    "/": ("text/html", "public, max-age=60", b"<h1>Parapet demo origin</h1>\n"),
    "/new/page": ("text/html", "public, max-age=60", b"<p>the new page</p>\n"),
}


class Origin(BaseHTTPRequestHandler):
    server_version = "demo-origin/1.0"

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        content_type, cache_control, body = PAGES.get(
            path,
            ("application/json", "private, no-store",
             json.dumps({"path": self.path, "subject": self.headers.get("x-auth-subject")}).encode() + b"\n"),
        )
        etag = '"%s"' % hashlib.sha256(body).hexdigest()[:16]
        if self.headers.get("if-none-match") == etag:
            self.send_response(304)
            self.send_header("etag", etag)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("cache-control", cache_control)
        self.send_header("etag", etag)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        sys.stderr.write("origin: %s\n" % (format % args))


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8081
    address = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    ThreadingHTTPServer((address, port), Origin).serve_forever()
