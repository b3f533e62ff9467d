#!/usr/bin/env python3
"""test_invalidation.py - Corral's protocol extensions on one corrald:
tagged stores (tset tadd treplace tcas, ms G, key tags), invalidate_tag
and invalidate_prefix, and "watch invalidations": the stream's lines,
filters, since= replay and gaps, dropping a watcher that falls behind,
the last line on shutdown, "stats invalidations".  The same extension
bytes are also sent to a real memcached, which must refuse them without
losing its place in the stream.
"""

import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Client  # noqa: E402


class Watcher:
    """A connection that sent "watch invalidations ..." and reads lines."""

    def __init__(self, port, args=b"", rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10 * harness.SLOW)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.sock.sendall(b"watch invalidations" +
                          (b" " + args if args else b"") + b"\r\n")
        self.first = self._raw_line()
        self.sync = None
        if self.first == b"OK\r\n":
            self.sync = self.line()

    def _fill(self):
        d = self.sock.recv(1 << 20)
        if not d:
            raise EOFError("watcher closed; buffered %r" % self.buf[:200])
        self.buf += d

    def _raw_line(self):
        while b"\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\n") + 1
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def line(self):
        """The next stream line as a dict (values as bytes)."""
        raw = self._raw_line()
        return parse_line(raw)

    def lines_until(self, pred, limit=100000):
        out = []
        while len(out) < limit:
            ln = self.line()
            out.append(ln)
            if pred(ln):
                return out
        raise AssertionError("no matching line in %d" % limit)

    def quiet(self, wait=0.3):
        """Lines arriving within `wait` seconds (normally none)."""
        self.sock.settimeout(wait * harness.SLOW)
        got = []
        try:
            while True:
                while b"\n" in self.buf:
                    got.append(self.line())
                self._fill()
        except (socket.timeout, EOFError):
            pass
        self.sock.settimeout(10 * harness.SLOW)
        return got

    def eof(self, timeout=10):
        self.sock.settimeout(timeout * harness.SLOW)
        try:
            while True:
                d = self.sock.recv(1 << 20)
                if not d:
                    return True
                self.buf += d
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


def parse_line(raw):
    assert raw.endswith(b"\n") and not raw.endswith(b"\r\n"), raw
    d = {}
    for tok in raw[:-1].split(b" "):
        k, _, v = tok.partition(b"=")
        d[k.decode()] = v
    d["_raw"] = raw
    return d


def uri(b):
    return b"".join(bytes([c]) if (chr(c).isalnum() and c < 128) or
                    c in b"-._~" else b"%%%02X" % c for c in b)


def get(c, key):
    c.send(b"get " + key + b"\r\n")
    return c.read_value_reply()


def hit(c, key):
    return get(c, key).startswith(b"VALUE ")


def inv_stats(port):
    with Client(port) as c:
        c.send(b"stats invalidations\r\n")
        r = c.read_until(b"END\r\n")
    return dict((m.group(1).decode(), m.group(2).decode())
                for m in re.finditer(rb"STAT (\S+) (\S+)\r\n", r))


# ---------------------------------------------------------------------------


