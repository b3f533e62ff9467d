#!/usr/bin/env python3
"""test_peers.py - corrald nodes linked with --peer: three nodes in a full
mesh (every node given the same list, itself included), then the same
three behind twemproxy (nutcracker) with keys spread by the proxy.

  - a tag, a prefix, a key's delete or overwrite and a flush on any node
    reach every node and every node's watchers, once each, from the node
    that caused them: nothing loops, nothing arrives twice;
  - a node restarted (killed, then started again) makes its peers flush,
    since they cannot know what its last moments sent; links come back;
  - a node that could not keep up (stopped while its peer's history
    moved on) is told "gap" when it comes back, and flushes;
  - a peer whose process stops is noticed by the link's silence;
  - a link resuming past more of other nodes' events than the history
    holds is not told "gap" (it is not sent those), only when the node's
    own were lost;
  - a delayed flush_all pending on a node reaches a peer that links to
    it later (the sync line), and survives the flushes for new links;
  - behind twemproxy, items spread by the proxy with tags in their keys
    (--key-tags): a tag invalidated through any node misses everywhere.

Waits poll for a condition under a deadline; nothing asserts a timing.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Client  # noqa: E402
from test_invalidation import Watcher  # noqa: E402

NUTCRACKER = shutil.which("nutcracker") or "/usr/sbin/nutcracker"


def inv_stats(port):
    with Client(port) as c:
        c.send(b"stats invalidations\r\n")
        r = c.read_until(b"END\r\n")
    return dict((m.group(1).decode(), m.group(2).decode())
                for m in re.finditer(rb"STAT (\S+) (\S+)\r\n", r))


def wait_for(cond, what, timeout=15.0):
    end = time.time() + timeout * harness.SLOW
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def get(port, key):
    with Client(port) as c:
        c.send(b"get " + key + b"\r\n")
        return c.read_value_reply()


def hit(port, key):
    return get(port, key).startswith(b"VALUE ")


def request(port, data):
    with Client(port) as c:
        return c.request(data)


class Cluster:
    """Three corrald nodes, each given the whole list (itself included:
    its own link notices and closes).  Node 2 takes the list from the
    environment, the others from --peer flags."""

    def __init__(self, n=3, extra=()):
        self.ports = [harness.free_port() for _ in range(n)]
        self.extra = list(extra)
        self.nodes = [None] * n
        for i in range(n):
            self.start(i)

    def peer_list(self):
        return ["127.0.0.1:%d" % p for p in self.ports]

    def start(self, i):
        args = ["-t", "2"] + self.extra
        env = harness.sanitizer_env()
        if i == 2:
            env["CORRAL_PEERS"] = ",".join(self.peer_list())
        else:
            for p in self.peer_list():
                args += ["--peer", p]
        self.nodes[i] = harness.corrald(args, port=self.ports[i], env=env)

    def wait_links(self):
        for p in self.ports:
            wait_for(lambda: inv_stats(p).get("peers_up") ==
                     str(len(self.ports) - 1), "links up on %d" % p)

    def node_ids(self):
        return [inv_stats(p)["node_id"].encode() for p in self.ports]

    def close(self):
        rcs = []
        for n in self.nodes:
            if n is not None:
                rcs.append(n.stop())
                err = n.stderr_text()
                if ("ERROR: AddressSanitizer" in err or
                        "WARNING: ThreadSanitizer" in err):
                    rcs.append("sanitizer: " + err[-2000:])
                n.close()
        return rcs


def next_seqs(cl):
    return [int(inv_stats(p)["watch_next_seq"]) for p in cl.ports]


def settle(cl, base, want, what):
    """Wait until every node recorded `want` events since `base`, then
    check that no more come (a loop would keep adding)."""
    wait_for(lambda: [s - b for s, b in zip(next_seqs(cl), base)] ==
             [want] * len(base), what)
    time.sleep(0.3 * harness.SLOW)
    return [s - b for s, b in zip(next_seqs(cl), base)]


def t_mesh(res, cl):
    a, b, c = cl.ports
    ids = cl.node_ids()
    st = inv_stats(a)
    res.eq(st.get("peers"), "3", "three peers configured (itself too)")
    res.eq(sum(1 for k, v in st.items() if k.endswith(":state") and
               v == "self"), 1, "the link to itself closed as 'self'")
    res.eq(st.get("peers_up"), "2", "two links up")
    watchers = [Watcher(p) for p in cl.ports]

    # tags: stored on each node, invalidated from each node in turn
    for i, origin in enumerate(cl.ports):
        tag = b"grp%d" % i
        for p in cl.ports:
            res.eq(request(p, b"tset item:%d:%d 0 0 1 %s\r\nx\r\n" %
                           (i, p, tag)), b"STORED\r\n", "tagged store")
            request(p, b"set plain:%d:%d 0 0 1\r\nx\r\n" % (i, p))
        base = next_seqs(cl)
        res.eq(request(origin, b"invalidate_tag " + tag + b"\r\n"),
               b"INVALIDATED\r\n", "invalidate_tag on node %d" % i)
        res.eq(settle(cl, base, 1, "the tag event everywhere"), [1, 1, 1],
               "node %d's tag: one event on every node, no more" % i)
        res.check(all(not hit(p, b"item:%d:%d" % (i, p))
                      for p in cl.ports),
                  "node %d's tag misses on every node" % i)
        res.check(all(hit(p, b"plain:%d:%d" % (i, p)) for p in cl.ports),
                  "untagged items still hit")
        for j, w in enumerate(watchers):
            ln = w.line()
            res.check(ln.get("type") == b"tag" and ln.get("tag") == tag and
                      ln.get("origin") == ids[i],
                      "node %d's watcher hears node %d's tag, origin %s" %
                      (j, i, ids[i].decode()), repr(ln))

    # a key overwritten on one node is deleted on the others
    for p in cl.ports:
        request(p, b"set shared 0 0 3\r\nold\r\n")
    base = next_seqs(cl)
    request(a, b"set shared 0 0 3\r\nnew\r\n")
    res.eq(settle(cl, base, 1, "the overwrite everywhere"), [1, 1, 1],
           "an overwrite: one event per node")
    res.eq(get(a, b"shared"), b"VALUE shared 0 3\r\nnew\r\nEND\r\n",
           "the writer keeps its new value")
    res.check(not hit(b, b"shared") and not hit(c, b"shared"),
              "the other nodes' copies are gone")
    for w in watchers:
        ln = w.line()
        res.check(ln.get("type") in (b"overwrite", b"delete") and
                  ln.get("key") == b"shared" and ln.get("origin") == ids[0],
                  "watchers hear the overwrite", repr(ln))

    # a delete, a prefix and a flush, each from another node
    for p in cl.ports:
        request(p, b"set doomed 0 0 1\r\nx\r\n")
    base = next_seqs(cl)
    request(b, b"set doomed 0 0 1\r\ny\r\n")
    request(b, b"delete doomed\r\n")
    # Events of different nodes travel different links: only events of
    # one origin keep their order.  Let B's reach everyone before C's.
    res.eq(settle(cl, base, 2, "B's events everywhere"), [2, 2, 2],
           "overwrite and delete: two events per node")
    for p in cl.ports:
        request(p, b"set pre:fix:%d 0 0 1\r\nx\r\n" % p)
    request(c, b"invalidate_prefix pre:fix\r\n")
    res.eq(settle(cl, base, 3, "delete and prefix everywhere"), [3, 3, 3],
           "overwrite, delete, prefix: three events per node")
    res.check(not any(hit(p, b"doomed") for p in cl.ports),
              "a deleted key is gone everywhere")
    res.check(not any(hit(p, b"pre:fix:%d" % p) for p in cl.ports),
              "a prefix is invalidated everywhere")
    base = next_seqs(cl)
    request(b, b"flush_all\r\n")
    res.eq(settle(cl, base, 1, "the flush everywhere"), [1, 1, 1],
           "a flush: one event per node")
    res.check(not any(hit(p, b"plain:0:%d" % p) for p in cl.ports),
              "a flush empties every node")
    for j, w in enumerate(watchers):
        kinds = [w.line().get("type") for _ in range(4)]
        # a key overwritten on B is deleted on the others
        first = b"overwrite" if cl.ports[j] == b else b"delete"
        res.eq(kinds, [first, b"delete", b"prefix", b"flush"],
               "node %d's watcher hears them in order" % j)
        res.eq(w.quiet(), [], "and nothing twice")
        w.close()

    # the counters: what each node applied came from the others
    applied = [int(inv_stats(p)["peer_events_applied"]) for p in cl.ports]
    res.check(all(x > 0 for x in applied), "every node applied events",
              repr(applied))


def t_restart(res, cl):
    a, b, c = cl.ports
    old_c = cl.node_ids()[2]
    flushes = [int(inv_stats(p)["peer_flushes"]) for p in (a, b)]
    for p in (a, b):
        request(p, b"set survivor 0 0 1\r\nx\r\n")
    cl.nodes[2].signal(signal.SIGKILL)
    cl.nodes[2].wait()
    cl.nodes[2].close()
    wait_for(lambda: inv_stats(a).get("peers_up") == "1", "A sees C down")
    request(a, b"tset gone:a 0 0 1 during\r\nx\r\n")
    request(a, b"invalidate_tag during\r\n")
    res.check(not hit(a, b"gone:a"), "an invalidation while C is down")
    cl.start(2)
    cl.wait_links()
    res.check(cl.node_ids()[2] != old_c, "the restarted node has a new id")
    wait_for(lambda: [int(inv_stats(p)["peer_flushes"]) for p in (a, b)] !=
             flushes and all(int(inv_stats(p)["peer_flushes"]) > f
                             for p, f in zip((a, b), flushes)),
             "A and B flush")
    res.check(not hit(a, b"survivor") and not hit(b, b"survivor"),
              "a killed peer's restart flushes the nodes linked to it")
    res.eq(inv_stats(c)["peer_flushes"], "2",
           "the restarted node flushes once per link it had no history "
           "with")
    # and the links work both ways again
    for p in cl.ports:
        request(p, b"tset back:%d 0 0 1 after\r\nx\r\n" % p)
    request(c, b"invalidate_tag after\r\n")
    wait_for(lambda: not any(hit(p, b"back:%d" % p) for p in cl.ports),
             "the restarted node's tag everywhere")
    res.check(True, "the restarted node's invalidations reach the others")
    for p in cl.ports:
        request(p, b"tset back2:%d 0 0 1 after2\r\nx\r\n" % p)
    request(a, b"invalidate_tag after2\r\n")
    wait_for(lambda: not any(hit(p, b"back2:%d" % p) for p in cl.ports),
             "A's tag on the restarted node")
    res.check(True, "and the others' reach it")


def t_resume_past_relayed(res):
    """A peer resuming its origin=local stream is not told "gap" because
    the history lost other nodes' events, which it is not sent anyway;
    it is when the history lost one of the node's own."""
    b = harness.corrald(["-t", "2"])
    a = harness.corrald(["-t", "2", "--watch-history", "16",
                         "--peer", "127.0.0.1:%d" % b.port])
    try:
        wait_for(lambda: inv_stats(a.port).get("peers_up") == "1",
                 "A's link to B")
        w = Watcher(a.port, b"origin=local")
        node = w.sync["node"]
        request(a.port, b"invalidate_tag mine1\r\n")
        since = int(w.line()["seq"]) + 1
        w.close()
        base = int(inv_stats(a.port)["watch_next_seq"])
        with Client(b.port) as c:
            c.sock.sendall(b"".join(b"invalidate_tag b%d noreply\r\n" % i
                                    for i in range(40)) + b"mn\r\n")
            res.eq(c.read_line(), b"MN\r\n", "40 invalidations on B")
        wait_for(lambda: int(inv_stats(a.port)["watch_next_seq"]) >=
                 base + 40, "A records B's 40 events")
        request(a.port, b"invalidate_tag mine2\r\n")
        r = Watcher(a.port, b"origin=local since=%d node=%s" % (since, node))
        ln = r.line()
        res.eq((ln.get("type"), ln.get("tag")), (b"tag", b"mine2"),
               "resumed past 40 relayed events (history 16): no gap, the "
               "node's next own event")
        r.close()
        r = Watcher(a.port, b"since=%d node=%s" % (since, node))
        res.eq(r.line().get("type"), b"gap",
               "a watcher of every origin is told gap")
        r.close()
        with Client(a.port) as c:
            c.sock.sendall(b"".join(b"invalidate_tag a%d noreply\r\n" % i
                                    for i in range(20)) + b"mn\r\n")
            res.eq(c.read_line(), b"MN\r\n", "20 invalidations on A")
        r = Watcher(a.port, b"origin=local since=%d node=%s" % (since, node))
        res.eq(r.line().get("type"), b"gap",
               "once the history lost one of the node's own events: gap")
        r.close()
    finally:
        res.eq([a.stop(), b.stop()], [0, 0], "the nodes exit 0")
        a.close()
        b.close()


