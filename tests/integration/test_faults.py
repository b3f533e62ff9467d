#!/usr/bin/env python3
"""test_faults.py - corrald under faults and load, on loopback, each part
bounded in count and time:

  - more clients than -c: the excess is told "ERROR Too many open
    connections" and closed (memcached's maxconns_fast behaviour); the
    server stays up and the others keep working;
  - slow clients (a line trickled a byte at a time; clients that never
    read their replies) hold only their own bounded buffers: the others
    are served, the resident size barely moves, and the idle timeout
    closes them;
  - a gat refused for memory half way (a non-reader holding one item
    pinned 66,000 times) answers the error alone, as memcached;
  - clients that disconnect in the middle of a value or of a large reply:
    no crash, no leak (the ASan build checks leaks at exit; valgrind runs
    corrald once in builds without sanitizers, when it is installed);
  - out of file descriptors (the server's limit lowered while it runs):
    accepting pauses and resumes, no connection is lost;
  - a flood of 1 MB sets far beyond -m: the resident size stays within
    10 % of the limit plus a fixed amount, and the server keeps answering;
  - SIGTERM while 50 clients are mid-pipeline: every reply received is
    complete and right, the server exits 0 in bounded time;
  - allocation failures, injected in the server (debug builds:
    CORRAL_TEST_FAIL_ALLOC) and in the engine (builds that allocate with
    jemalloc: failalloc.so makes mallocx() fail): error replies or a
    closed connection, never a crash, and recovery once they stop.
"""

import os
import re
import resource
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (Client, SLOW, SANITIZED, fill_socket,  # noqa: E402
                     version_ok, wait_for)

MB = 1 << 20


# ---------------------------------------------------------------------------
# helpers

def stats(port):
    """The general stats as a dict of strings."""
    with Client(port) as c:
        c.send(b"stats\r\n")
        out = c.read_until(b"END\r\n")
    d = {}
    for line in out.split(b"\r\n"):
        p = line.split(b" ")
        if len(p) == 3 and p[0] == b"STAT":
            d[p[1].decode()] = p[2].decode()
    return d


def rss_mb(pid):
    """Resident set size of a process, from /proc/<pid>/status, in MB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def reset_close(s):
    """Close with an RST (SO_LINGER 0), dropping whatever is unread."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


def curr_connections_is(port, n):
    """True once "stats" (on its own connection) sees n + 1 connections."""
    try:
        return int(stats(port)["curr_connections"]) == n + 1
    except (OSError, EOFError, KeyError, ValueError):
        return False


def no_sanitizer_report(res, srv, what):
    err = srv.stderr_text()
    res.check("ERROR: AddressSanitizer" not in err and
              "ERROR: LeakSanitizer" not in err and
              "runtime error:" not in err and
              "WARNING: ThreadSanitizer" not in err,
              "%s: no sanitizer report" % what, err[-3000:])


# ---------------------------------------------------------------------------
# more clients than -c