def t_tagged_stores(res, port):
    with Client(port) as c:
        res.eq(c.request(b"tset ts:1 5 0 3 t:a,t:b\r\none\r\n"),
               b"STORED\r\n", "tset")
        res.eq(c.request(b"tadd ts:2 0 0 3 t:a\r\ntwo\r\n"), b"STORED\r\n",
               "tadd")
        res.eq(c.request(b"tadd ts:2 0 0 3 t:a\r\ntwo\r\n"),
               b"NOT_STORED\r\n", "tadd existing")
        res.eq(c.request(b"treplace ts:3 0 0 1 t:b\r\nx\r\n"),
               b"NOT_STORED\r\n", "treplace missing")
        res.eq(c.request(b"set ts:3 0 0 1\r\nx\r\n"), b"STORED\r\n", "set")
        res.eq(c.request(b"treplace ts:3 0 0 5 t:b\r\nthree\r\n"),
               b"STORED\r\n", "treplace")
        c.send(b"gets ts:3\r\n")
        cas = int(c.read_value_reply().split(b"\r\n")[0].split()[4])
        res.eq(c.request(b"tcas ts:3 0 0 1 %d t:c\r\nz\r\n" % (cas + 1)),
               b"EXISTS\r\n", "tcas stale")
        res.eq(c.request(b"tcas ts:3 0 0 5 %d t:b\r\nthree\r\n" % cas),
               b"STORED\r\n", "tcas")
        res.eq(c.request(b"ms ts:4 4 Gt:a,t:c T0\r\nfour\r\n"), b"HD\r\n",
               "ms G")
        res.eq(c.request(b"set ts:5 0 0 4\r\nfive\r\n"), b"STORED\r\n",
               "untagged")
        c.send(b"get ts:1\r\n")
        res.eq(c.read_value_reply(), b"VALUE ts:1 5 3\r\none\r\nEND\r\n",
               "a tagged item reads as any other")
        # append keeps the tags the item was stored with
        res.eq(c.request(b"append ts:2 0 0 1\r\n!\r\n"), b"STORED\r\n",
               "append")

        res.eq(c.request(b"invalidate_tag t:a\r\n"), b"INVALIDATED\r\n",
               "invalidate_tag")
        res.check(not hit(c, b"ts:1") and not hit(c, b"ts:2") and
                  not hit(c, b"ts:4"), "every item tagged t:a misses")
        res.check(hit(c, b"ts:3") and hit(c, b"ts:5"),
                  "items without the tag still hit")
        res.eq(c.request(b"tset ts:1 0 0 3 t:a\r\nnew\r\n"), b"STORED\r\n",
               "store with the tag again")
        res.check(hit(c, b"ts:1"),
                  "an item stored after the invalidation is live")
        c.send(b"invalidate_tag t:b noreply\r\nmn\r\n")
        res.eq(c.read_line(), b"MN\r\n", "noreply invalidate_tag is silent")
        res.check(not hit(c, b"ts:3"), "t:b invalidated")
        res.eq(c.request(b"invalidate_tag never-used\r\n"),
               b"INVALIDATED\r\n", "an unknown tag is fine")

        # errors, and the stream stays in step
        c.send(b"tset ts:6 0 0 1 a,,b\r\nx\r\nmn\r\n")
        res.eq(c.read_line() + c.read_line(),
               b"CLIENT_ERROR bad tags\r\nMN\r\n",
               "a bad tag list is refused and its value swallowed")
        c.send(b"tset ts:6 0 0 1 a,b,c,d,e,f,g,h,i\r\nx\r\nmn\r\n")
        res.eq(c.read_line() + c.read_line(),
               b"CLIENT_ERROR bad tags\r\nMN\r\n", "nine tags refused")
        c.send(b"ms ts:6 1 G\r\nx\r\nmn\r\n")
        res.eq(c.read_line() + c.read_line(),
               b"CLIENT_ERROR bad tags\r\nMN\r\n", "ms with an empty G")
        res.eq(c.request(b"invalidate_tag a,b\r\n"),
               b"CLIENT_ERROR bad command line format\r\n",
               "invalidate_tag takes one tag")
        res.eq(c.request(b"invalidate_tag\r\n"), b"ERROR\r\n",
               "invalidate_tag without a tag")


def t_prefix(res, port):
    with Client(port) as c:
        for k in (b"pfx:a:1", b"pfx:a:2", b"pfx:b:1", b"pfx"):
            c.request(b"set " + k + b" 0 0 1\r\nx\r\n")
        res.eq(c.request(b"invalidate_prefix pfx:a:\r\n"), b"INVALIDATED\r\n",
               "invalidate_prefix")
        res.check(not hit(c, b"pfx:a:1") and not hit(c, b"pfx:a:2"),
                  "keys under the prefix miss")
        res.check(hit(c, b"pfx:b:1") and hit(c, b"pfx"),
                  "keys outside it hit")
        c.request(b"set pfx:a:1 0 0 1\r\ny\r\n")
        res.check(hit(c, b"pfx:a:1"), "a key stored afterwards is live")
        res.eq(c.request(b"invalidate_prefix pfx:b noreply\r\nmn\r\n"),
               b"MN\r\n", "noreply invalidate_prefix is silent")
        res.check(not hit(c, b"pfx:b:1"), "invalidated with noreply")
        res.eq(c.request(b"invalidate_prefix " + b"k" * 251 + b"\r\n"),
               b"CLIENT_ERROR bad command line format\r\n",
               "a prefix longer than a key")


