#!/usr/bin/env python3
"""test_clients.py - real memcached clients, unchanged, against corrald:
pymemcache (python3-pymemcache) and pylibmc (python3-pylibmc, on
libmemcached).  Each runs set, get, get_many, gets, cas, incr, decr,
touch, delete, flush_all and stats.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def test_pymemcache(res, port):
    from pymemcache.client.base import Client

    c = Client(("127.0.0.1", port), default_noreply=False,
               connect_timeout=5 * harness.SLOW,
               timeout=10 * harness.SLOW)
    res.check(c.set("pm:a", b"alpha"), "pymemcache set")
    res.eq(c.get("pm:a"), b"alpha", "pymemcache get")
    res.eq(c.get("pm:missing"), None, "pymemcache get miss")
    c.set_many({"pm:b": b"beta", "pm:c": b"gamma"})
    res.eq(c.get_many(["pm:a", "pm:b", "pm:c", "pm:nope"]),
           {"pm:a": b"alpha", "pm:b": b"beta", "pm:c": b"gamma"},
           "pymemcache get_many")
    value, cas = c.gets("pm:a")
    res.eq(value, b"alpha", "pymemcache gets value")
    res.check(cas is not None and int(cas) > 0, "pymemcache gets cas")
    res.eq(c.cas("pm:a", b"alpha2", cas), True, "pymemcache cas match")
    res.eq(c.cas("pm:a", b"alpha3", cas), False, "pymemcache cas stale")
    res.eq(c.get("pm:a"), b"alpha2", "pymemcache value after cas")
    c.set("pm:n", b"10")
    res.eq(c.incr("pm:n", 5), 15, "pymemcache incr")
    res.eq(c.decr("pm:n", 20), 0, "pymemcache decr stops at 0")
    res.eq(c.incr("pm:none", 1), None, "pymemcache incr miss")
    res.eq(c.touch("pm:a", 100), True, "pymemcache touch hit")
    res.eq(c.touch("pm:nope", 100), False, "pymemcache touch miss")
    res.eq(c.add("pm:a", b"x"), False, "pymemcache add existing")
    res.eq(c.replace("pm:zz", b"x"), False, "pymemcache replace missing")
    res.eq(c.append("pm:a", b"!"), True, "pymemcache append")
    res.eq(c.prepend("pm:a", b"<"), True, "pymemcache prepend")
    res.eq(c.get("pm:a"), b"<alpha2!", "pymemcache after append/prepend")
    res.eq(c.delete("pm:a"), True, "pymemcache delete")
    res.eq(c.get("pm:a"), None, "pymemcache get after delete")
    big = os.urandom(200 * 1024)
    c.set("pm:big", big)
    res.eq(c.get("pm:big"), big, "pymemcache 200 KB binary value")
    st = c.stats()
    res.check(b"curr_items" in st or "curr_items" in st,
              "pymemcache stats has curr_items")
    res.check(c.flush_all(), "pymemcache flush_all")
    res.eq(c.get("pm:b"), None, "pymemcache get after flush_all")
    res.check(c.version().startswith(b"1.6"), "pymemcache version")
    c.close()


def test_pylibmc(res, port):
    import pylibmc

    c = pylibmc.Client(["127.0.0.1:%d" % port], binary=False,
                       behaviors={"cas": True, "tcp_nodelay": True,
                                  "connect_timeout": int(5000 *
                                                         harness.SLOW)})
    res.check(c.set("pl:a", "alpha"), "pylibmc set")
    res.eq(c.get("pl:a"), "alpha", "pylibmc get")
    res.eq(c.get("pl:missing"), None, "pylibmc get miss")
    c.set_multi({"pl:b": "beta", "pl:c": 42})
    res.eq(c.get_multi(["pl:a", "pl:b", "pl:c", "pl:nope"]),
           {"pl:a": "alpha", "pl:b": "beta", "pl:c": 42},
           "pylibmc get_multi (flags carry the type)")
    value, cas = c.gets("pl:a")
    res.eq(value, "alpha", "pylibmc gets value")
    res.check(cas is not None and cas > 0, "pylibmc gets cas")
    res.check(c.cas("pl:a", "alpha2", cas), "pylibmc cas match")
    res.check(not c.cas("pl:a", "alpha3", cas), "pylibmc cas stale")
    res.eq(c.get("pl:a"), "alpha2", "pylibmc value after cas")
    c.set("pl:n", "10")
    res.eq(c.incr("pl:n", 5), 15, "pylibmc incr")
    res.eq(c.decr("pl:n", 3), 12, "pylibmc decr")
    try:
        c.incr("pl:none", 1)
        res.check(False, "pylibmc incr miss raises NotFound")
    except pylibmc.NotFound:
        res.check(True, "pylibmc incr miss raises NotFound")
    res.check(c.touch("pl:a", 100), "pylibmc touch")
    res.check(c.delete("pl:a"), "pylibmc delete")
    res.eq(c.get("pl:a"), None, "pylibmc get after delete")
    st = c.get_stats()
    res.check(len(st) == 1 and b"curr_items" in st[0][1] or
              "curr_items" in st[0][1], "pylibmc stats")
    res.check(c.flush_all() is not False, "pylibmc flush_all")
    res.eq(c.get("pl:b"), None, "pylibmc get after flush_all")
    c.disconnect_all()


def main():
    res = harness.Results("clients")
    harness.overall_deadline(180)
    with harness.corrald(["-t", "2"]) as srv:
        for name, fn in (("pymemcache", test_pymemcache),
                         ("pylibmc", test_pylibmc)):
            try:
                __import__(name)
            except ImportError:
                res.check(False, "%s importable with %s" %
                          (name, sys.executable))
                continue
            res.run(fn, srv.port)
        res.eq(srv.stop(), 0, "corrald exits 0 on SIGTERM")
    res.finish()


if __name__ == "__main__":
    main()