def t_conn_limit(res):
    limit = 8
    with harness.corrald(["-c", str(limit), "-t", "2"]) as srv:
        wait_for(lambda: curr_connections_is(srv.port, 0), 10)
        # The worker reaps a closed connection (the "stats" one above)
        # when it sees the close: until then it still counts against -c,
        # so a connection refused at first is tried again.
        held = []
        deadline = time.time() + 20 * harness.SLOW
        while len(held) < limit and time.time() < deadline:
            i = len(held)
            h = Client(srv.port)
            if h.request(b"set held%d 0 0 1\r\n%d\r\n" % (i, i % 10)) == \
                    b"STORED\r\n":
                held.append(h)
            else:
                h.close()
                time.sleep(0.05)
        res.check(len(held) == limit,
                  "-c %d: %d connections served" % (limit, limit))
        told = 0
        extra = 30
        for _ in range(extra):
            with Client(srv.port) as x:
                if x.read_eof() == b"ERROR Too many open connections\r\n":
                    told += 1
        res.eq(told, extra, "every connection past -c is told and closed, "
               "as memcached does")
        ok = all(h.request(b"get held%d\r\n" % i) ==
                 b"VALUE held%d 0 1\r\n" % i and
                 h.read_line() == b"%d\r\n" % (i % 10) and
                 h.read_line() == b"END\r\n" for i, h in enumerate(held))
        res.check(ok, "the connections within the limit keep working")
        held.pop().close()
        res.check(wait_for(lambda: version_ok(srv.port), 10),
                  "a slot freed by a close is usable again")
        held.pop().close()
        st = {}
        if wait_for(lambda: curr_connections_is(srv.port, len(held)), 10):
            st = stats(srv.port)
        res.check(int(st.get("rejected_connections", "0")) >= extra,
                  "rejected_connections counts them", repr(st)[:300])
        for h in held:
            h.close()
        res.eq(srv.stop(), 0, "-c: exit 0")
        no_sanitizer_report(res, srv, "-c")


# ---------------------------------------------------------------------------
# slow clients

def t_slow_clients(res):
    """Tricklers and non-readers hold bounded memory and slow no one."""
    ntrickle, nhog = 50, 20
    with harness.corrald(["-t", "2", "-m", "64"]) as srv:
        big = b"b" * 100000
        with Client(srv.port) as c:
            res.eq(c.request(b"set big 0 0 %d\r\n" % len(big) + big +
                             b"\r\n"), b"STORED\r\n", "slow: set the value")
        time.sleep(0.2)
        base = rss_mb(srv.proc.pid)
        trick = [socket.create_connection(("127.0.0.1", srv.port))
                 for _ in range(ntrickle)]
        hogs = [socket.create_connection(("127.0.0.1", srv.port))
                for _ in range(nhog)]
        # Each non-reader asks for far more than it will ever read: 2,000
        # requests of a 100 KB value (200 MB of replies) per chunk.
        sent = [fill_socket(h, b"get big\r\n" * 2000, 5 * SLOW)
                for h in hogs]
        res.check(all(n > 0 for n in sent),
                  "slow: every non-reader filled its socket")
        # Three seconds of trickling, a byte per second per client, while
        # a normal client runs round trips.
        served = wrong = 0
        line = b"get trickled-key\r\n"
        with Client(srv.port) as c:
            for step in range(3):
                for s in trick:
                    s.send(line[step:step + 1])
                end = time.time() + 1.0
                while time.time() < end:
                    k = b"n%d" % served
                    r = c.request(b"set %s 0 0 2\r\nok\r\nget %s\r\n" %
                                  (k, k))
                    r += c.read_value_reply()
                    if r == b"STORED\r\nVALUE %s 0 2\r\nok\r\nEND\r\n" % k:
                        served += 1
                    else:
                        wrong += 1
        # (each second runs at least one round trip; a server held up by
        # the others would time the client out instead)
        res.check(served >= 3 and wrong == 0,
                  "slow: a normal client is served meanwhile (%d round "
                  "trips in three seconds)" % served,
                  "served %d, wrong %d" % (served, wrong))
        growth = rss_mb(srv.proc.pid) - base
        # Each connection may hold one 16 KB read block, its reply queue
        # (bounded at ~1 MB, here mostly references to the pinned value)
        # and small arrays: a few MB for all 70.  Unbounded buffering
        # would mean gigabytes (4 GB of replies were asked for).
        if SANITIZED:
            print("SKIP: slow: resident size bound: sanitizer builds keep "
                  "freed memory in quarantine (grew %.1f MB)" % growth)
        else:
            res.check(growth < 24, "slow: resident size grew by %.1f MB "
                      "(bound 24 MB) for %d tricklers and %d non-readers" %
                      (growth, ntrickle, nhog))
        res.check(version_ok(srv.port), "slow: still serving")
        for s in trick:
            s.close()
        for h in hogs:
            reset_close(h)
        res.check(wait_for(lambda: curr_connections_is(srv.port, 0), 20),
                  "slow: every connection closed")
        res.eq(srv.stop(), 0, "slow: exit 0")
        no_sanitizer_report(res, srv, "slow")