def t_key_tags(res):
    with harness.corrald(["-t", "2", "--key-tags", "#"]) as srv:
        with Client(srv.port) as c:
            c.request(b"set page:1#user:7,site 0 0 1\r\na\r\n")
            c.request(b"set page:2#user:8 0 0 1\r\nb\r\n")
            c.request(b"set page:3 0 0 1\r\nc\r\n")
            c.request(b"ms page:4#site 1 T0\r\nd\r\n")
            res.check(hit(c, b"page:1#user:7,site"),
                      "a key naming tags is stored and read as given")
            c.request(b"invalidate_tag site\r\n")
            res.check(not hit(c, b"page:1#user:7,site") and
                      not hit(c, b"page:4#site"),
                      "key tags: the items naming the tag miss")
            res.check(hit(c, b"page:2#user:8") and hit(c, b"page:3"),
                      "key tags: the others hit")
            st = inv_stats(srv.port)
            res.eq(st.get("cmd_tagged_store"), "3", "tagged stores counted")
        res.eq(srv.stop(), 0, "exit 0")
    with harness.corrald(["-t", "1"]) as srv:
        with Client(srv.port) as c:
            c.request(b"set page:1#site 0 0 1\r\na\r\n")
            c.request(b"invalidate_tag site\r\n")
            res.check(hit(c, b"page:1#site"),
                      "without --key-tags a key's '#' is just a byte")
        srv.stop()


def t_memcached_refuses(res):
    """The extensions against memcached: errors, never a lost stream."""
    if not harness.have_memcached():
        res.check(False, "memcached is installed (needed for this check)")
        return
    with harness.memcached() as mc:
        with Client(mc.port) as c:
            c.send(b"ms k 1 Ga,b\r\nx\r\nmn\r\n")
            res.eq(c.read_line() + c.read_line(),
                   b"CLIENT_ERROR invalid flag\r\nMN\r\n",
                   "memcached refuses G and swallows the value")
            c.send(b"invalidate_tag a\r\nmn\r\n")
            res.eq(c.read_line() + c.read_line(), b"ERROR\r\nMN\r\n",
                   "memcached answers ERROR to invalidate_tag")
            c.send(b"watch invalidations\r\nmn\r\n")
            res.eq(c.read_line() + c.read_line(), b"ERROR\r\nMN\r\n",
                   "memcached answers ERROR to watch invalidations")


