#!/usr/bin/env python3
"""test_stampede.py - corrald's stampede protection on the wire: Corral's
A flag on mg (early recache wins with XFetch's probability, the delta
learned as the time from a W to the store that follows it), and the
stampede counters of "stats corral" and of the metrics endpoint,
including the server's lease timeouts.

The early win is random by design; the checks use bounds that hold with
overwhelming probability (a win expected at ~95% per try gets 60 tries;
a win expected at e^-10000 per try gets 200).  Nothing here measures
speed.
"""

import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Client, exchange  # noqa: E402

STAMPEDE_STATS = (b"loads", b"load_waits", b"load_timeouts",
                  b"stampedes_absorbed", b"stale_served",
                  b"early_refreshes", b"early_wins", b"recache_wins",
                  b"recache_lost", b"meta_stale", b"meta_vivified",
                  b"meta_lease_timeouts")


def stats_corral(c):
    c.send(b"stats corral\r\n")
    r = c.read_until(b"END\r\n")
    return {m.group(1): int(m.group(2))
            for m in re.finditer(rb"^STAT (\S+) (\d+)\r$", r, re.M)}


def mg(c, line):
    c.send(line + b"\r\n")
    return c.read_meta_reply()


def t_memcached_refuses_a(res):
    """The letter is free in memcached 1.6: it refuses it outright."""
    if not harness.have_memcached():
        res.check(False, "memcached installed for the comparison")
        return
    with harness.memcached([]) as mc, Client(mc.port) as c:
        for req in (b"mg k A v\r\n", b"mg k A0.5\r\n", b"ms k 1 A\r\nx\r\n"):
            res.eq(exchange(c, req), b"CLIENT_ERROR invalid flag\r\n",
                   "memcached refuses %r" % req)


def t_early(res, port):
    with Client(port) as c:
        before = stats_corral(c)
        # No delta learned yet (a plain store): A never wins.
        exchange(c, b"ms plain 1 T10\r\nx\r\n")
        got = [mg(c, b"mg plain A1000 v") for _ in range(50)]
        res.eq(set(got), {b"VA 1\r\nx\r\n"}, "no delta learned: no early W")

        # Learn a delta of at least 50 ms: a W (N), then the store.
        res.eq(mg(c, b"mg e N30 v"), b"VA 0 W\r\n\r\n", "N vivifies: W")
        time.sleep(0.05)
        res.eq(exchange(c, b"ms e 3 T10\r\nold\r\n"), b"HD\r\n", "ms e")
        # A tiny beta far from the expiry: no early win.
        exchange(c, b"ms far 3 T1000\r\nold\r\n")
        res.eq(mg(c, b"mg far A0.001 v"), b"VA 3\r\nold\r\n",
               "far from expiry: plain hit")

        # Within 10 s of expiry with delta * beta >= 50 s: W at 82 % or
        # more a try (TTLs of a few seconds could run out on a slow run).
        replies = []
        for _ in range(60):
            r = mg(c, b"mg e A1000 v t")
            replies.append(r)
            if b" W" in r:
                break
        won = [r for r in replies if re.match(rb"VA 3 t\d+ W\r\n", r)]
        res.check(len(won) == 1, "one early W", repr(replies[-3:]))
        res.check(all(re.match(rb"VA 3 t\d+\r\n", r)
                      for r in replies[:-1]),
                  "plain hits before the win", repr(replies[:3]))
        r = mg(c, b"mg e A1000 v")
        res.eq(r, b"VA 3 Z\r\nold\r\n", "after the early W: Z")
        res.eq(mg(c, b"mg e v"), b"VA 3 Z\r\nold\r\n", "plain mg: Z too")
        res.eq(exchange(c, b"ms e 3 T10\r\nnew\r\n"), b"HD\r\n",
               "the winner stores")
        r = mg(c, b"mg e v")
        res.eq(r, b"VA 3\r\nnew\r\n", "the new value, token free")

        after = stats_corral(c)
        res.eq(after[b"early_wins"] - before[b"early_wins"], 1,
               "stats corral early_wins +1")
        res.eq(after[b"recache_wins"] - before[b"recache_wins"], 2,
               "recache_wins +2 (N, then A)")
        res.eq(after[b"recache_lost"] - before[b"recache_lost"], 2,
               "recache_lost +2 (the two Z)")


def t_lease_timeouts(res, port):
    with Client(port) as c:
        before = stats_corral(c)
        # A holder that stores: no timeout, even when the key wins again.
        res.eq(mg(c, b"mg kept N30"), b"HD W\r\n", "kept: W")
        exchange(c, b"ms kept 1 T100\r\nv\r\n")
        exchange(c, b"md kept I\r\n")
        res.eq(mg(c, b"mg kept v"), b"VA 1 X W\r\nv\r\n", "stale: W again")
        exchange(c, b"ms kept 1 T100\r\nw\r\n")
        # A holder that never stores: its 3 s stub expires, the next
        # vivifying mg wins again, and that is one lease timeout.  (A 1 s
        # stub could expire between the first two requests: TTLs end at
        # a whole second.)
        res.eq(mg(c, b"mg lost N3"), b"HD W\r\n", "lost: W")
        res.eq(mg(c, b"mg lost N3"), b"HD Z\r\n", "lost: Z while held")
        deadline = time.time() + 10 * harness.SLOW
        r = b""
        while time.time() < deadline:
            time.sleep(0.25)
            r = mg(c, b"mg lost N1")
            if r != b"HD Z\r\n":
                break
        res.eq(r, b"HD W\r\n", "lost: W again once the stub expired")
        after = stats_corral(c)
        res.eq(after[b"meta_lease_timeouts"] -
               before[b"meta_lease_timeouts"], 1, "one lease timeout")
        res.eq(after[b"meta_vivified"] - before[b"meta_vivified"], 3,
               "three stubs created")
        res.eq(after[b"meta_stale"] - before[b"meta_stale"], 1,
               "one stale item seen")


def t_stats_names(res, port, mport):
    with Client(port) as c:
        names = stats_corral(c)
    for want in STAMPEDE_STATS:
        res.check(want in names, "stats corral has %s" % want.decode())
    s = socket.create_connection(("127.0.0.1", mport), timeout=10)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    body = b""
    while True:
        d = s.recv(1 << 16)
        if not d:
            break
        body += d
    s.close()
    for want in STAMPEDE_STATS:
        fam = b"corral_" + want + b"_total"
        res.check(re.search(rb"^# TYPE " + fam + rb" counter$", body, re.M)
                  is not None, "metrics has %s" % fam.decode())


def main():
    res = harness.Results("stampede")
    harness.overall_deadline(120)
    res.run(t_memcached_refuses_a)
    mport = harness.free_port()
    with harness.corrald(["-t", "2", "--metrics-port", str(mport)]) as cd:
        res.run(t_early, cd.port)
        res.run(t_lease_timeouts, cd.port)
        res.run(t_stats_names, cd.port, mport)
        res.eq(cd.stop(), 0, "corrald exits 0 on SIGTERM")
    res.finish()


if __name__ == "__main__":
    main()