def t_gat_refused(res):
    """A gat refused for memory half way answers the error alone: the
    VALUE lines queued for its earlier keys are dropped (memcached)."""
    with harness.corrald(["-t", "2", "-m", "64"]) as srv:
        big = b"b" * 200000
        with Client(srv.port) as c:
            res.eq(c.request(b"set big 0 0 %d\r\n" % len(big) + big +
                             b"\r\n"), b"STORED\r\n", "gat refused: set big")
            res.eq(c.request(b"set a 0 0 1\r\na\r\n"), b"STORED\r\n",
                   "gat refused: set a")
        # A client that never reads holds big pinned once per key it
        # named: past the 16-bit reference count, every further pin is a
        # private copy, and those are bounded to an eighth of the memory.
        # What its socket took is released; the rest stays pinned.
        hog = socket.create_connection(("127.0.0.1", srv.port))
        hog.sendall(b"get" + b" big" * 66000 + b"\r\n")
        res.check(wait_for(lambda: int(stats(srv.port)["get_hits"]) > 65000,
                           30), "gat refused: the non-reader's get ran")
        with Client(srv.port) as c:
            c.send(b"gat 0 a" + b" big" * 200 + b"\r\n")
            reply = c.read_value_reply()
            values = reply.count(b"VALUE ")
            res.eq((values, reply[-60:]),
                   (0, b"SERVER_ERROR out of memory writing get response"
                       b"\r\n"),
                   "gat refused: the error alone, no VALUE before it")
            res.eq(c.request(b"mn\r\n"), b"MN\r\n",
                   "gat refused: the connection goes on")
        reset_close(hog)
        res.check(version_ok(srv.port), "gat refused: still serving")
        res.eq(srv.stop(), 0, "gat refused: exit 0")
        no_sanitizer_report(res, srv, "gat refused")


def closed_by_server(s, timeout):
    """Keep trickling a byte a second on @s until the server closes it;
    True if that happened within @timeout seconds."""
    end = time.time() + timeout * SLOW
    s.settimeout(1.0)
    line = b"get trickled-key-that-never-ends"
    i = 0
    while time.time() < end:
        try:
            s.send(line[i % len(line):i % len(line) + 1])
            i += 1
            if s.recv(4096) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def t_idle_timeout_slow(res):
    """--idle-timeout closes tricklers and non-readers, not workers."""
    # (longer under sanitizers: a worker stalled for the whole timeout
    # would rightly close the busy client too)
    idle = 4 if SANITIZED else 2
    with harness.corrald(["-t", "2", "-o", "idle_timeout=%d" % idle]) as srv:
        big = b"i" * 200000
        with Client(srv.port) as c:
            c.request(b"set big 0 0 %d\r\n" % len(big) + big + b"\r\n")
        # A client that keeps working is not idle, however long it works:
        # it sends a request every 0.2 s for at least three idle timeouts.
        busy_ok = [0, 0]
        busy_span = [None, None]   # times of its first and last answer
        stop = threading.Event()

        def busy():
            try:
                with Client(srv.port) as b:
                    while not stop.is_set():
                        r = b.request(b"version\r\n")
                        if r.startswith(b"VERSION"):
                            busy_ok[0] += 1
                            now = time.time()
                            busy_span[0] = busy_span[0] or now
                            busy_span[1] = now
                        else:
                            busy_ok[1] += 1
                        time.sleep(0.2)
            except (OSError, EOFError):
                busy_ok[1] += 1

        bt = threading.Thread(target=busy)
        bt.start()
        wait_for(lambda: busy_span[0] is not None, 10)
        busy_until = (busy_span[0] or time.time()) + 3 * idle
        trickler = socket.create_connection(("127.0.0.1", srv.port))
        hog = socket.create_connection(("127.0.0.1", srv.port))
        fill_socket(hog, b"get big\r\n" * 1000, 5 * SLOW)
        res.check(closed_by_server(trickler, 15),
                  "idle timeout: a client trickling a line a byte a second "
                  "is closed")
        res.check(wait_for(lambda: int(stats(srv.port)["curr_connections"])
                           == 2, 15),
                  "idle timeout: the client that never reads is closed")
        while time.time() < busy_until:
            time.sleep(0.1)
        stop.set()
        bt.join()
        span = (busy_span[1] - busy_span[0]) if busy_ok[0] else 0.0
        res.check(busy_ok[1] == 0 and span > 2 * idle,
                  "idle timeout: an active client stays (%d requests over "
                  "%.1f s, more than twice the timeout)" % (busy_ok[0], span),
                  "failed or cut: %d" % busy_ok[1])
        trickler.close()
        reset_close(hog)
        res.eq(srv.stop(), 0, "idle timeout: exit 0")
        no_sanitizer_report(res, srv, "idle timeout")