def t_silent_peer(res):
    """A peer whose process stops (SIGSTOP: its kernel still answers TCP
    keepalives) is noticed by the link's silence, and linked again once
    it runs."""
    cl = Cluster(n=2)
    try:
        cl.wait_links()
        a, b = cl.ports
        cl.nodes[1].signal(signal.SIGSTOP)
        try:
            wait_for(lambda: inv_stats(a).get("peers_up") == "0",
                     "A to notice", timeout=20)
            res.check(True, "a stopped peer's link goes down")
        finally:
            cl.nodes[1].signal(signal.SIGCONT)
        cl.wait_links()
        request(a, b"tset s:a 0 0 1 silent\r\nx\r\n")
        request(b, b"tset s:b 0 0 1 silent\r\nx\r\n")
        request(b, b"invalidate_tag silent\r\n")
        wait_for(lambda: not hit(a, b"s:a"), "B's tag on A")
        res.check(True, "and comes back once it runs")
    finally:
        rcs = cl.close()
        res.eq(rcs, [0, 0], "the nodes exit 0")


def t_delayed_flush(res):
    """A delayed flush_all survives the peers' safety flushes: B restarts
    while A's flush is pending; B learns it from A's sync line, and A's
    own flush for its first link to the new B keeps it pending (it used
    to cancel it, as an immediate flush_all does)."""
    cl = Cluster(n=2)
    try:
        cl.wait_links()
        a, b = cl.ports
        cl.nodes[1].signal(signal.SIGKILL)
        cl.nodes[1].wait()
        cl.nodes[1].close()
        wait_for(lambda: inv_stats(a).get("peers_up") == "0", "A sees B down")
        delay = int(8 * harness.SLOW)
        due = time.time() + delay
        res.eq(request(a, b"flush_all %d\r\n" % delay), b"OK\r\n",
               "a delayed flush_all on A while B is down")
        flushes = int(inv_stats(a)["peer_flushes"])
        cl.start(1)
        cl.wait_links()
        wait_for(lambda: int(inv_stats(a)["peer_flushes"]) > flushes and
                 int(inv_stats(b)["peer_flushes"]) > 0,
                 "both nodes flush for the new link")
        for p in (a, b):
            request(p, b"set before:%d 0 0 1\r\nx\r\n" % p)
        res.check(time.time() < due - 2,
                  "the items were stored before the flush time")
        res.check(hit(a, b"before:%d" % a) and hit(b, b"before:%d" % b),
                  "both items are live until then")
        wait_for(lambda: not hit(a, b"before:%d" % a),
                 "A's delayed flush", timeout=delay + 15)
        res.check(True, "A's pending flush outlived its link flush")
        wait_for(lambda: not hit(b, b"before:%d" % b),
                 "A's delayed flush on B", timeout=15)
        res.check(True, "B scheduled A's pending flush from the sync line")
        # an item stored in the flush's last second goes too (memcached)
        time.sleep(max(0.0, due + 1 - time.time()))
        for p in (a, b):
            request(p, b"set after:%d 0 0 1\r\nx\r\n" % p)
        res.check(hit(a, b"after:%d" % a) and hit(b, b"after:%d" % b),
                  "items stored after the flush time stay")
    finally:
        rcs = cl.close()
        res.eq(rcs, [0, 0], "the nodes exit 0")


