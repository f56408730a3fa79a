#!/usr/bin/env python3
"""A source for tests: serves the files of a folder over HTTP/1.1 with byte ranges, and can be slow
or flaky the way a distant provider or a loaded engine is. Each request is logged on stderr as
'GET /path range=...'.

usage: test_http.py PORT FOLDER [--rate BYTES_PER_SECOND] [--delay-ms MS] [--die-after BYTES]
                                [--drop-first-at-half]

--rate: send bodies at this many bytes a second.
--delay-ms: wait this long before the reply's head (the source's time to first byte).
--die-after: close the connection after this many body bytes of every reply (a source that dies).
--drop-first-at-half: the first request of each file that asks for its whole body gets half of it,
  then the connection closes (a dropped download).
"""
import argparse
import http.server
import os
import sys
import time

SERVED_ONCE = set()

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
        limit = len(body) if ARGS.die_after is None else min(len(body), ARGS.die_after)
        if ARGS.drop_first_at_half and start == 0 and self.path not in SERVED_ONCE:
            SERVED_ONCE.add(self.path)
            limit = len(body) // 2
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.flush()
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
    p.add_argument("--drop-first-at-half", action="store_true")
    ARGS = p.parse_args()
    http.server.ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler).serve_forever()