# ---------------------------------------------------------------------------
# disconnects in the middle of a value or of a reply

def disconnect_load(port, rounds):
    big = b"d" * 1000000
    with Client(port, timeout=30) as c:
        for i in range(4):
            c.request(b"set dv%d 0 0 %d\r\n" % (i, len(big)) + big + b"\r\n")
    for i in range(rounds):
        # In the middle of a value: part of a 1 MB data block, then gone.
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"set cut%d 0 0 %d\r\n" % (i, len(big)) +
                  big[:(i * 37171) % 900000])
        if i % 2:
            reset_close(s)
        else:
            s.close()
        # In the middle of a large reply: 12 MB asked for, some read.
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"get dv0 dv1 dv2 dv3\r\n" * 3)
        want = (i * 65537) % 3000000
        got = 0
        s.settimeout(10 * SLOW)
        while got < want:
            d = s.recv(min(1 << 20, want - got))
            if not d:
                break
            got += len(d)
        reset_close(s)
        # A pipeline of sets cut anywhere, with a TCP half-close.
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall((b"set p 0 0 5\r\nhello\r\n" * 50)[:(i * 131) % 1000])
        s.shutdown(socket.SHUT_WR)
        s.close()


def t_disconnects(res):
    rounds = 40 if not SANITIZED else 16
    with harness.corrald(["-t", "2", "-I", "2m", "-m", "64"]) as srv:
        disconnect_load(srv.port, rounds)
        res.check(version_ok(srv.port), "disconnects: still serving")
        res.check(wait_for(lambda: curr_connections_is(srv.port, 0), 20),
                  "disconnects: every cut connection was closed")
        with Client(srv.port) as c:
            r = c.request(b"get cut1\r\n")
            res.eq(r, b"END\r\n", "disconnects: a cut value is not stored")
        res.eq(srv.stop(), 0, "disconnects: exit 0 (leak check at exit "
               "under ASan)")
        no_sanitizer_report(res, srv, "disconnects")


def t_disconnects_valgrind(res):
    vg = shutil.which("valgrind")
    if SANITIZED:
        print("SKIP: valgrind run: not run in sanitizer builds (%s)" %
              harness.SANITIZE)
        return
    if vg is None:
        print("SKIP: valgrind run: valgrind is not installed "
              "(Debian: apt-get install valgrind)")
        return
    port = harness.free_port()
    argv = [vg, "--error-exitcode=1", "--leak-check=full",
            "--errors-for-leak-kinds=definite", "-q",
            harness.CORRALD, "-p", str(port), "-l", "127.0.0.1", "-t", "2",
            "-I", "2m", "-m", "64"]
    srv = harness.Server(argv, port, deadline=300, name="valgrind-corrald")
    srv.start(wait=False)
    try:
        srv.wait_ready(timeout=60)
        disconnect_load(port, 6)
        res.check(version_ok(port), "valgrind: still serving")
        wait_for(lambda: curr_connections_is(port, 0), 30)
        rc = srv.stop(timeout=120)
        res.check(rc == 0, "valgrind: corrald exits 0 with no memory error "
                  "and no leak", "exit %r\n%s" % (rc,
                                                  srv.stderr_text()[-3000:]))
    finally:
        srv.close()