def t_watch_lines(res, port):
    node = None
    w = Watcher(port)
    res.eq(w.first, b"OK\r\n", "watch invalidations answers OK")
    res.eq(w.sync.get("type"), b"sync", "then a sync line")
    node = w.sync.get("node")
    res.check(node is not None and len(node) == 16, "the sync line's node id")
    start = int(w.sync["next"])
    with Client(port) as c:
        c.request(b"set wl:a%b 0 0 1\r\nx\r\n")          # new key: no event
        c.request(b"set wl:a%b 0 0 1\r\ny\r\n")          # overwrite
        c.request(b"delete wl:a%b\r\n")                  # delete
        c.request(b"delete wl:none\r\n")                 # absent: no event
        c.request(b"invalidate_tag t\xc3\xa9\r\n")
        c.request(b"invalidate_prefix wl:\r\n")
        c.request(b"set wl:s 0 0 1\r\nx\r\n")
        c.request(b"md wl:s I\r\n")                      # stale mark
        bkey = b"\x00bin key"
        import base64
        c.request(b"ms " + base64.b64encode(bkey) + b" 1 b\r\nx\r\n")
        c.request(b"md " + base64.b64encode(bkey) + b" b\r\n")
        c.request(b"flush_all\r\n")
    lines = [w.line() for _ in range(7)]
    types = [ln.get("type") for ln in lines]
    res.eq(types, [b"overwrite", b"delete", b"tag", b"prefix", b"stale",
                   b"delete", b"flush"],
           "one line per invalidation (none for new or absent keys)")
    seqs = [int(ln["seq"]) for ln in lines[:7]]
    res.eq(seqs, list(range(start, start + 7)), "seq grows by one per event")
    res.eq(lines[0].get("key"), b"wl%3Aa%25b", "keys are URI-encoded")
    res.check(int(lines[0].get("cas", b"0")) > 0, "overwrite carries a cas")
    res.eq(lines[2].get("tag"), b"t%C3%A9", "tags are URI-encoded")
    res.eq(lines[3].get("prefix"), b"wl%3A", "prefix line")
    res.eq(lines[5].get("key"), uri(bkey), "a binary key, decoded, encoded")
    res.eq(lines[6].get("at"), b"0", "flush at=0: now")
    res.check(all(ln.get("origin") == node for ln in lines[:7]),
              "local events carry this node's id")
    res.check(all(re.match(rb"^ts=\d+\.\d{6} ", ln["_raw"])
                  for ln in lines[:7]), "every line starts with ts=")
    res.eq(w.quiet(), [], "nothing else")
    w.close()


def t_sync_pending_flush(res, port):
    """The sync line names a delayed flush still to come, and only then."""
    w = Watcher(port)
    res.check("at" not in w.sync, "no pending flush: no at= in sync")
    w.close()
    with Client(port) as c:
        before = int(time.time())
        res.eq(c.request(b"flush_all 1000\r\n"), b"OK\r\n", "flush_all 1000")
        after = int(time.time())
        w = Watcher(port)
        at = int(w.sync.get("at", b"0"))
        # (the server's clock counts whole seconds of its own: +-1)
        res.check(before + 999 <= at <= after + 1001,
                  "a new watcher's sync line says when the flush comes",
                  w.sync["_raw"])
        w.close()
        res.eq(c.request(b"flush_all\r\n"), b"OK\r\n",
               "flush_all at once cancels it")
        w = Watcher(port)
        res.check("at" not in w.sync, "and the sync line says so",
                  w.sync["_raw"])
        w.close()


def t_heartbeat(res, port):
    """heartbeat=S: a ping line after S quiet seconds, saying where the
    stream is; none without it."""
    w = Watcher(port, b"heartbeat=1")
    start = w.sync["next"]
    ln = w.line()
    res.eq((ln.get("type"), ln.get("next")), (b"ping", start),
           "a quiet stream with heartbeat=1 pings, next= where it is")
    with Client(port) as c:
        c.request(b"invalidate_tag hb\r\n")
    ln = w.line()
    res.eq(ln.get("type"), b"tag", "events still come")
    ln = w.line()
    res.eq((ln.get("type"), int(ln.get("next", b"0"))),
           (b"ping", int(start) + 1), "the next ping says the new position")
    w.close()
    w = Watcher(port)
    res.eq(w.quiet(2.5), [], "no ping without heartbeat=")
    w.close()


