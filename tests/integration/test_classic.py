#!/usr/bin/env python3
"""test_classic.py - corrald's classic text protocol and its life as a
process: every classic command with and without noreply, pipelining,
values arriving a byte at a time, 1 MB values, a 10,000-key get, stats,
flush_all with a delay, the connection limit, back-pressure, SIGTERM
draining, options and environment variables, exit codes.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Client  # noqa: E402

EX_USAGE = 64


def t_storage(res, port):
    with Client(port) as c:
        res.eq(c.request(b"set a 5 0 3\r\nabc\r\n"), b"STORED\r\n", "set")
        c.send(b"get a\r\n")
        res.eq(c.read_value_reply(), b"VALUE a 5 3\r\nabc\r\nEND\r\n", "get")
        res.eq(c.request(b"add a 0 0 1\r\nx\r\n"), b"NOT_STORED\r\n",
               "add existing")
        res.eq(c.request(b"add b 7 0 2\r\nxy\r\n"), b"STORED\r\n", "add new")
        res.eq(c.request(b"replace zz 0 0 1\r\nx\r\n"), b"NOT_STORED\r\n",
               "replace missing")
        res.eq(c.request(b"replace b 8 0 2\r\nzw\r\n"), b"STORED\r\n",
               "replace existing")
        res.eq(c.request(b"append b 0 0 2\r\n12\r\n"), b"STORED\r\n", "append")
        res.eq(c.request(b"prepend b 0 0 2\r\n00\r\n"), b"STORED\r\n",
               "prepend")
        res.eq(c.request(b"append nope 0 0 1\r\nx\r\n"), b"NOT_STORED\r\n",
               "append missing")
        c.send(b"gets b\r\n")
        r = c.read_value_reply()
        m = re.match(rb"VALUE b 8 6 (\d+)\r\n00zw12\r\nEND\r\n$", r)
        res.check(m is not None, "gets after append/prepend keeps flags",
                  repr(r))
        cas = int(m.group(1)) if m else 0
        res.eq(c.request(b"cas b 1 0 1 %d\r\nq\r\n" % (cas + 1)),
               b"EXISTS\r\n", "cas stale")
        res.eq(c.request(b"cas b 1 0 1 %d\r\nq\r\n" % cas), b"STORED\r\n",
               "cas match")
        res.eq(c.request(b"cas nope 1 0 1 5\r\nq\r\n"), b"NOT_FOUND\r\n",
               "cas missing")
        res.eq(c.request(b"set e 0 0 0\r\n\r\n"), b"STORED\r\n", "empty value")
        c.send(b"get e\r\n")
        res.eq(c.read_value_reply(), b"VALUE e 0 0\r\n\r\nEND\r\n",
               "get empty value")
        res.eq(c.request(b"set f 4294967295 0 1\r\nx\r\n"), b"STORED\r\n",
               "flags 2^32-1")
        c.send(b"get f\r\n")
        res.eq(c.read_value_reply(), b"VALUE f 4294967295 1\r\nx\r\nEND\r\n",
               "32-bit flags come back")
        res.eq(c.request(b"set x 0 -1 1\r\nx\r\n"), b"STORED\r\n",
               "negative exptime")
        c.send(b"get x\r\n")
        res.eq(c.read_value_reply(), b"END\r\n", "negative exptime expired")


def t_noreply(res, port):
    with Client(port) as c:
        c.send(b"set n 0 0 1 noreply\r\n1\r\n"
               b"add n 0 0 1 noreply\r\n2\r\n"
               b"replace n 0 0 1 noreply\r\n3\r\n"
               b"append n 0 0 1 noreply\r\n4\r\n"
               b"prepend n 0 0 1 noreply\r\n5\r\n"
               b"incr n 1 noreply\r\n"
               b"decr n 2 noreply\r\n"
               b"touch n 100 noreply\r\n"
               b"cas n 0 0 1 1 noreply\r\n9\r\n"
               b"verbosity 0 noreply\r\n"
               b"get n\r\n")
        res.eq(c.read_value_reply(), b"VALUE n 0 3\r\n533\r\nEND\r\n",
               "noreply commands are silent and applied")
        c.send(b"delete n noreply\r\nflush_all noreply\r\nget n\r\n")
        res.eq(c.read_value_reply(), b"END\r\n", "delete/flush_all noreply")
        # memcached also silences errors under noreply
        c.send(b"incr nothere 1 noreply\r\nset big 0 0 2000000 noreply\r\n")
        c.send(b"z" * 2000000 + b"\r\n")
        res.eq(c.request(b"version\r\n")[:8], b"VERSION ",
               "refused big value under noreply is swallowed silently")


def t_arith_touch_delete(res, port):
    with Client(port) as c:
        c.request(b"set n 0 0 3\r\n100\r\n")
        res.eq(c.request(b"decr n 1\r\n"), b"99\r\n", "decr")
        c.send(b"get n\r\n")
        res.eq(c.read_value_reply(), b"VALUE n 0 3\r\n99 \r\nEND\r\n",
               "decr rewrites in place, space-padded, as memcached")
        res.eq(c.request(b"incr n 18446744073709551615\r\n"), b"98\r\n",
               "incr wraps at 2^64")
        res.eq(c.request(b"decr n 1000\r\n"), b"0\r\n", "decr stops at 0")
        res.eq(c.request(b"incr nope 1\r\n"), b"NOT_FOUND\r\n", "incr miss")
        c.request(b"set s 0 0 2\r\nab\r\n")
        res.eq(c.request(b"incr s 1\r\n"),
               b"CLIENT_ERROR cannot increment or decrement non-numeric "
               b"value\r\n", "incr non-numeric")
        res.eq(c.request(b"incr n abc\r\n"),
               b"CLIENT_ERROR invalid numeric delta argument\r\n",
               "incr bad delta")
        res.eq(c.request(b"touch n 100\r\n"), b"TOUCHED\r\n", "touch")
        res.eq(c.request(b"touch nope 100\r\n"), b"NOT_FOUND\r\n",
               "touch miss")
        c.send(b"gat 0 n\r\n")
        res.eq(c.read_value_reply(), b"VALUE n 0 3\r\n0  \r\nEND\r\n", "gat")
        c.send(b"gats 100 n nope\r\n")
        r = c.read_value_reply()
        res.check(re.match(rb"VALUE n 0 3 \d+\r\n0  \r\nEND\r\n$", r) is
                  not None, "gats", repr(r))
        c.send(b"gat -1 n\r\n")
        c.read_value_reply()
        c.send(b"get n\r\n")
        res.eq(c.read_value_reply(), b"END\r\n", "gat -1 expires")
        c.request(b"set d 0 0 1\r\nx\r\n")
        res.eq(c.request(b"delete d\r\n"), b"DELETED\r\n", "delete")
        res.eq(c.request(b"delete d\r\n"), b"NOT_FOUND\r\n", "delete miss")
        res.eq(c.request(b"delete d 0\r\n"), b"NOT_FOUND\r\n",
               "delete with legacy 0")
        res.eq(c.request(b"delete d 5\r\n"),
               b"CLIENT_ERROR bad command line format.  "
               b"Usage: delete <key> [noreply]\r\n", "delete with a time")


def t_misc(res, port):
    with Client(port) as c:
        r = c.request(b"version\r\n")
        res.check(re.match(rb"VERSION 1\.6\.\S+\r\n$", r) is not None,
                  "version", repr(r))
        res.eq(c.request(b"verbosity 1\r\n"), b"OK\r\n", "verbosity")
        res.eq(c.request(b"verbosity 0\r\n"), b"OK\r\n", "verbosity 0")
        res.eq(c.request(b"shutdown\r\n"),
               b"ERROR: shutdown not enabled\r\n", "shutdown disabled")
        res.eq(c.request(b"watch nonsense\r\n"), b"ERROR\r\n",
               "watch with an unknown stream")
        c.request(b"set q 0 0 1\r\nx\r\n")
        res.eq(c.request(b"flush_all\r\n"), b"OK\r\n", "flush_all")
        c.send(b"get q\r\n")
        res.eq(c.read_value_reply(), b"END\r\n", "flush_all empties")
        # A delayed flush keeps items until its time comes.
        c.request(b"set q 0 0 1\r\nx\r\n")
        # (due in 4-5 s: the flush time is a whole second)
        res.eq(c.request(b"flush_all 5\r\n"), b"OK\r\n", "flush_all 5")
        c.send(b"get q\r\n")
        res.eq(c.read_value_reply(), b"VALUE q 0 1\r\nx\r\nEND\r\n",
               "delayed flush keeps items until it is due")

        def flushed():
            c.send(b"get q\r\n")
            return c.read_value_reply() == b"END\r\n"
        res.check(harness.wait_for(flushed, 10),
                  "delayed flush removes them when due")
        c.send(b"quit\r\n")
        res.eq(c.read_eof(), b"", "quit closes the connection")


def t_stats(res, port):
    with Client(port) as c:
        c.send(b"stats\r\n")
        r = c.read_until(b"END\r\n")
        names = re.findall(rb"^STAT (\S+) \S", r, re.M)
        for want in (b"pid", b"uptime", b"version", b"curr_connections",
                     b"total_connections", b"cmd_get", b"get_hits",
                     b"curr_items", b"bytes", b"limit_maxbytes", b"threads",
                     b"evictions", b"bytes_read", b"bytes_written"):
            res.check(want in names, "stats has %s" % want.decode())
        c.send(b"stats settings\r\n")
        r = c.read_until(b"END\r\n")
        res.check(b"STAT maxconns " in r and b"STAT item_size_max " in r,
                  "stats settings")
        c.send(b"stats items\r\n")
        res.check(c.read_until(b"END\r\n").startswith((b"STAT items:1:",
                                                        b"END")),
                  "stats items")
        c.send(b"stats slabs\r\n")
        res.check(b"total_malloced" in c.read_until(b"END\r\n"),
                  "stats slabs")
        c.send(b"stats sizes\r\n")
        res.eq(c.read_until(b"END\r\n"),
               b"STAT sizes_status disabled\r\nEND\r\n", "stats sizes")
        c.send(b"stats conns\r\n")
        r = c.read_until(b"END\r\n")
        res.check(b"conn_listening" in r and b"conn_parse_cmd" in r,
                  "stats conns lists the listener and this connection",
                  repr(r))
        res.eq(c.request(b"stats reset\r\n"), b"RESET\r\n", "stats reset")
        res.eq(c.request(b"stats nonsense\r\n"), b"ERROR\r\n", "stats bad")
        res.eq(c.request(b"stats detail\r\n"),
               b"CLIENT_ERROR usage: stats detail on|off|dump\r\n",
               "stats detail usage")


def t_stats_names(res, port):
    """The same statistics names, in the same order, as a memcached in
    its default configuration."""
    if not harness.have_memcached():
        res.check(False, "memcached installed for the comparison")
        return
    with harness.memcached(["-t", "2"]) as mc:
        for sub in (b"", b" settings"):
            names = []
            for p in (port, mc.port):
                with Client(p) as c:
                    c.send(b"stats" + sub + b"\r\n")
                    r = c.read_until(b"END\r\n")
                    names.append(re.findall(rb"^STAT (\S+) ", r, re.M))
            res.eq(names[0], names[1],
                   "stats%s: memcached's names in memcached's order" %
                   sub.decode())


def t_pipeline(res, port):
    with Client(port) as c:
        req = b"".join(b"set p%d 0 0 %d\r\n%s\r\n" % (i, len(b"v%d" % i),
                                                    b"v%d" % i)
                       for i in range(50))
        req += b"".join(b"get p%d\r\n" % i for i in range(50))
        c.send(req)   # 100 commands in one write
        got = b"".join(c.read_line() for _ in range(50))
        res.eq(got, b"STORED\r\n" * 50, "50 pipelined sets")
        ok = True
        for i in range(50):
            v = b"v%d" % i
            if c.read_value_reply() != b"VALUE p%d 0 %d\r\n%s\r\nEND\r\n" % (
                    i, len(v), v):
                ok = False
        res.check(ok, "50 pipelined gets after them, in order")


def t_byte_by_byte(res, port):
    with Client(port) as c:
        msg = b"set slow 3 0 11\r\nhello world\r\nget slow\r\n"
        for i in range(len(msg)):
            c.send(msg[i:i + 1])
            time.sleep(0.002)
        res.eq(c.read_line(), b"STORED\r\n", "a set arriving a byte a write")
        res.eq(c.read_value_reply(),
               b"VALUE slow 3 11\r\nhello world\r\nEND\r\n",
               "and the get after it")


def t_big_values(res, port):
    with Client(port, timeout=60) as c:
        v = bytes(range(256)) * 4096   # 1 MiB, every byte value
        res.eq(c.request(b"set big 0 0 %d\r\n" % len(v) + v + b"\r\n"),
               b"STORED\r\n", "1 MiB value stored (-I 2m)")
        c.send(b"get big big\r\n")
        r = c.read_value_reply()
        hdr = b"VALUE big 0 %d\r\n" % len(v)
        res.eq(r, hdr + v + b"\r\n" + hdr + v + b"\r\nEND\r\n",
               "1 MiB value read back twice in one get")
        # In pieces, with pauses, as a slow client would send it.
        c.send(b"set big2 0 0 %d\r\n" % len(v))
        for i in range(0, len(v), 65536):
            c.send(v[i:i + 65536])
        c.send(b"\r\n")
        res.eq(c.read_line(), b"STORED\r\n", "1 MiB value sent in pieces")
        big = b"x" * (3 * 1024 * 1024)
        res.eq(c.request(b"set huge 0 0 %d\r\n" % len(big) + big + b"\r\n"),
               b"SERVER_ERROR object too large for cache\r\n",
               "3 MiB value refused (-I 2m)")
        res.eq(c.request(b"version\r\n")[:8], b"VERSION ",
               "the refused value was swallowed")


def t_multiget(res, port):
    with Client(port, timeout=60) as c:
        n = 10000
        batch = b"".join(b"set mg%d 0 0 %d noreply\r\n%d\r\n" %
                         (i, len(b"%d" % i), i) for i in range(0, n, 2))
        c.send(batch)
        keys = b" ".join(b"mg%d" % i for i in range(n))
        c.send(b"get " + keys + b"\r\n")
        r = c.read_value_reply()
        want = b"".join(b"VALUE mg%d 0 %d\r\n%d\r\n" % (i, len(b"%d" % i), i)
                        for i in range(0, n, 2)) + b"END\r\n"
        res.eq(len(r), len(want), "get of 10,000 keys: reply size")
        res.check(r == want, "get of 10,000 keys: every hit in order")


def t_backpressure(res, port):
    """A client that writes but does not read stalls only itself."""
    with Client(port, timeout=30) as c:
        c.request(b"set bp 0 0 1000\r\n" + b"b" * 1000 + b"\r\n")
        hog = socket.create_connection(("127.0.0.1", port))
        # (the stream stays whole requests: sent // 8 reached the server)
        sent = harness.fill_socket(hog, b"get bp\r\n" * 4096,
                                   10 * harness.SLOW)
        res.check(sent > 0, "the non-reading client filled its socket")
        res.eq(c.request(b"version\r\n")[:8], b"VERSION ",
               "other clients are still served")
        hog.setblocking(True)
        hog.settimeout(30 * harness.SLOW)
        want = sent // 8
        got = hits = 0
        tail = b""
        try:
            while got < want:
                d = hog.recv(1 << 20)
                if not d:
                    break
                tail += d
                cut = tail.rfind(b"END\r\n") + 5
                if cut >= 5:
                    done, tail = tail[:cut], tail[cut:]
                    got += done.count(b"END\r\n")
                    hits += done.count(b"VALUE bp ")
        except socket.timeout:
            print("timed out after %d of %d replies (%d hits); last bytes "
                  "%r" % (got, want, hits, tail[-200:]))
        res.eq((got, hits), (want, want),
               "the stalled client gets every reply once it reads")
        hog.close()


def curr_connections(c):
    c.send(b"stats\r\n")
    r = c.read_until(b"END\r\n")
    return int(re.search(rb"STAT curr_connections (\d+)", r).group(1))


def t_conn_limit(res):
    with harness.corrald(["-c", "4", "-t", "1"]) as srv:
        held = [Client(srv.port)]
        # The harness's readiness probe may not be closed yet.
        harness.wait_for(lambda: curr_connections(held[0]) == 1, 10)
        held += [Client(srv.port) for _ in range(3)]
        res.check(all(h.request(b"version\r\n").startswith(b"VERSION ")
                      for h in held), "-c 4: four connections served")
        extra = Client(srv.port)
        res.eq(extra.read_eof(), b"ERROR Too many open connections\r\n",
               "-c 4: a fifth connection is told and closed")
        held[0].close()
        # The slot is free once the worker has seen the close.
        res.check(harness.wait_for(lambda: harness.version_ok(srv.port), 10),
                  "room again after one closes")
        held[1].send(b"stats\r\n")
        r = held[1].read_until(b"END\r\n")
        res.check(re.search(rb"STAT rejected_connections [1-9]", r) is
                  not None, "rejected_connections counted")
        for h in held[1:]:
            h.close()
        res.eq(srv.stop(), 0, "exit 0")


def t_sigterm_drain(res):
    with harness.corrald(["-t", "2"]) as srv:
        c = Client(srv.port)
        v = b"d" * 500000
        c.request(b"set drain 0 0 %d\r\n" % len(v) + v + b"\r\n")
        # Requests in flight when the signal comes are answered.
        c.send(b"get drain\r\n" * 20)
        time.sleep(0.1)
        srv.signal(signal.SIGTERM)
        want = (b"VALUE drain 0 %d\r\n" % len(v) + v + b"\r\nEND\r\n") * 20
        got = b""
        c.sock.settimeout(20 * harness.SLOW)
        while len(got) < len(want):
            d = c.sock.recv(1 << 20)
            if not d:
                break
            got += d
        res.eq(len(got), len(want), "SIGTERM: replies in flight delivered")
        res.eq(c.sock.recv(10), b"", "then the connection is closed")
        res.eq(srv.wait(), 0, "SIGTERM: exit status 0")
        try:
            socket.create_connection(("127.0.0.1", srv.port), timeout=1)
            res.check(False, "no longer listening")
        except OSError:
            res.check(True, "no longer listening")


def t_sigint_and_shutdown(res):
    with harness.corrald(["-t", "1"]) as srv:
        srv.signal(signal.SIGINT)
        res.eq(srv.wait(), 0, "SIGINT: exit status 0")
    with harness.corrald(["-A", "-t", "1"]) as srv:
        with Client(srv.port) as c:
            res.eq(c.request(b"shutdown bogus\r\n"),
                   b"CLIENT_ERROR invalid shutdown mode\r\n",
                   "shutdown with a bad mode")
            c.send(b"shutdown\r\n")
            res.eq(c.read_eof(), b"", "shutdown closes the connection")
        res.eq(srv.wait(), 0, "-A shutdown: exit status 0")


def run_corrald(args, env=None, timeout=10):
    e = harness.sanitizer_env()
    e.update(env or {})
    p = subprocess.run([harness.CORRALD] + args, env=e, capture_output=True,
                       timeout=timeout * harness.SLOW)
    return p.returncode, p.stdout, p.stderr


def t_options(res):
    rc, out, err = run_corrald(["--help"])
    res.eq(rc, 0, "--help exits 0")
    for flag in (b"-p", b"-l", b"-m", b"-c", b"-t", b"-I", b"-v", b"-U",
                 b"-A", b"CORRAL_PORT", b"CORRAL_LISTEN", b"CORRAL_MEMORY",
                 b"CORRAL_CONNECTIONS", b"CORRAL_THREADS",
                 b"CORRAL_ITEM_SIZE_MAX", b"CORRAL_VERBOSE"):
        res.check(flag in out, "--help mentions %s" % flag.decode())
    rc, out, err = run_corrald(["--version"])
    res.check(rc == 0 and out.startswith(b"corrald "), "--version")
    for args, what in ((["-Z"], "unknown flag"),
                       (["--bogus"], "unknown long flag"),
                       (["-p"], "missing argument"),
                       (["-p", "99999"], "port out of range"),
                       (["-p", "12ab"], "port not a number"),
                       (["-m", "0"], "memory below 1 MB"),
                       (["-I", "512"], "item size below 1k"),
                       (["-I", "2g"], "item size above 1024m"),
                       (["-m", "4", "-I", "3m"], "item size over half of -m"),
                       (["-t", "0"], "zero threads"),
                       (["-c", "0"], "zero connections"),
                       (["-U", "11211"], "UDP requested"),
                       (["-o", "nonsense=1"], "unknown -o option"),
                       (["extra"], "stray argument")):
        rc, out, err = run_corrald(args)
        res.check(rc == EX_USAGE and err.startswith(b"corrald: "),
                  "bad option (%s) exits 64 with a message" % what,
                  "rc=%d err=%r" % (rc, err))
    rc, out, err = run_corrald([], env={"CORRAL_PORT": "x"})
    res.check(rc == EX_USAGE and b"CORRAL_PORT" in err,
              "bad environment value exits 64 naming the variable")
    # The port is in use: a clear message and EX_OSERR (71).
    with harness.corrald(["-t", "1"]) as srv:
        rc, out, err = run_corrald(["-p", str(srv.port), "-t", "1"])
        res.check(rc == 71 and b"bind" in err, "port in use exits 71",
                  "rc=%d err=%r" % (rc, err))


def t_environment(res):
    port = harness.free_port()
    env = harness.sanitizer_env()
    env.update({"CORRAL_PORT": str(port), "CORRAL_LISTEN": "127.0.0.1",
                "CORRAL_MEMORY": "32", "CORRAL_CONNECTIONS": "77",
                "CORRAL_THREADS": "3", "CORRAL_ITEM_SIZE_MAX": "512k",
                "CORRAL_ENABLE_SHUTDOWN": "yes"})
    srv = harness.Server([harness.CORRALD], port, env=env,
                         name="corrald").start()
    try:
        with Client(port) as c:
            c.send(b"stats settings\r\n")
            r = c.read_until(b"END\r\n")
            res.check(b"STAT maxbytes 33554432\r\n" in r, "CORRAL_MEMORY")
            res.check(b"STAT maxconns 77\r\n" in r, "CORRAL_CONNECTIONS")
            res.check(b"STAT num_threads 3\r\n" in r, "CORRAL_THREADS")
            res.check(b"STAT item_size_max 524288\r\n" in r,
                      "CORRAL_ITEM_SIZE_MAX with suffix")
            res.check(b"STAT shutdown_command yes\r\n" in r,
                      "CORRAL_ENABLE_SHUTDOWN")
    finally:
        srv.close()
    # Flags override the environment.
    env["CORRAL_THREADS"] = "3"
    port2 = harness.free_port()
    srv = harness.Server([harness.CORRALD, "-p", str(port2), "-t", "2"],
                         port2, env=env, name="corrald").start()
    try:
        with Client(port2) as c:
            c.send(b"stats settings\r\n")
            r = c.read_until(b"END\r\n")
            res.check(b"STAT num_threads 2\r\n" in r and
                      b"STAT tcpport %d\r\n" % port2 in r,
                      "flags override the environment")
    finally:
        srv.close()


def t_threads_and_logging(res):
    """Several workers busy while another asks for stats conns (which
    reads every worker's connections), with -vv logging every command."""
    import threading
    with harness.corrald(["-t", "3", "-vv"]) as srv:
        stop = []
        connected = [threading.Event() for _ in range(4)]

        def busy(i):
            with Client(srv.port) as c:
                while not stop:
                    c.send(b"set t%d 0 0 1\r\nx\r\nget t%d\r\n" % (i, i))
                    c.read_line()
                    c.read_value_reply()
                    connected[i].set()

        threads = [threading.Thread(target=busy, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        # every busy client has been served once, so all are connected
        # (under a loaded machine they may start late)
        for e in connected:
            e.wait(timeout=30)
        with Client(srv.port) as c:
            ok = True
            for _ in range(20):
                c.send(b"stats conns\r\n")
                r = c.read_until(b"END\r\n")
                ok = ok and r.count(b":state ") >= 5
        stop.append(1)
        for t in threads:
            t.join()
        res.check(ok, "stats conns lists every worker's connections")
        res.eq(srv.stop(), 0, "exit 0")
        err = srv.stderr_text()
        res.check(re.search(r"<\d+ get t\d", err) is not None,
                  "-vv logs each command")


def t_idle_timeout(res):
    with harness.corrald(["-t", "1", "--idle-timeout", "1"]) as srv:
        with Client(srv.port) as c:
            c.request(b"version\r\n")
            res.eq(c.read_eof(timeout=10), b"",
                   "an idle connection is closed after --idle-timeout")
        res.eq(srv.stop(), 0, "exit 0")


def t_memlimit(res):
    """cache_memlimit changes the limit at run time: reported by both
    stats, and a lower one evicts down to it."""
    def stat(c, which, name):
        c.send(which)
        m = re.search(rb"STAT %s (\d+)" % name, c.read_until(b"END\r\n"))
        return int(m.group(1)) if m else -1

    with harness.corrald(["-t", "1", "-m", "64"]) as srv, \
            Client(srv.port) as c:
        value = b"v" * 1000
        for i in range(40000):
            c.send(b"set m%d 0 0 %d noreply\r\n%s\r\n" % (i, len(value),
                                                            value))
        res.eq(c.request(b"mn\r\n"), b"MN\r\n", "memlimit: filled")
        before = stat(c, b"stats\r\n", b"bytes")
        res.check(before > 32 << 20, "memlimit: over 32 MiB stored",
                  str(before))
        res.eq(c.request(b"cache_memlimit 32\r\n"), b"OK\r\n",
               "cache_memlimit 32")
        res.eq(stat(c, b"stats settings\r\n", b"maxbytes"), 32 << 20,
               "memlimit: stats settings maxbytes")
        res.eq(stat(c, b"stats\r\n", b"limit_maxbytes"), 32 << 20,
               "memlimit: stats limit_maxbytes")
        res.check(0 < stat(c, b"stats\r\n", b"bytes") <= 32 << 20,
                  "memlimit: evicted down to the new limit")
        res.check(stat(c, b"stats\r\n", b"evictions") > 0,
                  "memlimit: by evictions")
        res.eq(c.request(b"cache_memlimit 7\r\n"),
               b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n",
               "cache_memlimit below 8")
        # -I 1m with the shards picked for 64 MiB: 8 MiB leaves a shard
        # less than two items
        res.eq(c.request(b"cache_memlimit 8\r\n"),
               b"MEMLIMIT_ADJUST_FAILED out of bounds or unable to "
               b"adjust\r\n", "cache_memlimit the engine refuses")
        res.eq(c.request(b"cache_memlimit 128 noreply\r\nmn\r\n"),
               b"MN\r\n", "cache_memlimit noreply")
        res.eq(stat(c, b"stats\r\n", b"limit_maxbytes"), 128 << 20,
               "memlimit: raised again")


def main():
    res = harness.Results("classic")
    harness.overall_deadline(400)
    with harness.corrald(["-t", "2", "-I", "2m", "-m", "64"]) as srv:
        for t in (t_storage, t_noreply, t_arith_touch_delete, t_misc,
                  t_stats, t_stats_names, t_pipeline, t_byte_by_byte, t_big_values,
                  t_multiget, t_backpressure):
            res.run(t, srv.port)
        res.eq(srv.stop(), 0, "corrald exits 0 on SIGTERM")
        err = srv.stderr_text()
        res.check("ERROR: AddressSanitizer" not in err and
                  "WARNING: ThreadSanitizer" not in err,
                  "no sanitizer report", err[-2000:])
    for t in (t_conn_limit, t_sigterm_drain, t_sigint_and_shutdown,
              t_options, t_environment, t_threads_and_logging,
              t_idle_timeout, t_memlimit):
        res.run(t)
    res.finish()


if __name__ == "__main__":
    main()