# ---------------------------------------------------------------------------
# out of file descriptors

def t_descriptors_exhausted(res):
    """accept() failing with EMFILE pauses accepting (listen_disabled_num
    counts it, as memcached's does) instead of spinning; the connections
    already open are served meanwhile, and those waiting in the backlog
    are accepted and served once descriptors are free again."""
    with harness.corrald(["-t", "2", "-c", "1000"]) as srv:
        pid = srv.proc.pid
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        first = Client(srv.port)
        res.eq(first.request(b"version\r\n")[:8], b"VERSION ",
               "fds: a first connection is served")
        # (the harness's readiness probe may still hold one)
        wait_for(lambda: curr_connections_is(srv.port, 1), 10)
        nfd = len(os.listdir("/proc/%d/fd" % pid))
        waiting = []
        disabled = [0]

        def paused():
            first.send(b"stats\r\n")
            m = re.search(rb"STAT listen_disabled_num (\d+)\r\n",
                          first.read_until(b"END\r\n"))
            disabled[0] = int(m.group(1)) if m else 0
            return disabled[0] > 0
        try:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (nfd + 2, hard))
            waiting = [socket.create_connection(("127.0.0.1", srv.port))
                       for _ in range(10)]
            res.check(wait_for(paused, 10), "fds: out of descriptors, "
                      "accepting pauses (listen_disabled_num %d)" %
                      disabled[0])
            res.eq(first.request(b"version\r\n")[:8], b"VERSION ",
                   "fds: an open connection is served meanwhile")
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        served = 0
        for w in waiting:
            w.settimeout(10 * SLOW)
            try:
                w.sendall(b"version\r\n")
                served += w.recv(100).startswith(b"VERSION ")
            except OSError:
                pass
            w.close()
        res.eq(served, len(waiting), "fds: with descriptors again, every "
               "waiting connection is accepted and served")
        first.close()
        res.eq(srv.stop(), 0, "fds: exit 0")
        no_sanitizer_report(res, srv, "fds")


# ---------------------------------------------------------------------------
# a flood of 1 MB sets far beyond -m

