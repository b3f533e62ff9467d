#!/usr/bin/env python3
"""test_near.py - the near cache (libcorral-near): two processes, each with
its own corral_t bound to one corrald (tests/integration/near_helper),
and writes made through either of them or any other client.

  - a value read through one process is served locally afterwards; a
    write through the other process makes that local copy miss;
  - tags and prefixes invalidated on the server reach the local copies
    stored with the same tags or keys, and a flush_all empties them (a
    delayed one too, for a process that connected while it was pending);
  - while the server is gone, lookups through the near API miss and
    reads go to the loader; once it is back the local cache is flushed;
    a server whose process stops is noticed by the stream's silence;
  - corral_near_fetch_fleet: several processes, several threads each,
    fetch one cold key at once and the backend runs once in total (the
    server's meta lease flags across processes, corral_fetch within).

Waits poll for a condition under a deadline; nothing asserts a timing.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

HELPER = os.path.join(harness.TOP_BUILDDIR, "tests", "integration",
                      "near_helper")
EXAMPLE = os.path.join(harness.TOP_BUILDDIR, "server", "near", "near-example")
TOP_SRCDIR = os.environ.get(
    "top_srcdir",
    os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))


class Proc:
    """A near_helper process: one command line in, one line out."""

    def __init__(self, port, name):
        self.name = name
        self.p = subprocess.Popen([HELPER, str(port)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE,
                                  env=harness.sanitizer_env())

    def cmd(self, line):
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()
        out = self.p.stdout.readline()
        if not out:
            raise EOFError("%s exited (%s)" % (self.name, self.p.poll()))
        return out.decode().rstrip("\n")

    def close(self):
        try:
            self.p.stdin.write(b"quit\n")
            self.p.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass
        try:
            return self.p.wait(30 * harness.SLOW)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return self.p.wait()


def wait_for(cond, what, timeout=10.0):
    end = time.time() + timeout * harness.SLOW
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def t_coherence(res, a, b):
    res.eq(a.cmd("wait"), "synced", "process A's near cache is live")
    res.eq(b.cmd("wait"), "synced", "process B's near cache is live")
    res.eq(a.cmd("set k v1"), "stored", "A writes k")
    res.eq(b.cmd("get k"), "miss", "B has no local copy yet")
    res.eq(b.cmd("fetch k"), "hit v1", "B reads k through its loader")
    res.eq(b.cmd("get k"), "hit v1", "B now serves k locally")
    res.eq(a.cmd("fetch k"), "hit v1", "A has its own copy")
    res.eq(a.cmd("set k v2"), "stored", "A overwrites k on the server")
    wait_for(lambda: b.cmd("get k") == "miss", "B's copy to go")
    res.check(True, "a write through A makes B's local copy miss")
    wait_for(lambda: a.cmd("get k") == "miss", "A's own copy to go")
    res.check(True, "and A's own stale copy too")
    res.eq(b.cmd("fetch k"), "hit v2", "B reads the new value")
    res.eq(b.cmd("send delete k"), "DELETED", "B deletes k on the server")
    wait_for(lambda: b.cmd("get k") == "miss", "the delete to arrive")
    res.eq(b.cmd("fetch k"), "absent", "then k is absent for B")


def t_tags_prefix_flush(res, a, b):
    a.cmd("set t1 one")
    a.cmd("set t2 two")
    a.cmd("set p:1 three")
    res.eq(b.cmd("fetch t1 grp,other"), "hit one", "B caches t1, tagged grp")
    res.eq(b.cmd("fetch t2 other"), "hit two", "B caches t2, tagged other")
    res.eq(b.cmd("fetch p:1"), "hit three", "B caches p:1")
    res.eq(a.cmd("send invalidate_tag grp"), "INVALIDATED",
           "A invalidates tag grp on the server")
    wait_for(lambda: b.cmd("get t1") == "miss", "t1 to go")
    res.check(True, "a server tag invalidation reaches B's tagged copy")
    res.eq(b.cmd("get t2"), "hit two", "a copy without the tag stays")
    res.eq(a.cmd("send invalidate_prefix p:"), "INVALIDATED",
           "A invalidates prefix p: on the server")
    wait_for(lambda: b.cmd("get p:1") == "miss", "p:1 to go")
    res.check(True, "a server prefix invalidation reaches B")
    res.eq(a.cmd("send flush_all"), "OK", "flush_all on the server")
    wait_for(lambda: b.cmd("get t2") == "miss", "t2 to go")
    res.check(True, "a flush empties B's local cache")


def t_delayed_flush(res, a, port):
    """A near cache that connects while a delayed flush_all is pending
    learns it from the sync line: its copies of items the server flushes
    then are flushed too."""
    delay = int(6 * harness.SLOW)
    due = time.time() + delay
    res.eq(a.cmd("send flush_all %d" % delay), "OK", "a delayed flush_all")
    c = Proc(port, "C")
    try:
        res.eq(c.cmd("wait"), "synced", "C connects after it")
        a.cmd("set df v")
        res.eq(c.cmd("fetch df"), "hit v", "C caches an item stored before "
                                           "the flush time")
        res.check(time.time() < due - 2, "(before the flush time)")
        res.eq(c.cmd("get df"), "hit v", "and serves it until then")
        with harness.Client(port) as cl:
            def server_miss():
                cl.send(b"get df\r\n")
                return cl.read_value_reply() == b"END\r\n"
            wait_for(server_miss, "the server's flush", timeout=delay + 10)
        wait_for(lambda: c.cmd("get df") == "miss", "C's copy to go")
        res.check(True, "C's copy goes with the server's item")
        # what is stored in the flush's last second goes too (memcached):
        # let it pass before the next test stores
        time.sleep(max(0.0, due + 1 - time.time()))
    finally:
        res.eq(c.close(), 0, "C exits 0")


def t_stopped_server(res):
    """A server process that stops (SIGSTOP: its kernel still answers
    TCP) is noticed by the stream's silence; lookups miss until it runs
    again, then the stream comes back."""
    srv = harness.corrald(["-t", "2"])
    p = Proc(srv.port, "P")
    try:
        res.eq(p.cmd("wait"), "synced", "P is live")
        srv.signal(signal.SIGSTOP)
        try:
            wait_for(lambda: p.cmd("synced") == "0", "P to notice",
                     timeout=20)
            res.check(True, "a stopped server is noticed by its silence")
            res.eq(p.cmd("get anything"), "miss", "lookups miss meanwhile")
        finally:
            srv.signal(signal.SIGCONT)
        res.eq(p.cmd("wait"), "synced", "the stream comes back")
    finally:
        res.eq(p.close(), 0, "P exits 0")
        res.eq(srv.stop(), 0, "that corrald exits 0")
        srv.close()


def t_outage(res, a, b, srv_box):
    srv = srv_box[0]
    port = srv.port
    a.cmd("set o value")
    res.eq(b.cmd("fetch o"), "hit value", "B caches o")
    res.check(b.cmd("fleet o:fleet /dev/null 0 1").startswith("hit v"),
              "B's fleet fetch leaves a pooled connection")
    srv.signal(signal.SIGKILL)
    srv.wait()
    wait_for(lambda: b.cmd("synced") == "0", "B to notice")
    res.check(True, "the near cache notices the server is gone")
    res.eq(b.cmd("get o"), "miss", "while disconnected, lookups miss")
    res.eq(b.cmd("fetch o"), "error",
           "and reads go to the loader (which cannot reach the server)")
    srv.close()
    srv_box[0] = harness.corrald(["-t", "2"], port=port)
    res.eq(b.cmd("wait"), "synced", "B reconnects to the new server")
    res.eq(a.cmd("wait"), "synced", "A too")
    res.eq(b.cmd("get o"), "miss", "its local cache was flushed")
    before = dict(kv.split("=") for kv in b.cmd("fleetstats").split())
    res.check(b.cmd("fleet o:fleet2 /dev/null 0 1").startswith("hit v"),
              "a fleet fetch after the restart")
    after = dict(kv.split("=") for kv in b.cmd("fleetstats").split())
    res.eq((int(after["fallbacks"]) - int(before["fallbacks"]),
            int(after["loads"]) - int(before["loads"])), (0, 1),
           "goes through the new server, not the dead pooled connection")
    a.cmd("set o again")
    res.eq(b.cmd("fetch o"), "hit again", "and it reads through again")
    a.cmd("set o later")
    wait_for(lambda: b.cmd("get o") == "miss", "the next write to arrive")
    res.check(True, "invalidations flow again after the reconnect")
    st = dict(kv.split("=") for kv in b.cmd("stats").split())
    res.check(int(st["connects"]) >= 2, "two streams established")
    res.check(int(st["applied"]) > 0, "events applied")


def t_readme_example(res, port):
    """The README's example is server/near/example.c, and it works."""
    with open(os.path.join(TOP_SRCDIR, "README.md")) as f:
        readme = f.read()
    with open(os.path.join(TOP_SRCDIR, "server", "near", "example.c")) as f:
        src = f.read()
    begin = "<!-- begin server/near/example.c -->\n```c\n"
    end = "```\n<!-- end server/near/example.c -->"
    i, j = readme.find(begin), readme.find(end)
    res.check(i >= 0 and j > i and readme[i + len(begin):j] == src,
              "the README's near cache example is server/near/example.c")
    p = subprocess.Popen([EXAMPLE, "127.0.0.1", str(port)],
                         stdout=subprocess.PIPE, env=harness.sanitizer_env())
    try:
        first = p.stdout.readline()
        res.eq(first, b"user:42 = row of user:42\n",
               "the example reads through its near cache")
        with harness.Client(port) as c:
            res.eq(c.request(b"invalidate_tag users\r\n"),
                   b"INVALIDATED\r\n", "invalidate_tag users on the server")
        res.eq(p.stdout.readline(), b"user:42 is gone from the local cache\n",
               "the example's local copy goes")
        res.eq(p.wait(30 * harness.SLOW), 0, "the example exits 0")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def t_fleet(res, port, tmpdir):
    procs = [Proc(port, "F%d" % i) for i in range(4)]
    try:
        for p in procs:
            res.eq(p.cmd("wait"), "synced", "%s is live" % p.name)
        for rnd, delay in enumerate(("300", "20")):
            log = os.path.join(tmpdir, "fleet-loads-%d" % rnd)
            key = "fleet:cold:%d" % rnd
            for p in procs:   # all at once: send first, read after
                p.p.stdin.write(("fleet %s %s %s 4\n" % (key, log, delay))
                                .encode())
                p.p.stdin.flush()
            got = [p.p.stdout.readline().decode().rstrip("\n")
                   for p in procs]
            with open(log) as f:
                loads = f.read().splitlines()
            res.eq(len(loads), 1, "round %d: one backend call for 4 "
                   "processes x 4 threads (%r)" % (rnd, loads))
            winner = "v" + loads[0].split()[1] if loads else "?"
            res.eq(got, ["hit " + winner] * 4,
                   "round %d: every thread of every process got the "
                   "winner's value" % rnd)
        stats = [dict(kv.split("=") for kv in p.cmd("fleetstats").split())
                 for p in procs]
        total = {k: sum(int(s[k]) for s in stats) for k in stats[0]}
        res.eq(total["loads"], 2, "fleet stats: 2 loads in all")
        res.eq(total["server_hits"], 6, "fleet stats: 6 server hits")
        res.eq(total["fallbacks"] + total["timeouts"], 0,
               "no fallback, no timeout")
    finally:
        for p in procs:
            res.eq(p.close(), 0, "%s exits 0" % p.name)


