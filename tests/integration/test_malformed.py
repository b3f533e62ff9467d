#!/usr/bin/env python3
"""test_malformed.py - malformed requests of every kind, and what happens
to the bytes that follow them.

Each case is sent on a fresh connection to corrald and to a real
memcached 1.6, followed by a probe ("get probe") and a separator ("mn");
everything both answer up to the separator must match (harness.same).
The probe shows how the server resynchronised: a refused data block is
swallowed, a line refused before its data leaves the data to be read as
a command, and so on.  Then the limits that close a connection, and the
request size limit, which is corrald's own.
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Client  # noqa: E402

K251 = b"k" * 251
BIG = 2 * 1024 * 1024


def set_block(line, n, after=b""):
    """A storage command of n bytes of data: "<line> <n><after>"."""
    return line + b" %d" % n + after + b"\r\n" + b"v" * n + b"\r\n"


CASES = [
    ("unknown command", b"bogus\r\n"),
    ("empty line", b"\r\n"),
    ("spaces only", b"   \r\n"),
    ("upper case", b"GET probe\r\n"),
    ("bare LF line end", b"get probe\n"),
    ("tab inside a key", b"get a\tb\r\n"),
    ("leading spaces", b"   get probe\r\n"),
    ("get without key", b"get\r\n"),
    ("gets without key", b"gets\r\n"),
    ("key of 251 bytes", b"get " + K251 + b"\r\n"),
    ("long key after a good one", b"get probe " + K251 + b"\r\n"),
    ("gat without key", b"gat 10\r\n"),
    ("gat bad exptime", b"gat x probe\r\n"),
    ("set missing length", b"set a 0 0\r\nabc\r\n"),
    ("set extra token", b"set a 0 0 3 noreply extra\r\nabc\r\n"),
    ("set bad flags", b"set a x 0 3\r\nabc\r\n"),
    ("set flags over 32 bits", b"set a 4294967296 0 3\r\nabc\r\n"),
    ("set bad exptime", b"set a 0 x 3\r\nabc\r\n"),
    ("set bad length", b"set a 0 0 x\r\nabc\r\n"),
    ("set negative length", b"set a 0 0 -1\r\nabc\r\n"),
    ("set data too long", b"set a 0 0 3\r\nabcd\r\n"),
    ("set data too short", b"set a 0 0 3\r\nab\r\n\r\n"),
    ("set data LF only", b"set a 0 0 1\r\nx\n"),
    ("set key of 251 bytes", b"set " + K251 + b" 0 0 3\r\nabc\r\n"),
    ("set too large", b"set a 0 0 %d\r\n" % BIG + b"z" * BIG + b"\r\n"),
    ("set too large noreply", b"set a 0 0 %d noreply\r\n" % BIG +
     b"z" * BIG + b"\r\n"),
    ("too large drops the old value",
     b"set old 0 0 1\r\nx\r\nset old 0 0 %d\r\n" % BIG + b"z" * BIG +
     b"\r\nget old\r\n"),
    ("append too large keeps the old value",
     b"set old2 0 0 1\r\nx\r\nappend old2 0 0 %d\r\n" % BIG + b"z" * BIG +
     b"\r\nget old2\r\n"),
    # memcached's item limit counts its header, the key and the client
    # flags: with -I 1m and a 2-byte key, 1048515 bytes of value fit and
    # 1048516 do not (4 bytes fewer with flags)
    ("value at the item limit", set_block(b"set sz 0 0", 1048515) +
     b"mg sz s\r\n"),
    ("value one byte over the item limit", set_block(b"set sy 0 0", 1048516) +
     b"mg sy s\r\n"),
    ("value with flags at the item limit", set_block(b"set sx 1 0", 1048511) +
     b"mg sx s f\r\n"),
    ("value with flags over the item limit",
     set_block(b"set sw 1 0", 1048512) + b"mg sw s\r\n"),
    ("ms at the item limit", set_block(b"ms sv", 1048515, b" F0") +
     b"mg sv s\r\n"),
    ("ms over the item limit", set_block(b"ms su", 1048516) +
     b"mg su s\r\n"),
    # an append whose data fits but whose result would not: NOT_STORED,
    # and the old value stays
    ("append over the item limit keeps the old value",
     set_block(b"set ap 0 0", 1000000) + set_block(b"append ap 0 0", 100000) +
     set_block(b"prepend ap 0 0", 100000) + b"mg ap s\r\n"),
    ("ms MA over the item limit keeps the old value",
     set_block(b"set am 0 0", 1000000) + set_block(b"ms am", 100000, b" MA") +
     set_block(b"ms am", 100000, b" MP q") + b"mn\r\nmg am s\r\n"),
    ("cache_memlimit", b"cache_memlimit 100\r\n"),
    ("cache_memlimit below 8", b"cache_memlimit 7\r\n"),
    ("cache_memlimit 0", b"cache_memlimit 0\r\n"),
    ("cache_memlimit in bytes", b"cache_memlimit 2000000000\r\n"),
    ("cache_memlimit not a number", b"cache_memlimit x\r\n"),
    ("cache_memlimit negative", b"cache_memlimit -5\r\n"),
    ("cache_memlimit without a size", b"cache_memlimit\r\n"),
    ("cache_memlimit noreply", b"cache_memlimit 96 noreply\r\n"),
    ("cache_memlimit extra word", b"cache_memlimit 100 extra\r\n"),
    ("cache_memlimit too many", b"cache_memlimit 100 1 2\r\n"),
    ("cas without unique", b"cas a 0 0 1\r\nx\r\n"),
    ("cas bad unique", b"cas a 0 0 1 abc\r\nx\r\n"),
    ("incr without delta", b"incr a\r\n"),
    ("incr negative", b"incr a -1\r\n"),
    ("incr too many tokens", b"incr a 1 2 3\r\n"),
    ("incr delta over 64 bits", b"incr a 18446744073709551616\r\n"),
    ("delete with a time", b"delete a 1\r\n"),
    ("delete noreply extra", b"delete a noreply extra\r\n"),
    ("delete without key", b"delete\r\n"),
    ("touch without exptime", b"touch a\r\n"),
    ("touch bad exptime", b"touch a x\r\n"),
    ("flush_all bad delay", b"flush_all x\r\n"),
    ("flush_all too many", b"flush_all 1 2 3\r\n"),
    ("verbosity without level", b"verbosity\r\n"),
    ("verbosity bad level", b"verbosity x\r\n"),
    ("24 tokens", b"set " + b" ".join([b"a"] * 23) + b"\r\n"),
    ("many keys", b"get " + b" ".join(b"k%d" % i for i in range(40)) +
     b"\r\n"),
    ("binary junk", b"\x00\x01\x02\xff\r\n"),
    ("control characters", b"get a\x01b\r\n"),
    ("noreply on an error", b"incr nothere 1 noreply\r\n"),
    ("meta bad mode", b"ms a 1 MZ\r\nx\r\n"),
    ("meta data too long", b"ms a 1\r\nxy\r\n"),
    ("meta too large", b"ms a %d\r\n" % BIG + b"z" * BIG + b"\r\n"),
    ("meta bad base64", b"mg ### b v\r\n"),
    ("meta unknown", b"mx a\r\n"),
    ("stats detail bad", b"stats detail x\r\n"),
]


def differential(res, cd_port, mc_port):
    for name, payload in CASES:
        req = payload + b"get probe\r\n"
        got = None
        want = None
        with Client(cd_port, timeout=30) as cd:
            got = harness.exchange(cd, req)
        with Client(mc_port, timeout=30) as mc:
            want = harness.exchange(mc, req)
        res.check(harness.same(got, want), "malformed: %s (as memcached)" %
                  name, "\n  corrald:   %r\n  memcached: %r" %
                  (got[:300], want[:300]))


def slow_swallow(res, port):
    """A refused value that arrives in pieces is swallowed as it comes."""
    with Client(port, timeout=30) as c:
        c.send(b"set slow 0 0 %d\r\n" % BIG)
        res.eq(c.read_line(), b"SERVER_ERROR object too large for cache\r\n",
               "too large: refused as soon as the line is read")
        for i in range(0, BIG, 256 * 1024):
            c.send(b"z" * 256 * 1024)
            time.sleep(0.01)
        c.send(b"\r\nget probe\r\n")
        res.eq(c.read_line(), b"END\r\n", "then the data is swallowed")


def closes(res, port):
    # memcached closes a connection whose line passes 2048 bytes without
    # a newline, unless it is a get or gets line.
    with Client(port) as c:
        c.send(b"set " + b"x" * 3000)
        res.eq(c.read_eof(), b"", "unterminated 3000-byte line closes")
    with Client(port) as c:
        c.send(b"get " + b" ".join(b"k%d" % i for i in range(1000)))
        time.sleep(0.2)
        c.send(b"\r\n")
        res.eq(c.read_line(), b"END\r\n",
               "a get line longer than 2048 bytes is fine")
    with Client(port) as c:
        c.send(b"get a\r\nset b 0 0 1\r\nx\r\nset " + b"y" * 3000)
        r = c.read_eof()
        res.eq(r, b"END\r\nSTORED\r\n",
               "replies before the overlong line are sent, then close")


def request_limit(res):
    """corrald's own bound: --max-request-size."""
    with harness.corrald(["-t", "1", "-I", "16k",
                          "--max-request-size", "128k"]) as srv:
        with Client(srv.port) as c:
            keys = b" ".join(b"key%06d" % i for i in range(20000))
            c.send(b"get " + keys)
            r = c.read_eof(timeout=10)
            res.eq(r, b"SERVER_ERROR request too large\r\n",
                   "a get line over --max-request-size: error, then close")
        with Client(srv.port) as c:
            keys = b" ".join(b"key%06d" % i for i in range(10000))
            c.send(b"get " + keys + b"\r\n")
            res.eq(c.read_line(), b"END\r\n",
                   "a 100 KB get line under the limit is served")
            v = b"v" * 16000
            res.eq(c.request(b"set v 0 0 %d\r\n" % len(v) + v + b"\r\n"),
                   b"STORED\r\n", "a value near -I fits the request limit")
        res.eq(srv.stop(), 0, "exit 0")


def abrupt(res, port):
    """Clients that vanish mid-request leave the server healthy."""
    for payload in (b"set a 0 0 10\r\nabc", b"get a b c", b"mg a v",
                    b"set a 0 0 5000000\r\n" + b"z" * 1000):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(payload)
        s.close()
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                 b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.sendall(b"get a\r\n" * 1000)
    s.close()   # reset, replies unread
    with Client(port) as c:
        res.eq(c.request(b"version\r\n")[:8], b"VERSION ",
               "still serving after abrupt clients")


def main():
    res = harness.Results("malformed")
    harness.overall_deadline(300)
    with harness.corrald(["-t", "2"]) as cd:
        if harness.have_memcached():
            with harness.memcached(["-t", "2"]) as mc:
                res.run(differential, cd.port, mc.port)
        else:
            res.check(False, "memcached installed for the comparison")
        res.run(slow_swallow, cd.port)
        res.run(closes, cd.port)
        res.run(abrupt, cd.port)
        res.eq(cd.stop(), 0, "corrald exits 0 on SIGTERM")
    res.run(request_limit)
    res.finish()


if __name__ == "__main__":
    main()