def t_flood(res):
    limit_mb = 64
    # Beyond 10 % of the limit: the process itself (~6 MB), one read
    # buffer of up to 1 MB per flooding connection, and the freed pages
    # jemalloc keeps for up to dirty_decay_ms (1 s, set in main.c)
    # before returning them.  Measured peaks: 82-91 MB at -m 64, below
    # the limit from -m 256 (an item of 1 MB is counted at its 1.25 MB
    # size class, of which only 1 MB is touched).
    fixed_mb = 40
    nconn = 4
    per_conn = 300
    with harness.corrald(["-t", "2", "-m", str(limit_mb), "-I", "2m"]) as srv:
        peak = [0.0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss_mb(srv.proc.pid))
                time.sleep(0.02)

        errors = []
        value = b"f" * MB

        def flood(cid):
            try:
                with Client(srv.port, timeout=60) as c:
                    for i in range(per_conn):
                        r = c.request(b"set fl%d_%d 0 0 %d\r\n" %
                                      (cid, i, len(value)) + value + b"\r\n")
                        if r != b"STORED\r\n":
                            errors.append(r)
                            return
            except Exception as e:  # reported below
                errors.append(repr(e))

        answered = [0]

        def prober():
            with Client(srv.port, timeout=30) as c:
                while not stop.is_set():
                    if c.request(b"version\r\n").startswith(b"VERSION"):
                        answered[0] += 1
                    time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        probe = threading.Thread(target=prober)
        sampler.start()
        probe.start()
        floods = [threading.Thread(target=flood, args=(i,))
                  for i in range(nconn)]
        t0 = time.time()
        for t in floods:
            t.start()
        for t in floods:
            t.join()
        took = time.time() - t0
        stop.set()
        sampler.join()
        probe.join()
        total = nconn * per_conn
        res.check(not errors, "flood: %d sets of 1 MB (%dx -m) all STORED "
                  "in %.1f s" % (total, total // limit_mb, took),
                  repr(errors[:3]))
        res.check(answered[0] > 0, "flood: the server kept answering "
                  "(%d probes)" % answered[0])
        st = stats(srv.port)
        res.check(int(st["evictions"]) > 0 and
                  int(st["bytes"]) <= limit_mb * MB,
                  "flood: items evicted, bytes within -m",
                  "evictions %s bytes %s" % (st["evictions"], st["bytes"]))
        bound = limit_mb * 1.1 + fixed_mb
        if SANITIZED:
            print("SKIP: flood: resident size bound: sanitizer builds "
                  "allocate through the sanitizer (peak %.0f MB)" % peak[0])
        else:
            res.check(peak[0] <= bound, "flood: peak resident size %.0f MB "
                      "within 10 %% of -m %d plus %d MB (%.0f MB)" %
                      (peak[0], limit_mb, fixed_mb, bound))
        # A value stored after the flood is there.  (Which of the
        # flooders' last sets the server ran last is unknown: the order in
        # which their threads finished need not be that.)
        with Client(srv.port) as c:
            r = c.request(b"set after 0 0 %d\r\n" % MB + value + b"\r\n")
            r += c.request(b"get after\r\n")
            res.eq(r, b"STORED\r\nVALUE after 0 %d\r\n" % MB,
                   "flood: a value stored after it is there")
        res.eq(srv.stop(), 0, "flood: exit 0")
        no_sanitizer_report(res, srv, "flood")


# ---------------------------------------------------------------------------
# SIGTERM while 50 clients are mid-pipeline

def value_for(cid, i):
    return b"%d.%d." % (cid, i) + b"v" * ((cid * 7 + i) % 200)


class Pipeliner:
    """A client that keeps sending "set k; get k" pairs without waiting
    and checks, as they come, that every reply is the one expected."""

    def __init__(self, port, cid):
        self.cid = cid
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.settimeout(60 * SLOW)
        self.sent = 0
        self.stop = False
        self.pairs_ok = 0
        self.error = None
        self.tail = b""
        self.w = threading.Thread(target=self.writer)
        self.r = threading.Thread(target=self.reader)

    def start(self):
        self.w.start()
        self.r.start()

    def writer(self):
        try:
            while not self.stop and self.sent < 200000:
                batch = []
                for _ in range(16):
                    k = b"c%d_%d" % (self.cid, self.sent)
                    v = value_for(self.cid, self.sent)
                    batch.append(b"set %s 0 0 %d\r\n%s\r\nget %s\r\n" %
                                 (k, len(v), v, k))
                    self.sent += 1
                self.sock.sendall(b"".join(batch))
        except OSError:
            pass  # the server closed: expected after SIGTERM
        try:
            # Done, or the reader saw the server's end of stream: close
            # this side, as a client does.
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def reader(self):
        buf = b""
        i = 0
        stored = False   # the set of pair i was answered, the get not yet
        try:
            while True:
                d = self.sock.recv(1 << 16)
                if not d:
                    self.stop = True
                    break
                buf += d
                while True:
                    k = b"c%d_%d" % (self.cid, i)
                    if not stored:
                        if len(buf) < 8:
                            break
                        if not buf.startswith(b"STORED\r\n"):
                            raise ValueError("pair %d: %r" % (i, buf[:80]))
                        buf = buf[8:]
                        stored = True
                    v = value_for(self.cid, i)
                    want = b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (k, len(v), v)
                    if len(buf) < len(want):
                        if not want.startswith(buf):
                            raise ValueError("pair %d: %r" % (i, buf[:80]))
                        break
                    if not buf.startswith(want):
                        raise ValueError("pair %d: %r" % (i, buf[:80]))
                    buf = buf[len(want):]
                    stored = False
                    i += 1
                    self.pairs_ok = i
        except (OSError, ValueError) as e:
            self.error = repr(e)
        self.stop = True
        self.tail = buf

    def join(self, timeout):
        self.r.join(timeout)
        self.stop = True
        self.w.join(timeout)
        self.sock.close()
        return not self.r.is_alive() and not self.w.is_alive()


def t_sigterm_pipelines(res):
    nclients = 50
    with harness.corrald(["-t", "2", "-m", "256",
                          "--shutdown-timeout", "30"]) as srv:
        clients = [Pipeliner(srv.port, i) for i in range(nclients)]
        for c in clients:
            c.start()
        res.check(wait_for(lambda: all(c.pairs_ok > 0 for c in clients),
                           20), "sigterm: all 50 clients are pipelining")
        time.sleep(0.5)
        t0 = time.time()
        srv.signal(signal.SIGTERM)
        rc = srv.wait(timeout=60)
        took = time.time() - t0
        res.eq(rc, 0, "sigterm: exit status 0")
        # Well within --shutdown-timeout: the drain does not wait for
        # clients that keep sending.
        res.check(took < 10 * SLOW, "sigterm: exited in %.1f s" % took)
        joined = all(c.join(30 * SLOW) for c in clients)
        res.check(joined, "sigterm: every connection was closed")
        bad = [(c.cid, c.error) for c in clients if c.error]
        res.check(not bad, "sigterm: every reply received is complete and "
                  "right (%d pairs)" % sum(c.pairs_ok for c in clients),
                  repr(bad[:3]))
        partial = [(c.cid, c.tail[:60]) for c in clients
                   if c.tail not in (b"", b"STORED\r\n")]
        res.check(not partial, "sigterm: no reply was cut short",
                  repr(partial[:3]))
        no_sanitizer_report(res, srv, "sigterm")


# ---------------------------------------------------------------------------
# allocation failures

ERROR_LINE = re.compile(rb"^(SERVER_ERROR [a-z ]+|CLIENT_ERROR [a-z ]+)\r\n")


def fault_workload(port, seconds, nclients=4):
    """Mixed requests from several clients, reconnecting when closed.
    Returns (ok, errors, closes, bad) counts; `bad` lists replies that
    are neither the right answer nor an error line."""
    counts = {"ok": 0, "errors": 0, "closes": 0}
    bad = []
    lock = threading.Lock()
    sizes = [5, 600, 20000, 300000]

    def one(cid):
        end = time.time() + seconds
        i = 0
        c = None
        while time.time() < end:
            i += 1
            v = (b"%d:%d:" % (cid, i)) * 1
            v += b"x" * (sizes[i % len(sizes)] - len(v))
            k = b"fa%d_%d" % (cid, i % 50)
            try:
                if c is None:
                    c = Client(port, timeout=20)
                r = c.request(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(v), v))
                if r == b"STORED\r\n":
                    c.send(b"get %s\r\n" % k)
                    g = c.read_value_reply()
                    want = b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (k, len(v), v)
                    if g == want:
                        outcome = "ok"
                    elif ERROR_LINE.match(g) or g == b"END\r\n":
                        outcome = "errors"
                    else:
                        outcome = "bad"
                        with lock:
                            bad.append(g[:120])
                elif ERROR_LINE.match(r):
                    outcome = "errors"
                else:
                    outcome = "bad"
                    with lock:
                        bad.append(r[:120])
                if i % 5 == 0:
                    c.send(b"incr n%d 1\r\nmg %s s v\r\nstats\r\n" % (cid, k))
                    c.read_line()
                    c.read_meta_reply()
                    c.read_until(b"END\r\n")
                if outcome != "bad":
                    with lock:
                        counts[outcome] += 1
            except (OSError, EOFError):
                with lock:
                    counts["closes"] += 1
                if c is not None:
                    c.close()
                c = None
        if c is not None:
            c.close()

    threads = [threading.Thread(target=one, args=(i,))
               for i in range(nclients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts, bad


def t_server_alloc_failures(res):
    env = harness.sanitizer_env()
    env["CORRAL_TEST_FAIL_ALLOC"] = "7"
    with harness.corrald(["-t", "2", "-I", "2m"], env=env) as srv:
        if "every 7-th server allocation fails" not in srv.stderr_text():
            print("SKIP: server allocation failures: injected only in "
                  "builds configured with --enable-debug")
            srv.stop()
            return
        counts, bad = fault_workload(srv.port, 4 * SLOW)
        res.check(counts["ok"] > 0 and counts["errors"] + counts["closes"]
                  > 0, "server allocation failures: some requests served, "
                  "some refused (%r)" % counts)
        res.check(not bad, "server allocation failures: every reply is "
                  "right or an error line", repr(bad[:3]))
        res.check(wait_for(lambda: version_ok(srv.port), 10),
                  "server allocation failures: still serving")
        res.eq(srv.stop(), 0, "server allocation failures: exit 0 (no leak "
               "under ASan)")
        no_sanitizer_report(res, srv, "server allocation failures")


def failalloc_library():
    return os.path.join(harness.TOP_BUILDDIR, "tests", "integration",
                        ".libs", "libfailalloc.so")


def t_engine_alloc_failures(res):
    lib = failalloc_library()
    if SANITIZED:
        print("SKIP: engine allocation failures: sanitizer builds allocate "
              "with libc malloc, not jemalloc's mallocx()")
        return
    if not os.path.exists(lib):
        res.check(False, "engine allocation failures: %s built" % lib)
        return
    armfile = tempfile.mktemp(prefix="corral-failalloc-")
    env = harness.sanitizer_env()
    env["LD_PRELOAD"] = lib
    env["CORRAL_FAILALLOC_FILE"] = armfile
    env["CORRAL_FAILALLOC_EVERY"] = "3"
    with harness.corrald(["-t", "2", "-I", "2m"], env=env) as srv:
        try:
            with open(armfile, "w"):
                pass
            counts, bad = fault_workload(srv.port, 4 * SLOW)
        finally:
            os.unlink(armfile)
        res.check(counts["ok"] > 0 and counts["errors"] > 0,
                  "engine allocation failures: some stores succeed, some "
                  "are refused (%r)" % counts)
        res.check(not bad, "engine allocation failures: every reply is "
                  "right or an error line", repr(bad[:3]))
        st = stats(srv.port)
        res.check(int(st.get("store_no_memory", "0")) > 0,
                  "engine allocation failures: counted in store_no_memory")
        counts, bad = fault_workload(srv.port, 1 * SLOW, nclients=2)
        res.check(counts["errors"] == 0 and counts["closes"] == 0 and
                  counts["ok"] > 0 and not bad,
                  "engine allocation failures: all served once they stop "
                  "(%r)" % counts, repr(bad[:3]))
        res.eq(srv.stop(), 0, "engine allocation failures: exit 0")


def main():
    res = harness.Results("faults")
    harness.overall_deadline(600)
    for t in (t_conn_limit, t_slow_clients, t_gat_refused,
              t_idle_timeout_slow,
              t_disconnects, t_disconnects_valgrind, t_descriptors_exhausted,
              t_flood,
              t_sigterm_pipelines, t_server_alloc_failures,
              t_engine_alloc_failures):
        res.run(t)
    res.finish()


if __name__ == "__main__":
    main()
