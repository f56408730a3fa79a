#!/usr/bin/env python3
"""A slow source: serves the files of a folder over HTTP/1.1 with byte ranges at a set rate, the
way a distant or loaded engine would. Each request is logged on stderr as 'GET /path range=...'.

usage: slow_http.py PORT FOLDER [--rate BYTES_PER_SECOND] [--delay-ms MS] [--die-after BYTES]

--delay-ms: wait this long before the reply's head (the source's time to first byte).
--die-after: close the connection after this many body bytes of every reply (a source that dies).
"""
import argparse
import http.server
import os
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        rng = self.headers.get("Range", "")
        sys.stderr.write(f"GET {self.path} range={rng}\n")
        sys.stderr.flush()
        path = os.path.join(ARGS.folder, self.path.lstrip("/").split("?")[0])
        if ".." in self.path or not os.path.isfile(path):
            self.send_error(404)
            return
        data = open(path, "rb").read()
        start = 0
        if ARGS.delay_ms:
            time.sleep(ARGS.delay_ms / 1000)
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
        self.wfile.flush()
        limit = len(body) if ARGS.die_after is None else min(len(body), ARGS.die_after)
        chunk = 16384
        sent = 0
        while sent < limit:
            n = min(chunk, limit - sent)
            self.wfile.write(body[sent : sent + n])
            self.wfile.flush()
            sent += n
            if ARGS.rate:
                time.sleep(n / ARGS.rate)
        if limit < len(body):
            self.close_connection = True
            self.connection.shutdown(2)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("folder")
    p.add_argument("--rate", type=float, default=0)
    p.add_argument("--delay-ms", type=int, default=0)
    p.add_argument("--die-after", type=int, default=None)
    ARGS = p.parse_args()
    http.server.ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler).serve_forever()
