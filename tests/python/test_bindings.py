"""test_bindings.py - the corral Python package against the in-tree engine.

Run by tests/python/bindings.sh (make check) with PYTHONPATH pointing at
the extension built in the build directory, together with test_near.py
(corral.NearCache against a corrald from the build tree).  Standard
library only.  The last line is "RESULT: <passed> passed, <failed>
failed"; the exit status is nonzero when anything failed.  A watchdog dumps every thread's stack
and exits if the run hangs (a deadlock would otherwise stall make check).
"""

import array
import contextlib
import faulthandler
import io
import gc
import os
import pickle
import sys
import threading
import time
import tracemalloc
import unittest
import weakref

import corral

WATCHDOG_S = 240
TOP_SRCDIR = os.environ.get(
    "top_srcdir",
    os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_threads(n, target, timeout=30.0):
    """Start n threads running target(i), join them; return exceptions."""
    errors = []

    def wrap(i):
        try:
            target(i)
        except BaseException as e:  # noqa: B902 - reported to the test
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            raise AssertionError("a thread did not finish in %.0f s" % timeout)
    return errors


def wait_until(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


class CacheTest(unittest.TestCase):
    """A fresh 16 MiB cache per test, closed afterwards."""

    options = {}

    def setUp(self):
        self.cache = corral.Cache(16 << 20, **self.options)

    def tearDown(self):
        self.cache.close()


class TestBasics(CacheTest):
    def test_set_get(self):
        c = self.cache
        self.assertIsNone(c.set("a", b"1"))
        self.assertEqual(c.get("a"), b"1")
        self.assertEqual(c.get(b"a"), b"1")  # str keys are their UTF-8
        self.assertIsNone(c.get("missing"))
        self.assertEqual(c.get("missing", b"dflt"), b"dflt")
        self.assertEqual(c.get(key="a"), b"1")

    def test_key_kinds(self):
        c = self.cache
        c.set("clé", b"utf8")
        self.assertEqual(c.get("clé".encode()), b"utf8")
        c.set(bytearray(b"ba"), b"x")
        self.assertEqual(c.get(memoryview(b"ba")), b"x")
        c.set(b"\x00\xff", b"bin")
        self.assertEqual(c.get(b"\x00\xff"), b"bin")
        c.set("k" * 250, b"max")
        self.assertEqual(c.get("k" * 250), b"max")

    def test_bad_keys(self):
        c = self.cache
        for key in ("", b"", "k" * 251, b"k" * 251):
            with self.assertRaises(corral.InvalidArgument) as cm:
                c.set(key, b"v")
            self.assertIsInstance(cm.exception, ValueError)
            self.assertIn("1 to 250 bytes", str(cm.exception))
        with self.assertRaises(TypeError):
            c.get(42)
        with self.assertRaises(TypeError):
            c.get(None)

    def test_value_kinds(self):
        c = self.cache
        c.set("ba", bytearray(b"bytearray"))
        c.set("mv", memoryview(b"xmemoryview")[1:])
        c.set("arr", array.array("B", [1, 2, 3]))
        c.set("empty", b"")
        self.assertEqual(c.get("ba"), b"bytearray")
        self.assertEqual(c.get("mv"), b"memoryview")
        self.assertEqual(c.get("arr"), b"\x01\x02\x03")
        self.assertEqual(c.get("empty"), b"")
        with self.assertRaises(TypeError) as cm:
            c.set("s", "text")
        self.assertIn("not str", str(cm.exception))
        with self.assertRaises(TypeError):
            c.set("n", 5)

    def test_mapping_protocol(self):
        c = self.cache
        c["x"] = b"1"
        self.assertEqual(c["x"], b"1")
        self.assertIn("x", c)
        self.assertNotIn("y", c)
        self.assertEqual(len(c), 1)
        with self.assertRaises(KeyError) as cm:
            c["y"]
        self.assertIsInstance(cm.exception, corral.NotFound)
        self.assertEqual(cm.exception.args, ("y",))
        del c["x"]
        self.assertNotIn("x", c)
        with self.assertRaises(corral.NotFound):
            del c["x"]
        self.assertEqual(len(c), 0)

    def test_large_values(self):
        c = self.cache
        big = os.urandom(512 << 10)  # copied with the GIL released
        c.set("big", big)
        self.assertEqual(c.get("big"), big)
        with self.assertRaises(corral.TooLarge) as cm:
            c.set("huge", b"x" * (2 << 20))
        self.assertIsInstance(cm.exception, ValueError)
        self.assertIn("maximum item size", str(cm.exception))
        self.assertEqual(cm.exception.status, -5)

    def test_ttl(self):
        c = self.cache
        c.set("forever", b"v")
        c.set("later", b"v", ttl=300)
        c.set("gone", b"v", ttl=-1)
        self.assertEqual(c.ttl("forever"), -1)
        self.assertTrue(295 <= c.ttl("later") <= 300)
        self.assertIsNone(c.ttl("gone"))
        self.assertIsNone(c.get("gone"))
        c.set("abs", b"v", ttl=int(time.time()) + 1000)  # absolute time
        self.assertTrue(990 <= c.ttl("abs") <= 1000)
        c.set("past", b"v", ttl=int(time.time()) - 1000)
        self.assertIsNone(c.get("past"))
        with self.assertRaises(TypeError):
            c.set("f", b"v", ttl=1.5)

    def test_touch(self):
        c = self.cache
        c.set("t", b"v")
        self.assertTrue(c.touch("t", 100))
        self.assertTrue(95 <= c.ttl("t") <= 100)
        self.assertTrue(c.touch("t", -1))
        self.assertIsNone(c.get("t"))
        self.assertFalse(c.touch("t", 100))

    def test_flags(self):
        c = self.cache
        c.set("f", b"v", flags=0xFFFFFFFF)
        with c.get_view("f") as v:
            self.assertEqual(v.flags, 0xFFFFFFFF)
        with self.assertRaises(ValueError):
            c.set("f", b"v", flags=1 << 32)
        with self.assertRaises(ValueError):
            c.set("f", b"v", flags=-1)

    def test_add_replace_append_prepend(self):
        c = self.cache
        self.assertTrue(c.add("k", b"1"))
        self.assertFalse(c.add("k", b"2"))
        self.assertEqual(c.get("k"), b"1")
        self.assertTrue(c.replace("k", b"3"))
        self.assertFalse(c.replace("nope", b"3"))
        self.assertIsNone(c.get("nope"))
        self.assertTrue(c.append("k", b"4"))
        self.assertTrue(c.prepend("k", b"2"))
        self.assertEqual(c.get("k"), b"234")
        self.assertFalse(c.append("nope", b"x"))
        self.assertFalse(c.prepend("nope", b"x"))

    def test_gets_cas(self):
        c = self.cache
        self.assertIsNone(c.gets("k"))
        self.assertEqual(c.gets("k", "d"), "d")
        c.set("k", b"1")
        value, cas = c.gets("k")
        self.assertEqual(value, b"1")
        self.assertTrue(c.cas("k", b"2", cas))
        self.assertFalse(c.cas("k", b"3", cas))  # changed since
        self.assertEqual(c.get("k"), b"2")
        self.assertIsNone(c.cas("absent", b"x", cas))
        with self.assertRaises(corral.InvalidArgument):
            c.cas("k", b"x", 0)

    def test_incr_decr(self):
        c = self.cache
        c.set("n", b"10")
        self.assertEqual(c.incr("n"), 11)
        self.assertEqual(c.incr("n", 9), 20)
        self.assertEqual(c.decr("n", 5), 15)
        self.assertEqual(c.decr("n", 100), 0)  # stops at 0
        self.assertEqual(int(c.get("n")), 0)  # memcached may pad: b"0 "
        c.set("max", str(2 ** 64 - 1).encode())
        self.assertEqual(c.incr("max"), 0)  # wraps
        with self.assertRaises(corral.NotFound):
            c.incr("absent")
        self.assertEqual(c.incr("fresh", 5, initial=100), 100)
        self.assertEqual(c.incr("fresh", 5, initial=100), 105)
        self.assertEqual(c.decr("fresh2", initial=7, ttl=50), 7)
        self.assertTrue(45 <= c.ttl("fresh2") <= 50)
        c.set("text", b"abc")
        with self.assertRaises(corral.NonNumeric) as cm:
            c.incr("text")
        self.assertIsInstance(cm.exception, ValueError)
        with self.assertRaises(ValueError):
            c.incr("n", -1)

    def test_delete(self):
        c = self.cache
        c.set("d", b"v")
        self.assertTrue(c.delete("d"))
        self.assertFalse(c.delete("d"))

    def test_many(self):
        c = self.cache
        self.assertIsNone(c.set_many({"a": b"1", b"b": b"2"}, ttl=100))
        c.set_many([("c", b"3"), ("d", bytearray(b"4"))], tags=["many"])
        got = c.get_many(["a", b"b", "c", "d", "zz"])
        self.assertEqual(got, {"a": b"1", b"b": b"2", "c": b"3", "d": b"4"})
        keys = ["k%d" % i for i in range(200)]  # GIL released for >= 64
        c.set_many((k, k.encode()) for k in keys)
        got = c.get_many(keys)
        self.assertEqual(len(got), 200)
        self.assertEqual(got["k7"], b"k7")
        self.assertEqual(c.get_many([]), {})
        self.assertEqual(c.get_many([bytearray(b"c")]), {b"c": b"3"})
        c.invalidate_tag("many")
        self.assertEqual(c.get_many(["c", "d"]), {})
        self.assertEqual(c.delete_many(["a", "b", "nope"]), 2)
        with self.assertRaises(TypeError):
            c.get_many("abc")  # one key, not an iterable of keys
        with self.assertRaises(corral.InvalidArgument):
            c.get_many(["ok", ""])
        with self.assertRaises(TypeError):
            c.set_many([("a", b"1", b"extra")])
        with self.assertRaises(corral.TooLarge):
            c.set_many({"x": b"1", "y": b"x" * (2 << 20)})
        self.assertEqual(c.get("x"), b"1")  # stored before the error

    def test_tags(self):
        c = self.cache
        c.set("u1", b"a", tags=["users", "team:1"])
        c.set("u2", b"b", tags="users")  # one tag as a str
        c.set("t1", b"c", tags=("team:1",))
        c.set("other", b"d")
        with c.get_view("u1") as v:
            self.assertEqual(v.tags, ("users", "team:1"))
        c.invalidate_tag("users")
        self.assertIsNone(c.get("u1"))
        self.assertIsNone(c.get("u2"))
        self.assertEqual(c.get("t1"), b"c")
        c.set("u3", b"e", tags=["users"])  # stored after: live
        self.assertEqual(c.get("u3"), b"e")
        c.invalidate_tag(b"team:1")
        self.assertIsNone(c.get("t1"))
        self.assertEqual(c.get("other"), b"d")
        with self.assertRaises(corral.InvalidArgument):
            c.set("x", b"v", tags=["t%d" % i for i in range(9)])
        for bad in ("", "a\x00b", "t" * 251):
            with self.assertRaises(corral.InvalidArgument):
                c.set("x", b"v", tags=[bad])
        with self.assertRaises(TypeError):
            c.set("x", b"v", tags=5)
        with self.assertRaises(TypeError):
            c.set("x", b"v", tags=[5])
        with self.assertRaises(corral.InvalidArgument):
            c.invalidate_tag("")

    def test_invalidate_prefix(self):
        c = self.cache
        for i in range(50):
            c.set("user:%d" % i, b"v")
        c.set("group:1", b"v")
        c.invalidate_prefix("user:")
        self.assertEqual(c.get_many("user:%d" % i for i in range(50)), {})
        self.assertEqual(c.get("group:1"), b"v")
        c.set("user:1", b"new")
        self.assertEqual(c.get("user:1"), b"new")
        with self.assertRaises(corral.InvalidArgument):
            c.invalidate_prefix("")

    def test_flush_and_sweep(self):
        c = self.cache
        for i in range(100):
            c.set("k%d" % i, b"v")
        c.flush()
        self.assertIsNone(c.get("k1"))
        c.set("after", b"v")
        self.assertEqual(c.get("after"), b"v")
        self.assertGreaterEqual(c.sweep(10000), 1)
        c.flush(delay=3600)  # a pending flush keeps items for now
        self.assertEqual(c.get("after"), b"v")

    def test_stats_config(self):
        c = self.cache
        c.set("a", b"v")
        c.get("a")
        c.get("b")
        s = c.stats()
        for name in ("curr_items", "get_hits", "get_misses", "bytes",
                     "evictions", "loads", "stampedes_absorbed",
                     "tag_invalidations", "write_queue"):
            self.assertIn(name, s)
        self.assertEqual(s["curr_items"], 1)
        self.assertGreaterEqual(s["get_hits"], 1)
        self.assertGreaterEqual(s["get_misses"], 1)
        c.reset_stats()
        self.assertEqual(c.stats()["get_hits"], 0)
        self.assertEqual(c.stats()["curr_items"], 1)
        cfg = c.config
        self.assertEqual(cfg["max_memory"], 16 << 20)
        self.assertEqual(cfg["max_item_size"], 1 << 20)
        self.assertGreaterEqual(cfg["shards"], 1)
        self.assertIn("items", repr(c))

    def test_set_max_memory(self):
        c = corral.Cache(32 << 20, max_item_size=64 << 10)
        try:
            for i in range(20000):
                c.set("m%d" % i, b"v" * 1000)
            self.assertGreater(c.stats()["bytes"], 16 << 20)
            c.set_max_memory(16 << 20)
            self.assertEqual(c.config["max_memory"], 16 << 20)
            self.assertLessEqual(c.stats()["mem_used"], 16 << 20)
            self.assertGreater(c.stats()["evictions"], 0)
            with self.assertRaises(corral.InvalidArgument):
                c.set_max_memory(1000)
            with self.assertRaises(ValueError):
                c.set_max_memory(-1)
            c.set_max_memory(64 << 20)
            self.assertEqual(c.stats()["limit_maxbytes"], 64 << 20)
        finally:
            c.close()

    def test_eviction_bounds_memory(self):
        c = corral.Cache(1 << 20)  # the minimum
        try:
            for i in range(2000):
                c.set("k%d" % i, b"x" * 4000)
            s = c.stats()
            self.assertGreater(s["evictions"], 0)
            self.assertLessEqual(s["mem_used"], 1 << 20)
            self.assertEqual(c.config["max_item_size"], 512 << 10)
        finally:
            c.close()

    def test_bad_config(self):
        with self.assertRaises(corral.InvalidArgument):
            corral.Cache(1000)
        with self.assertRaises(corral.InvalidArgument):
            corral.Cache(16 << 20, shards=3)
        with self.assertRaises(TypeError):
            corral.Cache(16 << 20, bogus=1)
        with self.assertRaises(ValueError):
            corral.Cache(16 << 20, backoff_min=-1)
        with self.assertRaises(corral.InvalidArgument):
            corral.Cache(16 << 20, event_ring=8)
        c = corral.Cache(16 << 20, shards=1, max_items=10)
        try:
            self.assertEqual(c.config["shards"], 1)
            for i in range(100):
                c.set("k%d" % i, b"v")
            self.assertLessEqual(len(c), 10)
        finally:
            c.close()
        c = corral.Cache(16 << 20, shards=4)
        self.assertEqual(c.config["shards"], 4)
        c.close()

    def test_argument_errors(self):
        c = self.cache
        with self.assertRaises(TypeError):
            c.set("k")
        with self.assertRaises(TypeError):
            c.set("k", b"v", 0, 0, (), "extra")
        with self.assertRaises(TypeError):
            c.set("k", b"v", nonsense=1)
        with self.assertRaises(TypeError):
            c.set("k", b"v", 5, ttl=5)
        with self.assertRaises(TypeError):
            c.get()
        # out-of-range numbers are ValueErrors, not OverflowErrors
        with self.assertRaises(ValueError):
            c.set("k", b"v", ttl=2 ** 63)
        with self.assertRaises(ValueError):
            c.set("k", b"v", flags=2 ** 32)
        with self.assertRaises(ValueError):
            c.touch("k", -2 ** 64)

    def test_exception_hierarchy(self):
        expect = {
            "NotFound": (-1, KeyError), "Exists": (-2, None),
            "NotStored": (-3, None), "OutOfMemory": (-4, MemoryError),
            "TooLarge": (-5, ValueError), "InvalidArgument": (-6, ValueError),
            "NonNumeric": (-7, ValueError), "Timeout": (-9, TimeoutError),
            "Stale": (-10, None), "Busy": (-11, None),
            "LoadError": (-12, None), "WriteError": (-12, None),
        }
        for name, (status, base) in expect.items():
            cls = getattr(corral, name)
            self.assertTrue(issubclass(cls, corral.Error), name)
            self.assertEqual(cls.status, status, name)
            if base is not None:
                self.assertTrue(issubclass(cls, base), name)
        self.assertTrue(issubclass(corral.Closed, ValueError))


class TestValue(CacheTest):
    def test_zero_copy_view(self):
        c = self.cache
        c.set("k", b"hello", flags=7)
        v = c.get_view("k")
        self.assertIsInstance(v, corral.Value)
        self.assertEqual(len(v), 5)
        self.assertEqual(bytes(v), b"hello")
        self.assertEqual(v.tobytes(), b"hello")
        self.assertEqual(v.key, b"k")
        self.assertEqual(v.flags, 7)
        self.assertEqual(v.cas, c.gets("k")[1])
        m = memoryview(v)
        self.assertTrue(m.readonly)
        self.assertEqual(m[1:3].tobytes(), b"el")
        with self.assertRaises(TypeError):
            m[0] = 0
        # the pinned bytes survive an overwrite and a delete
        c.set("k", b"world")
        c.delete("k")
        self.assertEqual(m.tobytes(), b"hello")
        with self.assertRaises(BufferError):
            v.release()  # a memoryview still exports it
        m.release()
        v.release()
        self.assertTrue(v.released)
        with self.assertRaises(ValueError):
            bytes(v)
        with self.assertRaises(ValueError):
            len(v)
        v.release()  # twice is harmless
        self.assertIsNone(c.get_view("k"))
        self.assertEqual(c.get_view("k", 0), 0)

    def test_view_outlives_cache(self):
        c = corral.Cache(2 << 20)
        c.set("k", b"x" * 1000)
        v = c.get_view("k")
        c.close()
        self.assertEqual(bytes(v), b"x" * 1000)
        v.release()


class TestFetch(CacheTest):
    options = {"backoff_min": 0.05, "backoff_max": 0.2}

    def test_hit_and_miss(self):
        c = self.cache
        calls = []

        def loader():
            calls.append(1)
            return b"loaded"

        self.assertEqual(c.fetch("k", loader, ttl=100), b"loaded")
        self.assertEqual(c.fetch("k", loader, ttl=100), b"loaded")
        self.assertEqual(len(calls), 1)
        self.assertEqual(c.get("k"), b"loaded")
        self.assertTrue(95 <= c.ttl("k") <= 100)
        c.set("k2", b"present")
        self.assertEqual(c.fetch("k2", loader), b"present")
        self.assertEqual(len(calls), 1)
        self.assertEqual(c.fetch("k3", lambda: bytearray(b"ba")), b"ba")

    def test_single_flight_hammer(self):
        """Threads hammering one missing key: the loader runs once."""
        c = self.cache
        calls = []
        results = []
        gate = threading.Event()

        def loader():
            calls.append(threading.get_ident())
            gate.wait(5)  # hold the load until every thread asked
            return b"the value"

        def worker(i):
            results.append(c.fetch("hot", loader, ttl=60))
            for _ in range(200):
                results.append(c.fetch("hot", loader, ttl=60))

        def release_gate():
            wait_until(lambda: c.stats()["load_waits"] >= 15, 5)
            gate.set()

        opener = threading.Thread(target=release_gate)
        opener.start()
        errors = run_threads(16, worker)
        opener.join()
        self.assertEqual(errors, [])
        self.assertEqual(len(calls), 1)
        self.assertEqual(len(results), 16 * 201)
        self.assertEqual(set(results), {b"the value"})
        s = c.stats()
        self.assertEqual(s["loads"], 1)
        self.assertGreaterEqual(s["stampedes_absorbed"], 1)

    def test_loader_exception_reaches_every_waiter(self):
        c = self.cache
        calls = []
        gate = threading.Event()
        boom = ValueError("backend down")
        caught = []

        def loader():
            calls.append(1)
            gate.wait(5)
            raise boom

        def worker(i):
            try:
                c.fetch("bad", loader)
            except corral.LoadError as e:
                caught.append(e)

        def release_gate():
            wait_until(lambda: c.stats()["load_waits"] >= 7, 5)
            gate.set()

        opener = threading.Thread(target=release_gate)
        opener.start()
        errors = run_threads(8, worker)
        opener.join()
        self.assertEqual(errors, [])
        self.assertEqual(len(calls), 1)
        self.assertEqual(len(caught), 8)
        for e in caught:
            self.assertIs(e.exception, boom)
            self.assertIs(e.__cause__, boom)
            self.assertEqual(e.key, "bad")
            self.assertIn("backend down", str(e))
            self.assertEqual(e.status, -12)
        # within the error window the error is answered without loading
        with self.assertRaises(corral.LoadError) as cm:
            c.fetch("bad", loader, error_ttl=5)
        self.assertIs(cm.exception.exception, boom)
        self.assertEqual(len(calls), 1)
        self.assertGreaterEqual(c.stats()["error_hits"], 1)

    def test_loader_retried_after_backoff(self):
        c = self.cache
        attempts = []

        def flaky():
            attempts.append(1)
            if len(attempts) == 1:
                raise OSError("first try fails")
            return b"second"

        with self.assertRaises(corral.LoadError):
            c.fetch("f", flaky, error_ttl=0.05)

        def loaded():
            try:
                return c.fetch("f", flaky, error_ttl=0.05) == b"second"
            except corral.LoadError:
                return False  # still backing off

        self.assertTrue(wait_until(loaded, 3))
        self.assertEqual(c.get("f"), b"second")
        self.assertEqual(len(attempts), 2)

    def test_base_exception_is_not_wrapped(self):
        class Stop(BaseException):
            pass

        def loader():
            raise Stop()

        with self.assertRaises(Stop):
            self.cache.fetch("s", loader)

    def test_negative_caching(self):
        c = self.cache
        calls = []

        def loader():
            calls.append(1)
            return corral.ABSENT

        self.assertIsNone(c.fetch("none", loader, ttl=60))
        self.assertEqual(c.fetch("none", loader, ttl=60, default=b"d"), b"d")
        self.assertEqual(len(calls), 1)
        self.assertNotIn("none", c)
        self.assertGreaterEqual(c.stats()["negative_hits"], 1)
        self.assertIsNone(c.fetch("gone", lambda: corral.Absent(ttl=-1)))
        self.assertEqual(c.fetch("gone", lambda: b"now"), b"now")
        self.assertEqual(repr(corral.ABSENT), "corral.ABSENT")

    def test_loaded_settings(self):
        c = self.cache
        r = c.fetch("l", lambda: corral.Loaded(b"v", ttl=50, flags=9,
                                                tags=["lt"]), ttl=1000)
        self.assertEqual(r, b"v")
        self.assertTrue(45 <= c.ttl("l") <= 50)
        with c.get_view("l") as v:
            self.assertEqual(v.flags, 9)
            self.assertEqual(v.tags, ("lt",))
        c.fetch("m", lambda: b"w", tags=["ft"], flags=3)
        with c.get_view("m") as v:
            self.assertEqual((v.flags, v.tags), (3, ("ft",)))
        c.invalidate_tag("ft")
        self.assertIsNone(c.get("m"))
        self.assertIn("Loaded", repr(corral.Loaded(b"v", ttl=1)))

    def test_bad_loader_results(self):
        c = self.cache
        for bad in (None, "text", 42):
            with self.assertRaises(corral.LoadError) as cm:
                c.fetch("bad%r" % (bad,), lambda: bad)
            self.assertIsInstance(cm.exception.exception, TypeError)
        with self.assertRaises(corral.LoadError) as cm:
            c.fetch("badtags", lambda: corral.Loaded(b"v", tags=[""]))
        self.assertIsInstance(cm.exception.exception, ValueError)
        with self.assertRaises(corral.TooLarge):
            c.fetch("big", lambda: b"x" * (2 << 20))
        with self.assertRaises(TypeError):
            c.fetch("k", "not callable")
        with self.assertRaises(corral.InvalidArgument):
            c.fetch("k", lambda: b"v", tags=[""])
        with self.assertRaises(ValueError):
            c.fetch("k", lambda: b"v", beta=0)

    def test_wait_timeout_and_gil(self):
        """A waiter gives up after `wait`; waiting releases the GIL."""
        c = self.cache
        started = threading.Event()
        gate = threading.Event()

        def slow():
            started.set()
            gate.wait(5)
            return b"slow"

        leader = threading.Thread(target=lambda: c.fetch("slow", slow))
        leader.start()
        self.assertTrue(started.wait(5))
        with self.assertRaises(corral.Timeout) as cm:
            c.fetch("slow", slow, wait=0.05)
        self.assertIsInstance(cm.exception, TimeoutError)
        with self.assertRaises(corral.Timeout):
            c.fetch("slow", slow, wait=0)
        # a waiter blocks in C without the GIL: this thread runs Python
        # meanwhile (were the GIL held, the lines below could not run and
        # the gate would never open)
        waiter_done = threading.Event()
        got = []

        def waiter():
            got.append(c.fetch("slow", slow, wait=10))
            waiter_done.set()

        w = threading.Thread(target=waiter)
        w.start()
        self.assertTrue(wait_until(lambda: c.stats()["load_waits"] >= 3, 5))
        self.assertFalse(waiter_done.is_set())
        gate.set()
        leader.join(5)
        w.join(5)
        self.assertEqual(got, [b"slow"])

    def test_circuit_breaker(self):
        c = corral.Cache(4 << 20, breaker_failures=3, breaker_open=30)
        try:
            def bad():
                raise RuntimeError("no")

            for i in range(3):
                with self.assertRaises(corral.LoadError):
                    c.fetch("k%d" % i, bad)
            with self.assertRaises(corral.Busy) as cm:
                c.fetch("another", lambda: b"v")
            self.assertIn("circuit breaker", str(cm.exception))
            self.assertEqual(c.get("another"), None)
            c.set("present", b"v")
            self.assertEqual(c.fetch("present", bad), b"v")  # hits still work
        finally:
            c.close()

    def test_lease_keeps_newer_write(self):
        c = self.cache

        def loader():
            c.set("lease", b"newer")  # a write while the load runs
            return b"older"

        self.assertEqual(c.fetch("lease", loader), b"older")
        self.assertEqual(c.get("lease"), b"newer")
        self.assertGreaterEqual(c.stats()["lease_rejects"], 1)

    def test_loader_may_use_the_cache(self):
        c = self.cache
        c.set("dep", b"base")

        def loader():
            return c.get("dep") + b"+" + c.fetch("inner", lambda: b"in")

        self.assertEqual(c.fetch("outer", loader), b"base+in")

    def test_stale_while_revalidate(self):
        c = self.cache
        c.fetch("inline", lambda: b"v1", ttl=1, stale_ttl=60)
        c.fetch("bg", lambda: b"v1", ttl=1, stale_ttl=60)
        time.sleep(2.05)  # past the fresh second, inside the stale window
        # inline: the first caller refreshes and gets the new value
        self.assertEqual(c.fetch("inline", lambda: b"v2", ttl=1,
                                 stale_ttl=60), b"v2")
        # background: the caller gets the stale value at once and a
        # refresh thread loads the new one
        ran = []

        def bg_loader():
            ran.append(threading.get_ident())
            return b"v2"

        self.assertEqual(c.fetch("bg", bg_loader, ttl=100, stale_ttl=60,
                                 background=True), b"v1")
        self.assertTrue(wait_until(lambda: c.get("bg") == b"v2", 5))
        self.assertEqual(len(ran), 1)
        self.assertNotEqual(ran[0], threading.get_ident())
        self.assertGreaterEqual(c.stats()["stale_served"], 1)

    def test_background_miss_loads_inline(self):
        c = self.cache
        self.assertEqual(c.fetch("bgm", lambda: b"v", background=True), b"v")
        with self.assertRaises(corral.LoadError):
            c.fetch("bge", lambda: 1 / 0, background=True)

    def test_background_loaders_are_not_kept(self):
        # A background fetch that hits does not keep its loader (and what
        # the loader holds) once it returns.
        c = self.cache
        c.set("hot", b"v")

        class Payload:
            pass

        refs = []
        for _ in range(2000):
            p = Payload()
            refs.append(weakref.ref(p))
            self.assertEqual(c.fetch("hot", lambda p=p: b"x",
                                     background=True), b"v")
            del p
        gc.collect()
        self.assertEqual(sum(r() is not None for r in refs), 0)

    def test_background_refresh_runs_its_own_callers_loader(self):
        # Two callers' background fetches of one stale key: the refresh
        # runs the loader, tags and ttl of the caller that queued it.
        c = self.cache
        c.fetch("bk", lambda: b"v0", ttl=1, stale_ttl=60)
        time.sleep(2.05)
        ran = []
        gate = threading.Event()

        def loader_a():
            ran.append("A")
            gate.wait(10)
            return b"from A"

        def loader_b():
            ran.append("B")
            return b"from B"

        self.assertEqual(c.fetch("bk", loader_a, ttl=61, stale_ttl=60,
                                 tags=["a-tag"], background=True), b"v0")
        self.assertEqual(c.fetch("bk", loader_b, ttl=999, stale_ttl=60,
                                 tags=["b-tag"], background=True), b"v0")
        gate.set()
        self.assertTrue(wait_until(lambda: c.get("bk") == b"from A", 10))
        self.assertEqual(ran, ["A"])
        c.invalidate("tag", "b-tag")
        self.assertEqual(c.get("bk"), b"from A")
        c.invalidate("tag", "a-tag")
        self.assertIsNone(c.get("bk"))

    def test_error_table_is_bounded(self):
        """Loader exceptions are kept for their window, at most 4096."""
        c = corral.Cache(4 << 20, breaker_failures=0)
        live = []

        class Tracked(Exception):
            count = 0

            def __init__(self):
                super().__init__("tracked")
                Tracked.count += 1

            def __del__(self):
                Tracked.count -= 1

        def bad():
            raise Tracked()

        try:
            for i in range(6000):
                try:
                    c.fetch("e%d" % i, bad)
                except corral.LoadError as e:
                    if i < 3:
                        live.append(e)
            gc.collect()
            self.assertLessEqual(Tracked.count, 4096 + 3)
            self.assertGreater(Tracked.count, 1000)
        finally:
            c.close()
        del live
        gc.collect()
        self.assertEqual(Tracked.count, 0)


class TestCached(CacheTest):
    def test_decorator(self):
        c = self.cache
        calls = []

        @c.cached(ttl=60, tags=["users"])
        def user(uid, *, fmt="raw"):
            calls.append(uid)
            return ("user %d %s" % (uid, fmt)).encode()

        self.assertEqual(user(1), b"user 1 raw")
        self.assertEqual(user(1), b"user 1 raw")
        self.assertEqual(user(2, fmt="x"), b"user 2 x")
        self.assertEqual(calls, [1, 2])
        self.assertEqual(user.__name__, "user")
        self.assertIn(user.key(1), c)
        self.assertTrue(user.invalidate(1))
        self.assertEqual(user(1), b"user 1 raw")
        self.assertEqual(calls, [1, 2, 1])
        c.invalidate_tag("users")
        user(2, fmt="x")
        self.assertEqual(calls, [1, 2, 1, 2])

    def test_key_tags_serialisation(self):
        c = self.cache
        calls = []

        @c.cached(key=lambda a, b: "sum:%d:%d" % (a, b),
                  tags=lambda a, b: ["n%d" % a], dumps=pickle.dumps,
                  loads=pickle.loads)
        def add(a, b):
            calls.append((a, b))
            return {"sum": a + b}

        self.assertEqual(add(1, 2), {"sum": 3})
        self.assertEqual(add(1, 2), {"sum": 3})
        self.assertEqual(len(calls), 1)
        self.assertEqual(pickle.loads(c.get("sum:1:2")), {"sum": 3})
        c.invalidate_tag("n1")
        add(1, 2)
        self.assertEqual(len(calls), 2)

    def test_absent_and_bare(self):
        c = self.cache
        calls = []

        @c.cached
        def lookup(name):
            calls.append(name)
            return corral.ABSENT if name == "nobody" else name.encode()

        self.assertIsNone(lookup("nobody"))
        self.assertIsNone(lookup("nobody"))
        self.assertEqual(lookup("ann"), b"ann")
        self.assertEqual(calls, ["nobody", "ann"])

    def test_long_arguments_are_hashed(self):
        c = self.cache

        @c.cached(ttl=10)
        def echo(s):
            return s.encode()

        long_arg = "x" * 1000
        self.assertEqual(echo(long_arg), long_arg.encode())
        self.assertLessEqual(len(echo.key(long_arg)), 250)
        self.assertNotEqual(echo.key(long_arg), echo.key(long_arg + "y"))

        # a long non-ASCII name: the key is cut in bytes, not characters
        def wide(s):
            return s.encode()

        wide.__qualname__ = "\u00e9" * 200
        wide = c.cached(ttl=10)(wide)
        self.assertLessEqual(len(wide.key(long_arg)), 250)
        self.assertEqual(wide(long_arg), long_arg.encode())

    def test_concurrent_calls_run_once(self):
        c = self.cache
        calls = []
        gate = threading.Event()

        @c.cached(ttl=60)
        def slow(x):
            calls.append(x)
            gate.wait(5)
            return b"%d" % x

        def release_gate():
            wait_until(lambda: c.stats()["load_waits"] >= 5, 5)
            gate.set()

        opener = threading.Thread(target=release_gate)
        opener.start()
        out = []
        errors = run_threads(6, lambda i: out.append(slow(7)))
        opener.join()
        self.assertEqual(errors, [])
        self.assertEqual(out, [b"7"] * 6)
        self.assertEqual(calls, [7])


class TestWriters(CacheTest):
    def test_write_through(self):
        c = self.cache
        backend = {}
        seen = []

        def writer(w):
            seen.append(w)
            if w.key == b"refused":
                raise PermissionError("read-only key")
            if w.op == "set":
                backend[w.key] = w.value
            else:
                backend.pop(w.key, None)

        with self.assertRaises(corral.Error):
            c.put("k", b"v")  # no writer yet
        c.use_write_through(writer)
        with self.assertRaises(corral.Error):
            c.use_write_through(writer)
        c.put("k", b"v1", ttl=100, flags=5)
        self.assertEqual(backend, {b"k": b"v1"})
        self.assertEqual(c.get("k"), b"v1")
        w = seen[0]
        self.assertIsInstance(w, corral.Write)
        self.assertEqual((w.op, w.key, w.value, w.flags), ("set", b"k", b"v1",
                                                            5))
        self.assertEqual(len(w), 5)  # expires is an attribute only
        self.assertTrue(time.time() + 98 <= w.expires <= time.time() + 101)
        with self.assertRaises(corral.WriteError) as cm:
            c.put("refused", b"x")
        self.assertIsInstance(cm.exception.exception, PermissionError)
        self.assertIs(cm.exception.__cause__, cm.exception.exception)
        self.assertIsNone(c.get("refused"))  # cache untouched
        c.remove("k")
        self.assertEqual(backend, {})
        self.assertIsNone(c.get("k"))
        self.assertEqual(seen[-1].op, "delete")
        self.assertIsNone(seen[-1].value)
        self.assertEqual(seen[-1].expires, 0)
        self.assertGreater(seen[-1].seq, seen[0].seq)

    def test_writer_puts_other_keys(self):
        # A write-through writer that puts other keys (some share a lock
        # stripe with its own: this used to hang) and its own key (Busy).
        c = self.cache
        busy = []

        def writer(w):
            if w.key == b"outer":
                for i in range(300):
                    c.put("inner%d" % i, b"x")
                try:
                    c.put("outer", b"again")
                except corral.Busy as e:
                    busy.append(e)

        c.use_write_through(writer)
        c.put("outer", b"v")
        self.assertEqual(len(busy), 1)
        self.assertEqual(c.get("outer"), b"v")
        self.assertEqual(c.get_many(["inner%d" % i for i in range(300)]),
                         {"inner%d" % i: b"x" for i in range(300)})

    def test_subscriber_puts_and_removes(self):
        # An event callback that puts and removes through the writer (this
        # used to hang when its key shared the put's lock stripe).
        c = self.cache
        c.use_write_behind(lambda batch: None)
        echoed = []

        def on_event(ev):
            if ev.type == "overwrite" and ev.name.startswith(b"trig"):
                n = ev.name[4:]
                c.put(b"echo" + n, b"e")
                c.remove(b"gone" + n)
                echoed.append(n)

        c.subscribe(on_event)
        for i in range(300):
            c.set("gone%d" % i, b"g")
            c.set("trig%d" % i, b"t")
            c.put("trig%d" % i, b"u")
        self.assertEqual(len(echoed), 300)
        for i in range(300):
            self.assertEqual(c.get("echo%d" % i), b"e")
            self.assertIsNone(c.get("gone%d" % i))

    def test_put_too_large_reaches_no_backend(self):
        c = corral.Cache(4 << 20, max_item_size=64 << 10)
        try:
            backend = []
            c.use_write_through(lambda w: backend.append(w.key))
            c.put("k", b"old")
            with self.assertRaises(corral.TooLarge):
                c.put("k", b"x" * (100 << 10))
            self.assertEqual(backend, [b"k"])
            self.assertEqual(c.get("k"), b"old")
        finally:
            c.close()

    def test_write_through_threads(self):
        c = self.cache
        backend = {}
        lock = threading.Lock()

        def writer(w):
            with lock:
                backend[w.key] = w.value

        c.use_write_through(writer)

        def worker(i):
            for j in range(200):
                c.put("k%d" % (j % 20), b"%d-%d" % (i, j))

        self.assertEqual(run_threads(4, worker), [])
        for j in range(20):
            self.assertEqual(c.get("k%d" % j), backend[b"k%d" % j])

    def test_write_behind(self):
        c = self.cache
        batches = []
        backend = {}

        def writer(writes):
            batches.append(len(writes))
            for w in writes:
                if w.op == "set":
                    backend[w.key] = w.value
                else:
                    backend.pop(w.key, None)

        c.use_write_behind(writer, delay=0.02, batch_max=50)
        for i in range(200):
            c.put("k%d" % i, b"v%d" % i)
        for i in range(10):
            c.put("same", b"%d" % i)  # coalesced: the latest wins
        c.remove("k0")
        self.assertTrue(c.write_flush(timeout=10))
        self.assertEqual(backend[b"same"], b"9")
        self.assertEqual(backend[b"k199"], b"v199")
        self.assertNotIn(b"k0", backend)
        self.assertEqual(len(backend), 200)
        self.assertLessEqual(max(batches), 50)
        self.assertGreater(c.stats()["write_coalesced"], 0)
        self.assertIsNone(c.last_write_error)

    def test_write_behind_retries(self):
        c = self.cache
        backend = {}
        state = {"raised": False, "b_failed": False}

        def writer(writes):
            if not state["raised"]:  # the whole first batch fails
                state["raised"] = True
                raise ConnectionError("backend away")
            results = []
            for w in writes:
                if w.key == b"b" and not state["b_failed"]:
                    state["b_failed"] = True  # then b alone, once
                    results.append(False)
                else:
                    backend[w.key] = w.value
                    results.append(True)
            return results

        c.use_write_behind(writer, delay=0.001, retry_min=0.001,
                           retry_max=0.01)
        c.put("a", b"1")
        c.put("b", b"2")
        self.assertTrue(c.write_flush(timeout=10))
        self.assertEqual(backend, {b"a": b"1", b"b": b"2"})
        self.assertTrue(state["b_failed"])
        self.assertIsInstance(c.last_write_error, ConnectionError)
        self.assertGreaterEqual(c.stats()["write_retries"], 2)

    def test_write_behind_bad_result(self):
        c = self.cache
        calls = []

        def writer(writes):
            calls.append(1)
            return [] if len(calls) == 1 else None  # wrong length first

        c.use_write_behind(writer, delay=0.001, retry_min=0.001)
        c.put("a", b"1")
        self.assertTrue(c.write_flush(timeout=10))
        self.assertIsInstance(c.last_write_error, ValueError)
        self.assertGreaterEqual(len(calls), 2)

    def test_close_flushes_and_timeout(self):
        c = corral.Cache(4 << 20)
        written = []
        failing = [True]

        def writer(writes):
            if failing[0]:
                raise IOError("down")
            written.extend(w.key for w in writes)

        c.use_write_behind(writer, delay=0.001, retry_min=0.001,
                           retry_max=0.01)
        c.put("k", b"v")
        with self.assertRaises(corral.Timeout):
            c.close(timeout=0.1)
        self.assertFalse(c.closed)
        self.assertEqual(c.get("k"), b"v")
        failing[0] = False
        c.close()
        self.assertTrue(c.closed)
        self.assertEqual(written, [b"k"])

    def test_refuse_when_full(self):
        c = self.cache
        gate = threading.Event()
        entered = threading.Event()

        def writer(writes):
            entered.set()
            gate.wait(5)

        c.use_write_behind(writer, queue_max=1, delay=0.001,
                           refuse_when_full=True)
        c.put("a", b"1")
        self.assertTrue(entered.wait(5))
        with self.assertRaises(corral.Busy):  # "a" in flight fills it
            c.put("b", b"2")
        gate.set()
        self.assertTrue(c.write_flush(timeout=10))

    def test_blocking_put_releases_gil(self):
        """put() waits for room without holding the GIL (the flusher
        needs it to run the Python writer)."""
        c = self.cache
        written = []

        def writer(writes):
            time.sleep(0.001)
            written.extend(w.key for w in writes)

        c.use_write_behind(writer, queue_max=2, batch_max=1, delay=0.001)
        for i in range(50):
            c.put("k%d" % i, b"v")
        self.assertTrue(c.write_flush(timeout=10))
        self.assertEqual(len(written), 50)


class TestEvents(CacheTest):
    def test_events(self):
        c = self.cache
        events = []
        sub = c.subscribe(events.append)
        self.assertIsInstance(sub, corral.Subscription)
        self.assertTrue(sub.active)
        first = c.event_seq
        c.set("k", b"1")  # a new key invalidates nothing
        c.set("k", b"2")
        c.delete("k")
        c.invalidate_tag("t")
        c.invalidate_prefix("p:")
        c.flush()
        c.invalidate("delete", "remote", origin=7)
        types = [e.type for e in events]
        self.assertEqual(types, ["overwrite", "delete", "tag", "prefix",
                                 "flush", "delete"])
        self.assertEqual([e.seq for e in events],
                         list(range(first, first + 6)))
        self.assertEqual(events[0].name, b"k")
        self.assertGreater(events[0].cas, 0)
        self.assertEqual(events[2].name, b"t")
        self.assertEqual(events[3].name, b"p:")
        self.assertEqual(events[5].origin, 7)
        self.assertIsInstance(events[0], corral.Event)
        sub.close()
        self.assertFalse(sub.active)
        c.set("k", b"3")
        c.set("k", b"4")
        self.assertEqual(len(events), 6)
        sub.close()  # twice is harmless

    def test_invalidate_from_elsewhere(self):
        c = self.cache
        events = []
        c.set("k", b"v", tags=["t"])
        c.set("p:1", b"v")
        c.set("other", b"v")
        with c.subscribe(events.append):
            c.invalidate("tag", "t", origin=3)
            c.invalidate("prefix", b"p:", origin=3)
            c.invalidate("delete", "absent", origin=3)  # still an event
            c.invalidate("flush", origin=4, flush_time=0)
        self.assertIsNone(c.get("k"))
        self.assertIsNone(c.get("p:1"))
        self.assertIsNone(c.get("other"))
        self.assertEqual([(e.type, e.name, e.origin) for e in events],
                         [("tag", b"t", 3), ("prefix", b"p:", 3),
                          ("delete", b"absent", 3), ("flush", b"", 4)])
        # a gap flushes now and leaves a delayed flush pending
        events.clear()
        c.set("g", b"v")
        with c.subscribe(events.append):
            c.flush(delay=1000)
            c.invalidate("gap", origin=5)
        self.assertIsNone(c.get("g"))
        at = events[0].flush_time
        self.assertGreater(at, 0)
        self.assertEqual([(e.type, e.origin, e.flush_time) for e in events],
                         [("flush", 0, at), ("flush", 5, 0), ("flush", 5, at)])
        c.flush()
        with self.assertRaises(ValueError):
            c.invalidate("bogus", "x")
        with self.assertRaises(TypeError):
            c.invalidate("tag")
        with self.assertRaises(corral.InvalidArgument):
            c.invalidate("delete", "")

    def test_replay_and_gap(self):
        c = corral.Cache(4 << 20, event_ring=16)
        try:
            live = c.subscribe(lambda e: None)  # events are kept from now
            start = c.event_seq
            for i in range(4):
                c.set("k", b"%d" % i)
            replayed = []
            with c.subscribe(replayed.append, since=start):
                c.set("k", b"x")
            self.assertEqual([e.seq for e in replayed],
                             list(range(start, start + 4)))
            for i in range(40):
                c.set("k", b"%d" % i)
            gapped = []
            with c.subscribe(gapped.append, since=start):
                c.set("k", b"y")
            self.assertEqual(gapped[0].type, "gap")
            self.assertEqual(gapped[0].seq, start)
            live.close()
        finally:
            c.close()

    def test_callback_thread_and_errors(self):
        c = self.cache
        threads = []
        raised = []
        old_hook = sys.unraisablehook
        sys.unraisablehook = lambda u: raised.append(u.exc_value)

        def cb(ev):
            threads.append(threading.get_ident())
            if ev.name == b"boom":
                raise RuntimeError("callback failed")

        try:
            with c.subscribe(cb):
                changer = []

                def change():
                    changer.append(threading.get_ident())
                    c.set("x", b"1")
                    c.set("x", b"2")

                t = threading.Thread(target=change)
                t.start()
                t.join(5)
                self.assertEqual(threads, changer)
                c.invalidate_tag("boom")
        finally:
            sys.unraisablehook = old_hook
        self.assertEqual(len(raised), 1)
        self.assertIsInstance(raised[0], RuntimeError)

    def test_callback_uses_cache_and_unsubscribes_itself(self):
        c = self.cache
        seen = []
        holder = []

        def cb(ev):
            seen.append(c.get("other"))
            c.set("side", b"effect")  # a new key: no further event
            holder[0].close()

        holder.append(c.subscribe(cb))
        c.set("other", b"o")
        c.set("k", b"1")
        c.set("k", b"2")
        c.set("k", b"3")
        self.assertEqual(seen, [b"o"])
        self.assertFalse(holder[0].active)
        self.assertEqual(c.get("side"), b"effect")

    def test_close_inside_callback_refused(self):
        c = self.cache
        errors = []

        def cb(ev):
            try:
                c.close()
            except corral.Error as e:
                errors.append(e)

        with c.subscribe(cb):
            c.set("k", b"1")
            c.set("k", b"2")
        self.assertEqual(len(errors), 1)
        self.assertFalse(c.closed)

    def test_no_deadlock_under_contention(self):
        """Changes, reads from callbacks, and subscribe/unsubscribe on
        several threads at once: every thread finishes."""
        c = self.cache
        count = [0]
        stop = threading.Event()

        def cb(ev):
            count[0] += 1
            c.get("k%d" % (count[0] % 10))

        main_sub = c.subscribe(cb)

        def changer(i):
            for j in range(2000):
                c.set("k%d" % (j % 10), b"%d" % j)
                if j % 100 == 0:
                    c.fetch("f%d" % i, lambda: b"v")
                    c.delete("f%d" % i)

        def churner(i):
            while not stop.is_set():
                with c.subscribe(lambda ev: c.get("x")):
                    time.sleep(0.0005)

        churn = threading.Thread(target=churner, args=(0,))
        churn.start()
        errors = run_threads(3, changer, timeout=60)
        stop.set()
        churn.join(10)
        self.assertFalse(churn.is_alive())
        self.assertEqual(errors, [])
        main_sub.close()
        self.assertGreater(count[0], 5000)

    def test_cache_close_ends_subscriptions(self):
        c = corral.Cache(4 << 20)
        sub = c.subscribe(lambda e: None)
        c.close()
        self.assertFalse(sub.active)
        sub.close()


class TestLifetime(unittest.TestCase):
    def test_no_init_after_close(self):
        c = corral.Cache(4 << 20)
        c.close()
        with self.assertRaises(corral.Error):
            corral.Cache.__init__(c, 4 << 20)
        self.assertTrue(c.closed)
        with self.assertRaises(corral.Closed):
            c.fetch("k", lambda: b"v", background=True)

    def test_second_close_waits_for_the_first(self):
        # close() from two threads: neither returns before the write-behind
        # writes are flushed.
        c = corral.Cache(4 << 20)
        written = []

        def slow_writer(batch):
            time.sleep(0.3)
            written.extend(w.key for w in batch)

        c.use_write_behind(slow_writer)
        c.put("k", b"v")
        t = threading.Thread(target=c.close)
        t.start()
        self.assertTrue(wait_until(lambda: c.closed, 10))
        c.close()
        self.assertEqual(written, [b"k"])
        t.join(10)

    def test_many_methods_copy_their_argument(self):
        # get_many/set_many release the GIL for 64+ keys or large values;
        # another thread changing the caller's list meanwhile must not
        # crash them.
        c = corral.Cache(16 << 20)
        keys = ["k%d" % i for i in range(200)]
        pairs = [("p%d" % i, b"v" * (40 << 10)) for i in range(40)]
        stop = threading.Event()

        def mutate():
            while not stop.is_set():
                keys.append("x")
                keys.pop()
                del keys[100:]
                keys.extend("k%d" % i for i in range(100, 200))
                pairs.pop()
                pairs.append(("p39", b"v" * (40 << 10)))

        t = threading.Thread(target=mutate)
        t.start()
        try:
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                c.get_many(keys)
                c.set_many(pairs)
        finally:
            stop.set()
            t.join(10)
        self.assertEqual(c.get("p0"), b"v" * (40 << 10))
        c.close()

    def test_config_ints_out_of_range(self):
        for kw in ({"max_memory": -1}, {"max_memory": 2 ** 64 + (8 << 20)},
                   {"shards": 2 ** 32 + 4}, {"shards": -1},
                   {"max_items": -1}, {"breaker_failures": -1},
                   {"event_ring": 2 ** 64}):
            with self.assertRaises(ValueError, msg=repr(kw)):
                corral.Cache(**kw)
        with self.assertRaises(corral.InvalidArgument):
            corral.Cache(event_ring=2 ** 61 + 16)
        with self.assertRaises(ValueError):
            corral.Cache(4 << 20).set("k", b"v", flags=-1)

    def test_closed(self):
        c = corral.Cache(4 << 20)
        with c:
            c.set("k", b"v")
        self.assertTrue(c.closed)
        self.assertEqual(repr(c), "<corral.Cache closed>")
        for call in (lambda: c.get("k"), lambda: c.set("k", b"v"),
                     lambda: c["k"], lambda: "k" in c, lambda: len(c),
                     lambda: c.fetch("k", lambda: b"v"), c.stats,
                     lambda: c.subscribe(print),
                     lambda: c.get_many(["k"]), lambda: c.config):
            with self.assertRaises(corral.Closed):
                call()
        c.close()
        with self.assertRaises(corral.Closed):
            with c:
                pass

    def test_close_waits_for_a_fetch_in_progress(self):
        c = corral.Cache(4 << 20)
        started = threading.Event()
        out = []

        def loader():
            started.set()
            time.sleep(0.2)
            return b"done"

        t = threading.Thread(target=lambda: out.append(c.fetch("k", loader)))
        t.start()
        self.assertTrue(started.wait(5))
        c.close()
        t.join(5)
        self.assertEqual(out, [b"done"])

    def test_cycle_through_writer_is_collected_and_flushed(self):
        written = []

        def make():
            c = corral.Cache(4 << 20)

            def writer(writes):  # refers to the cache: a cycle
                assert c is not None
                written.extend(w.key for w in writes)

            c.use_write_behind(writer, delay=0.001)
            c.put("k", b"v")
            return weakref.ref(c)

        ref = make()
        gc.collect()
        self.assertIsNone(ref())
        self.assertEqual(written, [b"k"])

    def test_dropped_on_its_own_flusher_thread(self):
        """The last reference goes away inside the write-behind writer:
        the engine is destroyed on a helper thread, no deadlock."""
        holder = []
        written = []
        done = threading.Event()

        class Marker:
            def __del__(self):
                done.set()

        c = corral.Cache(4 << 20)
        marker = Marker()

        def writer(writes, marker=marker):
            written.extend(w.key for w in writes)
            holder.clear()  # drops the cache: finalized on this thread

        c.use_write_behind(writer, delay=0.001)
        c.put("a", b"1")
        c.put("b", b"2")
        holder.append(c)
        ref = weakref.ref(c)
        del c, writer, marker
        self.assertTrue(wait_until(lambda: ref() is None, 10))
        self.assertTrue(done.wait(10))
        self.assertEqual(sorted(written), [b"a", b"b"])

    def test_value_errors_after_close_do_not_crash(self):
        c = corral.Cache(4 << 20)
        c.set("k", b"v")
        views = [c.get_view("k") for _ in range(100)]
        c.close()
        self.assertEqual({bytes(v) for v in views}, {b"v"})


class TestLeaks(unittest.TestCase):
    """No leaks over a million operations, measured: Python objects,
    traced Python allocations, resident memory, and the reference counts
    of the objects passed in."""

    N = 1000000

    def test_million_operations(self):
        c = corral.Cache(32 << 20, breaker_failures=0)
        keys = ["key:%d" % i for i in range(1000)]
        bkeys = [k.encode() for k in keys]
        value = b"v" * 100
        big = b"B" * (64 << 10)

        def loader():
            return value

        def ops(n):
            get, set_, fetch, delete = c.get, c.set, c.fetch, c.delete
            for i in range(n // 10):
                k = keys[i % 1000]
                set_(k, value, ttl=0, tags=("lt",) if i % 7 == 0 else ())
                get(k)
                fetch(k, loader)
                fetch(bkeys[(i * 7) % 1000], loader, ttl=100)
                delete(k)
                get(k, None)
                if i % 3 == 0:
                    try:
                        c[k]
                    except KeyError:
                        pass
                else:
                    k in c  # noqa: B015 - the lookup is the operation
                with c.get_view("view") as v:
                    memoryview(v).release()
                if i % 50 == 0:
                    set_("big", big)
                    get("big")
                    c.get_many(keys[:5])
                else:
                    c.incr("counter", 1, initial=0)
                fetch("absent%d" % (i % 10), lambda: corral.ABSENT,
                      ttl=60)

        refs_before = [sys.getrefcount(o) for o in (value, loader, keys[0],
                                                    bkeys[0], big)]
        c.set("view", value)
        ops(100000)  # warm up: allocator pools, tables at their size
        gc.collect()
        tracemalloc.start()
        objects_before = len(gc.get_objects())
        traced_before = tracemalloc.get_traced_memory()[0]
        rss_before = rss_bytes()
        t0 = time.monotonic()
        ops(self.N)
        elapsed = time.monotonic() - t0
        gc.collect()
        objects_after = len(gc.get_objects())
        traced_after = tracemalloc.get_traced_memory()[0]
        rss_after = rss_bytes()
        tracemalloc.stop()
        refs_after = [sys.getrefcount(o) for o in (value, loader, keys[0],
                                                   bkeys[0], big)]
        print("\n  %d operations in %.2f s: objects %+d, traced %+d B, "
              "RSS %+d KiB" % (self.N, elapsed, objects_after - objects_before,
                               traced_after - traced_before,
                               (rss_after - rss_before) // 1024),
              file=sys.stderr)
        c.close()
        self.assertEqual(refs_after, refs_before)
        self.assertLess(abs(objects_after - objects_before), 100)
        self.assertLess(traced_after - traced_before, 64 << 10)
        self.assertLess(rss_after - rss_before, 4 << 20)

    def test_failing_loads_and_writes_do_not_leak(self):
        """Loader and writer exceptions are released: the error table
        holds each for its window (at most 4096), and nothing remains
        once the cache is closed."""
        c = corral.Cache(8 << 20, breaker_failures=0, backoff_min=0.001,
                         backoff_max=0.001)

        def bad():
            raise ValueError("load failed")

        def writer(w):
            raise ValueError("write failed")

        c.use_write_through(writer)

        def ops(n):
            for i in range(n):
                try:
                    c.fetch("f%d" % (i % 4), bad, error_ttl=0.001)
                except corral.LoadError:
                    pass
                try:
                    c.put("w", b"v")
                except corral.WriteError:
                    pass

        ops(2000)
        gc.collect()
        objects_before = len(gc.get_objects())
        ops(50000)
        gc.collect()
        held = len(gc.get_objects()) - objects_before
        c.close()  # drops the error table
        gc.collect()
        after_close = len(gc.get_objects()) - objects_before
        print("\n  50000 failing loads and writes: %+d objects while open, "
              "%+d after close" % (held, after_close), file=sys.stderr)
        self.assertLess(held, 4096 * 4 + 100)
        self.assertLess(after_close, 100)


class TestReadme(unittest.TestCase):
    """The README's example (README.md and bindings/python/README.md hold
    the same block) runs and prints what the README says."""

    EXPECTED = (
        "b'hello'\n"
        "b'{\"id\": 42, \"name\": \"Ada\"}' loaded 1 time\n"
        "b'{\"id\": 42'\n"
        "False tag\n"
        "b'144' b'144'\n")

    @staticmethod
    def example(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        begin = text.index("<!-- begin python example -->")
        end = text.index("<!-- end python example -->")
        block = text[begin:end]
        return block[block.index("```python\n") + 10:block.rindex("```")]

    def test_example(self):
        top = self.example(os.path.join(TOP_SRCDIR, "README.md"))
        pkg = self.example(os.path.join(TOP_SRCDIR, "bindings", "python",
                                        "README.md"))
        self.assertEqual(top, pkg)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(pkg, "README example", "exec"), {})
        self.assertEqual(out.getvalue(), self.EXPECTED)
        with open(os.path.join(TOP_SRCDIR, "bindings", "python",
                               "README.md"), encoding="utf-8") as f:
            self.assertIn("It prints:\n\n```\n" + self.EXPECTED + "```",
                          f.read())


def main():
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
    runner = unittest.TextTestRunner(verbosity=2, stream=sys.stdout)
    suite = unittest.defaultTestLoader.loadTestsFromModule(
        sys.modules[__name__])
    # the near cache's tests, beside this file (they start corrald)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import test_near
    suite.addTests(unittest.defaultTestLoader.loadTestsFromModule(test_near))
    result = runner.run(suite)
    failed = (len(result.failures) + len(result.errors)
              + len(result.unexpectedSuccesses))
    passed = result.testsRun - failed - len(result.skipped)
    faulthandler.cancel_dump_traceback_later()
    print("RESULT: %d passed, %d failed" % (passed, failed))
    sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