def fail_then_load(res, procs, key, log, what, check_stub=False):
    """procs[0] wins KEY and its backend fails; procs[1] must then win
    and load at once (LOG lists the backend's loads)."""
    res.eq(procs[0].cmd("fleet %s %s 0 1 fail" % (key, log)), "error",
           "%s: the backend's error reaches the caller" % what)
    if check_stub:
        res.eq(procs[0].cmd("send mg %s v" % key), "EN",
               "%s: the lease was given back (no stub left)" % what)
    got = procs[1].cmd("fleet %s %s 0 1" % (key, log))
    with open(log) as f:
        loads = f.read().splitlines()
    res.eq(len(loads), 2, "%s: the next process loads (%r)" % (what, loads))
    res.eq(got, "hit v" + (loads[-1].split()[1] if loads else "?"),
           "%s: and gets its own value" % what)


def t_fleet_failure(res, port, tmpdir):
    """A lease winner whose backend fails gives the lease back at once (it
    deletes the empty stub it holds): no stub is left on the server, and
    another process's fetch wins and loads without waiting for the stub
    to expire."""
    procs = [Proc(port, "G%d" % i) for i in range(2)]
    try:
        for p in procs:
            res.eq(p.cmd("wait"), "synced", "%s is live" % p.name)
        fail_then_load(res, procs, "fleet:failing",
                       os.path.join(tmpdir, "fleet-failure"),
                       "fleet failure", check_stub=True)
    finally:
        for p in procs:
            res.eq(p.close(), 0, "%s exits 0" % p.name)