def t_watch_filters(res, port):
    wp = Watcher(port, b"prefix=user%3A")
    wt = Watcher(port, b"tag=t1 tag=t2")
    wb = Watcher(port, b"prefix=zz tag=t2")
    wl = Watcher(port, b"origin=local")
    wa = Watcher(port)
    with Client(port) as c:
        for k in (b"user:1", b"other:1"):
            c.request(b"set " + k + b" 0 0 1\r\nx\r\n")
            c.request(b"set " + k + b" 0 0 1\r\ny\r\n")
        c.request(b"invalidate_tag t1\r\n")
        c.request(b"invalidate_tag t3\r\n")
        c.request(b"invalidate_prefix us\r\n")
        c.request(b"invalidate_prefix user:1:x\r\n")
        c.request(b"invalidate_prefix zzz\r\n")
        c.request(b"invalidate_prefix other\r\n")
        c.request(b"flush_all\r\n")

    def kinds(w):
        out = []
        for ln in w.lines_until(lambda x: x.get("type") == b"flush"):
            out.append((ln["type"], ln.get("key") or ln.get("tag") or
                        ln.get("prefix") or b""))
        return out

    res.eq(kinds(wp), [(b"overwrite", b"user%3A1"), (b"prefix", b"us"),
                       (b"prefix", b"user%3A1%3Ax"), (b"flush", b"")],
           "prefix filter: its keys, overlapping prefixes, flush")
    res.eq(kinds(wt), [(b"tag", b"t1"), (b"flush", b"")],
           "tag filter: its tags, flush")
    res.eq(kinds(wb), [(b"prefix", b"zzz"), (b"flush", b"")],
           "filters combine with or")
    everything = kinds(wa)
    res.eq(len(everything), 9, "no filter: every event")
    res.eq(kinds(wl), everything, "origin=local: every local event")
    for w in (wp, wt, wb, wl, wa):
        w.close()


def t_watch_since(res, port):
    w = Watcher(port)
    node = w.sync["node"]
    with Client(port) as c:
        for i in range(5):
            c.request(b"invalidate_tag since%d\r\n" % i)
    seqs = [int(w.line()["seq"]) for _ in range(5)]
    w.close()
    with Client(port) as c:
        for i in range(3):
            c.request(b"invalidate_tag after%d\r\n" % i)
    r = Watcher(port, b"since=%d node=%s" % (seqs[2], node))
    res.eq(r.sync.get("next"), b"%d" % seqs[2],
           "since: the sync line says where the replay starts")
    got = [r.line() for _ in range(6)]
    res.eq([int(ln["seq"]) for ln in got],
           list(range(seqs[2], seqs[2] + 6)),
           "since: what was missed is replayed, in order, once")
    res.eq(got[-1].get("tag"), b"after2", "then the stream goes on")
    res.eq(r.quiet(), [], "nothing more")
    r.close()
    # since without node is taken as this incarnation
    r = Watcher(port, b"since=%d" % seqs[4])
    res.eq(int(r.line()["seq"]), seqs[4], "since without node replays")
    r.close()
    # another node's id: this server cannot know what was missed
    r = Watcher(port, b"since=%d node=0123456789abcdef" % seqs[2])
    ln = r.line()
    res.eq(ln.get("type"), b"gap", "since with another node id: a gap")
    res.eq(ln.get("missed"), b"%d" % seqs[2], "gap: from the seq asked")
    res.eq(ln.get("next"), r.sync["next"], "gap: up to the sync point")
    r.close()
    # from the future
    r = Watcher(port, b"since=%d node=%s" % (10 ** 12, node))
    res.eq(r.line().get("type"), b"gap", "since past the end: a gap")
    r.close()
    # refused forms
    with Client(port) as c:
        res.eq(c.request(b"watch invalidations since=0\r\n"),
               b"CLIENT_ERROR bad watch filter\r\n", "since=0 refused")
        res.eq(c.request(b"watch invalidations fetchers\r\n"),
               b"CLIENT_ERROR invalidations cannot be watched with other "
               b"streams\r\n", "mixed streams refused")
        c.send(b"version\r\nwatch invalidations\r\n")
        c.read_line()
        res.eq(c.read_line(),
               b"ERROR cannot pipeline other commands before watch\r\n",
               "watch behind a queued reply is refused, as memcached does")
    with Client(port) as c:
        # as memcached's watch: requests after it are read and discarded
        c.send(b"watch invalidations\r\nversion\r\n")
        res.eq(c.read_line(), b"OK\r\n", "watch with a request behind it")
        while b"\n" not in c.buf:
            c._fill()
        res.check(b"type=sync" in c.buf.split(b"\n")[0] and
                  b"VERSION" not in c.buf,
                  "then the sync line, and no VERSION")


