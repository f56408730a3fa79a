#!/usr/bin/env python3
"""Fake engines for bench/director_heartbeats: each of N engines sends the director a full
heartbeat once, then (with --rate) heartbeats with inventory changes at that rate until --seconds
pass. Standard library only. Prints one line of counts at the end."""
import argparse
import collections
import http.client
import json
import random
import sys
import time


LOAD = json.dumps({"active_streams": 0, "bytes_per_second": 0, "free_bytes": 1 << 40,
                   "total_bytes": 1 << 41, "max_streams": 2000000000, "max_bytes_per_second": 0,
                   "used_bytes": 0, "max_disk_bytes": 0})
SHA = "0" * 64


def heartbeat(name, url, epoch, seq, full, added, removed):
    # Written as text, not through json.dumps of a dict per key: these fakes share a core with wrk,
    # and the CPU they take from it shows as the redirects' latency. (Names and programs are plain.)
    # The same text as json.dumps would write (its spacing too), so the same size.
    add = ", ".join(f'{{"program": "{p}", "index": {i}, "size": 100000, "sha256": "{SHA}"}}'
                    for p, i in added)
    rem = ", ".join(f'{{"program": "{p}", "index": {i}}}' for p, i in removed)
    return (f'{{"engine": "{name}", "url": "{url}", "epoch": {epoch}, "seq": {seq}, '
            f'"full": {"true" if full else "false"}, "load": {LOAD}, "added": [{add}], '
            f'"removed": [{rem}], "filling": [], "copies": []}}')


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--director", required=True)  # host:port
    a.add_argument("--engines", required=True)   # name=url,name=url...
    a.add_argument("--program", required=True)
    a.add_argument("--segments", type=int, required=True)
    a.add_argument("--holders", type=int, default=2)  # the first engines hold the program
    a.add_argument("--rate", type=float, default=0)   # heartbeats per second per engine
    a.add_argument("--changes", type=int, default=50)  # keys added and removed per heartbeat
    a.add_argument("--filler", type=int, default=2000)  # other segments each engine holds
    a.add_argument("--seconds", type=float, default=0)
    o = a.parse_args()
    engines = [e.split("=", 1) for e in o.engines.split(",")]
    host, port = o.director.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    state = {}
    sent = resyncs = 0
    # A new epoch each run, as each start of an engine has (src/engine/impl.h): a second run in the
    # same epoch started its sequence at 1 again, below the one the director had applied, so the
    # director dropped its whole inventories as old and answered its deltas with resyncs.
    epoch = random.getrandbits(63) | 1

    def send(name, url, full, added, removed):
        nonlocal sent, resyncs, conn
        st = state[name]
        st["seq"] += 1
        body = heartbeat(name, url, epoch, st["seq"], full, added, removed)
        for attempt in range(2):
            try:
                conn.request("POST", f"/v1/engines/{name}/heartbeat", body,
                             {"Content-Type": "application/json"})
                r = conn.getresponse()
                reply = r.read()
                break
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
        else:
            sys.exit(f"heartbeats.py: the director did not answer {name}'s heartbeat")
        if r.status != 200:
            sys.exit(f"heartbeats.py: {name}: {r.status} {reply[:200]!r}")
        sent += 1
        if json.loads(reply).get("resync"):
            # As the engine does (src/engine/heartbeat.cc): the next beat is a whole inventory,
            # its sequence number still the next one. Starting again at 1 in the same epoch made
            # the director drop that inventory as older than one applied, and answer every delta
            # after it with another resync.
            resyncs += 1
            st["resync"] = True

    for n, (name, url) in enumerate(engines):
        state[name] = {"seq": 0, "next": 0, "resync": False}
        # The filler keys, oldest first (they go first); the program's keys stay.
        filler = collections.deque((f"filler-{name}", i) for i in range(o.filler))
        kept = [(o.program, i) for i in range(o.segments)] if n < o.holders else []
        state[name]["filler"] = filler
        state[name]["kept"] = kept
        send(name, url, True, kept + list(filler), [])
    if o.rate > 0:
        period = 1.0 / o.rate
        t0 = time.monotonic()
        nxt = t0
        k = 0
        while time.monotonic() - t0 < o.seconds:
            for name, url in engines:
                st = state[name]
                if st["resync"]:
                    st["resync"] = False
                    send(name, url, True, st["kept"] + list(st["filler"]), [])
                    continue
                # Changes: the oldest filler keys go, as many new ones arrive.
                filler = st["filler"]
                gone = [filler.popleft() for _ in range(min(o.changes, len(filler)))]
                base = o.filler + k * o.changes
                new = [(f"filler-{name}", base + i) for i in range(o.changes)]
                filler.extend(new)
                send(name, url, False, new, gone)
            k += 1
            nxt += period
            time.sleep(max(0.0, nxt - time.monotonic()))
    print(f"heartbeats sent={sent} resyncs={resyncs}")


if __name__ == "__main__":
    main()