def t_unreachable(res):
    """C stops (SIGSTOP) while A invalidates far more than A's history
    holds: A drops C's link as lagged; when C resumes it is told "gap"
    and flushes."""
    cl = Cluster(extra=["--watch-history", "1000"])
    try:
        cl.wait_links()
        a, b, c = cl.ports
        request(c, b"set keep:c 0 0 1\r\nx\r\n")
        request(c, b"tset tagged:c 0 0 1 late\r\nx\r\n")
        before = int(inv_stats(c)["peer_flushes"])
        cl.nodes[2].signal(signal.SIGSTOP)
        try:
            with Client(a) as cli:
                blob = b"".join(b"invalidate_tag burst%d noreply\r\n" % i
                                for i in range(40000))
                cli.sock.sendall(blob + b"invalidate_tag late\r\nmn\r\n")
                res.eq(cli.read_line() + cli.read_line(),
                       b"INVALIDATED\r\nMN\r\n", "40,001 invalidations on A")
            wait_for(lambda: int(inv_stats(a).get("watchers_lagged", "0"))
                     >= 1, "A drops the stopped node's link")
            res.check(True, "A dropped the link of the node that stopped "
                            "reading")
        finally:
            cl.nodes[2].signal(signal.SIGCONT)
        wait_for(lambda: int(inv_stats(c)["peer_flushes"]) > before,
                 "C flushes")
        res.check(True, "the node that fell behind is told to flush")
        res.check(not hit(c, b"keep:c"),
                  "its items are gone, not left stale")
        res.check(not hit(c, b"tagged:c"), "including the invalidated one")
        cl.wait_links()
        request(c, b"tset again:c 0 0 1 again\r\nx\r\n")
        request(a, b"invalidate_tag again\r\n")
        wait_for(lambda: not hit(c, b"again:c"), "C back in the mesh")
        res.check(True, "its link works again")
    finally:
        rcs = cl.close()
        res.eq(rcs, [0, 0, 0], "the nodes exit 0")