def t_history_gap(res):
    with harness.corrald(["-t", "1", "--watch-history", "16"]) as srv:
        w = Watcher(srv.port)
        node = w.sync["node"]
        first = int(w.sync["next"])
        w.close()
        with Client(srv.port) as c:
            for i in range(40):
                c.request(b"invalidate_tag h%d\r\n" % i)
        r = Watcher(srv.port, b"since=%d node=%s" % (first, node))
        ln = r.line()
        res.eq(ln.get("type"), b"gap",
               "since older than the history holds: a gap line")
        res.eq(int(ln["next"]), first + 40, "gap: next is the sync point")
        r.close()
        r = Watcher(srv.port, b"since=%d node=%s" % (first + 30, node))
        res.eq(int(r.line()["seq"]), first + 30,
               "what the history still holds is replayed")
        r.close()
        st = inv_stats(srv.port)
        res.eq(st.get("watch_history"), "16", "stats: history size")
        res.check(int(st.get("watch_gaps", "0")) >= 1, "stats: gaps counted")
        res.check(int(st.get("watch_replays", "0")) >= 1,
                  "stats: replays counted")
        res.eq(srv.stop(), 0, "exit 0")


def invalidate_many(res, port, prefix, n):
    """n tag invalidations (tags prefix0..), in one pipelined write."""
    with Client(port) as c:
        blob = b"".join(b"invalidate_tag %s%d noreply\r\n" % (prefix, i)
                        for i in range(n))
        c.sock.sendall(blob + b"mn\r\n")
        res.eq(c.read_line(), b"MN\r\n", "%d invalidations done" % n)


def t_lag_drop(res):
    args = ["-t", "2", "--watch-history", "200000", "--watch-lag", "2000"]
    with harness.corrald(args) as srv:
        slow = Watcher(srv.port, rcvbuf=4096)
        node = slow.sync["node"]
        first = int(slow.sync["next"])
        n = 60000
        invalidate_many(res, srv.port, b"lag", n)
        # the slow watcher now reads everything it was sent
        lines = slow.lines_until(lambda x: x.get("type") == b"lagged",
                                 limit=n + 10)
        last = lines[-1]
        seqs = [int(ln["seq"]) for ln in lines[:-1]]
        res.check(len(seqs) < n, "the watcher fell behind (%d of %d lines)"
                  % (len(seqs), n))
        res.eq(seqs, list(range(first, first + len(seqs))),
               "nothing was skipped before the drop")
        res.eq(int(last["next"]), first + len(seqs),
               "the last line says where it stopped")
        res.check(slow.eof(), "then the connection is closed")
        slow.close()
        st = inv_stats(srv.port)
        res.eq(st.get("watchers_lagged"), "1", "stats: one watcher dropped")
        res.eq(st.get("watchers"), "0", "stats: no watcher left")
        # it reconnects where it stopped and misses nothing
        again = Watcher(srv.port, b"since=%s node=%s" % (last["next"], node))
        got = again.lines_until(
            lambda x: x.get("tag") == b"lag%d" % (n - 1), limit=n + 10)
        res.eq([int(ln["seq"]) for ln in got],
               list(range(int(last["next"]), first + n)),
               "since=<next> replays the rest, once")
        again.close()
        res.eq(srv.stop(), 0, "exit 0")


def t_lag_drop_unread(res):
    """A watcher dropped for lagging that never reads again is closed once
    its client has read nothing for the closing grace (10 s): its last
    line waits behind output it will not read, and it held its slot for
    ever."""
    args = ["-t", "1", "--watch-history", "200000", "--watch-lag", "2000"]
    with harness.corrald(args) as srv:
        slow = Watcher(srv.port, rcvbuf=4096)
        invalidate_many(res, srv.port, b"unread", 60000)
        res.check(harness.wait_for(
            lambda: inv_stats(srv.port).get("watchers_lagged") == "1", 30),
            "unread: the watcher is dropped for lagging")
        res.check(harness.wait_for(
            lambda: inv_stats(srv.port).get("watchers") == "0", 30),
            "unread: and its connection closed although it never read")
        slow.close()
        res.eq(srv.stop(), 0, "unread: exit 0")