def t_fleet_stale_failure(res, port, tmpdir):
    """A winner over a stale value whose backend fails gives the win back
    too (md I: still stale, a new win for the next caller), so the next
    process refreshes instead of being served the stale value until it
    expires."""
    procs = [Proc(port, "S%d" % i) for i in range(2)]
    try:
        for p in procs:
            res.eq(p.cmd("wait"), "synced", "%s is live" % p.name)
        log = os.path.join(tmpdir, "fleet-stale")
        key = "fleet:stale"
        with harness.Client(port) as c:
            res.eq(c.request(b"ms %s 2 T0\r\nv0\r\n" % key.encode()),
                   b"HD\r\n", "fleet stale: stored")
            res.eq(c.request(b"md %s I\r\n" % key.encode()), b"HD\r\n",
                   "fleet stale: marked stale")
        fail_then_load(res, procs, key, log, "fleet stale")
    finally:
        for p in procs:
            res.eq(p.close(), 0, "%s exits 0" % p.name)


def main():
    res = harness.Results("near")
    harness.overall_deadline(200)
    srv_box = [harness.corrald(["-t", "2"])]
    a = Proc(srv_box[0].port, "A")
    b = Proc(srv_box[0].port, "B")
    try:
        res.run(t_coherence, a, b)
        res.run(t_tags_prefix_flush, a, b)
        res.run(t_delayed_flush, a, srv_box[0].port)
        res.run(t_readme_example, srv_box[0].port)
        with tempfile.TemporaryDirectory() as tmpdir:
            res.run(t_fleet, srv_box[0].port, tmpdir)
            res.run(t_fleet_failure, srv_box[0].port, tmpdir)
            res.run(t_fleet_stale_failure, srv_box[0].port, tmpdir)
        res.run(t_outage, a, b, srv_box)
        res.run(t_stopped_server)
    finally:
        res.eq(a.close(), 0, "process A exits 0")
        res.eq(b.close(), 0, "process B exits 0")
        res.eq(srv_box[0].stop(), 0, "corrald exits 0")
        srv_box[0].close()
    res.finish()


if __name__ == "__main__":
    main()
