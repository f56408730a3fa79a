#!/usr/bin/env python3
"""A provider whose connections drop: serves the files of a folder over HTTP/1.1 with byte ranges,
but the first request of each file that asks for its whole body gets half of it and then the
connection closes. Each request is logged on stderr as 'GET /path range=...'.

usage: flaky_http.py PORT FOLDER
"""
import http.server
import os
import sys

served_once = set()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        rng = self.headers.get("Range", "")
        sys.stderr.write(f"GET {self.path} range={rng}\n")
        sys.stderr.flush()
        path = os.path.join(FOLDER, self.path.lstrip("/").split("?")[0])
        if ".." in self.path or not os.path.isfile(path):
            self.send_error(404)
            return
        data = open(path, "rb").read()
        start = 0
        if rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if start == 0 and self.path not in served_once:
            served_once.add(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


if __name__ == "__main__":
    PORT = int(sys.argv[1])
    FOLDER = sys.argv[2]
    http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