def nutcracker_conf(path, listen_port, stats_port, ports):
    with open(path, "w") as f:
        f.write("corral:\n"
                "  listen: 127.0.0.1:%d\n"
                "  hash: fnv1a_64\n"
                "  distribution: ketama\n"
                "  auto_eject_hosts: false\n"
                "  timeout: 5000\n"
                "  servers:\n" % listen_port)
        for i, p in enumerate(ports):
            f.write("   - 127.0.0.1:%d:1 node%d\n" % (p, i))


def t_twemproxy(res):
    if not os.access(NUTCRACKER, os.X_OK):
        res.check(False, "nutcracker is installed (scripts/deps.sh)")
        return
    cl = Cluster(extra=["--key-tags", "#"])
    tmp = tempfile.mkdtemp(prefix="corral-nc-")
    proxy = None
    try:
        cl.wait_links()
        pport, sport = harness.free_port(), harness.free_port()
        conf = os.path.join(tmp, "nutcracker.yml")
        nutcracker_conf(conf, pport, sport, cl.ports)
        proxy = harness.Server([NUTCRACKER, "-c", conf, "-s", str(sport),
                                "-a", "127.0.0.1",
                                "-o", os.path.join(tmp, "nc.log")],
                               pport, name="nutcracker").start()
        n = 300
        keys = [b"obj:%d#grp%d" % (i, i % 3) for i in range(n)]
        with Client(pport) as c:
            stored = [c.request(b"set " + k + b" 0 0 2\r\nok\r\n")
                      for k in keys]
        res.check(all(r == b"STORED\r\n" for r in stored),
                  "%d sets through the proxy" % n)
        counts = []
        for p in cl.ports:
            with Client(p) as c:
                c.send(b"stats\r\n")
                r = c.read_until(b"END\r\n")
            counts.append(int(re.search(rb"STAT curr_items (\d+)",
                                        r).group(1)))
        res.eq(sum(counts), n, "every key stored once across the nodes")
        res.check(all(x > 0 for x in counts),
                  "the proxy spread the keys over all three nodes",
                  repr(counts))

        def hits_via_proxy(group):
            with Client(pport) as c:
                out = []
                for k in keys:
                    if k.endswith(b"#grp%d" % group):
                        c.send(b"get " + k + b"\r\n")
                        out.append(c.read_value_reply().startswith(b"VALUE"))
                return out

        res.check(all(all(hits_via_proxy(g)) for g in range(3)),
                  "every key reads back through the proxy")
        for g, via in ((0, 1), (1, 2), (2, 0)):
            request(cl.ports[via], b"invalidate_tag grp%d\r\n" % g)
            wait_for(lambda: not any(hits_via_proxy(g)),
                     "grp%d missing through the proxy" % g)
            res.check(True, "tag grp%d invalidated through node %d misses "
                            "on every node" % (g, via))
            for other in range(g + 1, 3):
                res.check(all(hits_via_proxy(other)),
                          "grp%d still hits" % other)
        # stores through the proxy after the invalidation are live
        with Client(pport) as c:
            for k in keys[:30]:
                c.request(b"set " + k + b" 0 0 2\r\nok\r\n")
        with Client(pport) as c:
            ok = []
            for k in keys[:30]:
                c.send(b"get " + k + b"\r\n")
                ok.append(c.read_value_reply().startswith(b"VALUE"))
        res.check(all(ok), "keys stored again afterwards hit")
    finally:
        if proxy is not None:
            proxy.close()
        shutil.rmtree(tmp, ignore_errors=True)
        rcs = cl.close()
        res.eq(rcs, [0, 0, 0], "the nodes exit 0")


def main():
    res = harness.Results("peers")
    harness.overall_deadline(400)
    cl = Cluster()
    try:
        cl.wait_links()
        res.run(t_mesh, cl)
        res.run(t_restart, cl)
    finally:
        rcs = cl.close()
        res.eq(rcs, [0, 0, 0], "the three nodes exit 0")
    res.run(t_unreachable)
    res.run(t_resume_past_relayed)
    res.run(t_silent_peer)
    res.run(t_delayed_flush)
    res.run(t_twemproxy)
    res.finish()


if __name__ == "__main__":
    main()