def t_shutdown_line(res):
    with harness.corrald(["-t", "2"]) as srv:
        w = Watcher(srv.port)
        with Client(srv.port) as c:
            c.request(b"invalidate_tag bye\r\n")
        ln = w.line()
        res.eq(ln.get("tag"), b"bye", "an event before shutdown")
        srv.signal(15)
        ln = w.line()
        res.eq(ln.get("type"), b"shutdown", "SIGTERM: a last shutdown line")
        res.eq(int(ln["next"]), int(w.sync["next"]) + 1,
               "shutdown: next follows the last event sent")
        res.check(w.eof(), "then the watcher is closed")
        res.eq(srv.wait(), 0, "exit 0")
        w.close()


def t_disabled(res):
    with harness.corrald(["-t", "1", "--watch-history", "0"]) as srv:
        with Client(srv.port) as c:
            res.eq(c.request(b"watch invalidations\r\n"),
                   b"CLIENT_ERROR watch commands not allowed\r\n",
                   "--watch-history 0: watch invalidations refused")
            res.eq(c.request(b"tset k 0 0 1 t\r\nx\r\n"), b"STORED\r\n",
                   "tags still work")
            res.eq(c.request(b"invalidate_tag t\r\n"), b"INVALIDATED\r\n",
                   "invalidation still works")
            res.check(not hit(c, b"k"), "and takes effect")
        res.eq(srv.stop(), 0, "exit 0")
    for args, what in (
            (["--watch-history", "0", "--peer", "127.0.0.1:1"],
             "--peer without a history"),
            (["--peer", "nohost"], "--peer without a port"),
            (["--peer", "h:0"], "--peer with port 0"),
            (["--key-tags", "ab"], "--key-tags with two characters"),
            (["--watch-history", "100", "--watch-lag", "200"],
             "--watch-lag above the history")):
        p = harness.corrald(args, wait=False)
        res.eq(p.wait(timeout=10), 64, what + " is a usage error")
        p.close()
    env = harness.sanitizer_env()
    env["CORRAL_PEERS"] = "127.0.0.1:1,bad"
    p = harness.corrald([], env=env, wait=False)
    res.eq(p.wait(timeout=10), 64, "a bad CORRAL_PEERS entry is a usage error")
    p.close()


def t_stats(res, port):
    st = inv_stats(port)
    for name in ("node_id", "cmd_invalidate_tag", "cmd_invalidate_prefix",
                 "cmd_tagged_store", "tag_invalidations",
                 "prefix_invalidations", "watch_history", "watch_events",
                 "watchers", "watchers_total", "watch_lines_sent",
                 "watchers_lagged", "watch_gaps", "watch_replays"):
        res.check(name in st, "stats invalidations has %s" % name)
    res.check(int(st.get("cmd_invalidate_tag", "0")) > 0,
              "invalidate_tag commands counted")
    res.check(int(st.get("watch_lines_sent", "0")) > 0, "lines counted")
    with Client(port) as c:
        c.send(b"stats\r\n")
        r = c.read_until(b"END\r\n")
    res.check(b"STAT watchers " not in r and b"STAT node_id " not in r,
              "the general stats keep memcached's names")


def main():
    res = harness.Results("invalidation")
    harness.overall_deadline(400)
    with harness.corrald(["-t", "2"]) as srv:
        for t in (t_tagged_stores, t_prefix, t_watch_lines,
                  t_sync_pending_flush, t_heartbeat, t_watch_filters,
                  t_watch_since, t_stats):
            res.run(t, srv.port)
        res.eq(srv.stop(), 0, "corrald exits 0 on SIGTERM")
        err = srv.stderr_text()
        res.check("ERROR: AddressSanitizer" not in err and
                  "WARNING: ThreadSanitizer" not in err,
                  "no sanitizer report", err[-2000:])
    for t in (t_key_tags, t_memcached_refuses, t_history_gap, t_lag_drop,
              t_lag_drop_unread, t_shutdown_line, t_disabled):
        res.run(t)
    res.finish()


if __name__ == "__main__":
    main()
