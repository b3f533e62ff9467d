"""test_near.py - corral.NearCache against a live corrald.

Two Cache objects in this process, each bound by its own NearCache to one
corrald started on a free loopback port (tests/integration/harness.py, the
binary from the build tree); writes go to the server through a raw
memcached connection, as an application's client would send them.

  - a value read through one near cache is served locally afterwards; a
    write through the server makes every local copy miss;
  - tag, prefix and flush invalidations reach the local copies;
  - when the stream breaks (the server killed), lookups miss and reads go
    to the loader; what was stored meanwhile is flushed at the reconnect;
  - bad arguments, an address nobody answers, a server refusing watch and
    a closed near cache raise clear exceptions; references and threads
    are released.

Run by test_bindings.py (make check) and runnable on its own.  Waits poll
for a condition under a deadline; nothing asserts a timing.
"""

import contextlib
import gc
import io
import os
import signal
import sys
import threading
import time
import unittest
import weakref

import corral

TOP_SRCDIR = os.environ.get(
    "top_srcdir",
    os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests", "integration"))
import harness  # noqa: E402

HAVE_CORRALD = os.access(harness.CORRALD, os.X_OK)


def wait_until(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


class Server:
    """The application's memcached client: one connection to corrald."""

    def __init__(self, port):
        self.c = harness.Client(port)
        self.lock = threading.Lock()

    def close(self):
        self.c.close()

    def cmd(self, line, data=None):
        with self.lock:
            if data is not None:
                self.c.send(b"%s\r\n%s\r\n" % (line.encode(), data))
            else:
                self.c.send(line.encode() + b"\r\n")
            return self.c.read_line().rstrip(b"\r\n").decode()

    def set(self, key, value, tags=None):
        if tags:
            # Corral's extension: tset, a tag list after the length
            line = "tset %s 0 0 %d %s" % (key, len(value), ",".join(tags))
        else:
            line = "set %s 0 0 %d" % (key, len(value))
        return self.cmd(line, value)

    def get(self, key):
        with self.lock:
            self.c.send(b"get %s\r\n" % key.encode())
            reply = self.c.read_value_reply()
        if not reply.startswith(b"VALUE "):
            return None
        head, rest = reply.split(b"\r\n", 1)
        return rest[:int(head.split()[3])]

    def loader(self, key, calls=None):
        """A loader reading key from the server.  A missing key raises
        rather than returning ABSENT: creating a key on the server sends
        no event, so a locally cached absence could outlive it."""
        def load():
            if calls is not None:
                calls.append(key)
            v = self.get(key)
            if v is None:
                raise KeyError(key)
            return v
        return load


@unittest.skipUnless(HAVE_CORRALD, "corrald is not built")
class TestNearCoherence(unittest.TestCase):
    """One corrald; caches A and B, each with its near cache."""

    @classmethod
    def setUpClass(cls):
        cls.srv = harness.corrald(["-t", "2"])
        cls.port = cls.srv.port

    @classmethod
    def tearDownClass(cls):
        cls.srv.close()

    def setUp(self):
        self.server = Server(self.port)
        self.server.cmd("flush_all")
        self.a = corral.Cache(16 << 20)
        self.b = corral.Cache(16 << 20)
        self.na = corral.NearCache(self.a, "127.0.0.1:%d" % self.port,
                                   wait=10)
        self.nb = corral.NearCache(self.b, ("127.0.0.1", self.port), wait=10)

    def tearDown(self):
        self.na.close()
        self.nb.close()
        self.a.close()
        self.b.close()
        self.server.close()

    def test_write_through_server_invalidates_other_copy(self):
        s = self.server
        self.assertTrue(self.na.synced and self.nb.synced)
        self.assertEqual(s.set("k", b"v1"), "STORED")
        self.assertIsNone(self.nb.get("k"))  # nothing local yet
        calls = []
        self.assertEqual(self.nb.fetch("k", s.loader("k", calls)), b"v1")
        self.assertEqual(self.nb.get("k"), b"v1")  # now served locally
        self.assertEqual(self.nb.fetch("k", s.loader("k", calls)), b"v1")
        self.assertEqual(len(calls), 1, "the second fetch is a local hit")
        with self.nb.get_view("k") as v:
            self.assertEqual(bytes(v), b"v1")
        self.assertEqual(self.na.fetch("k", s.loader("k")), b"v1")

        # A's application writes k through the server
        self.assertEqual(s.set("k", b"v2"), "STORED")
        self.assertTrue(wait_until(lambda: self.nb.get("k") is None),
                        "B's local copy was not invalidated")
        self.assertTrue(wait_until(lambda: self.na.get("k") is None),
                        "A's own copy was not invalidated")
        self.assertNotIn("k", self.b)  # deleted from the Cache itself
        self.assertEqual(self.nb.fetch("k", s.loader("k")), b"v2")

        self.assertEqual(s.cmd("delete k"), "DELETED")
        self.assertTrue(wait_until(lambda: self.nb.get("k") is None))
        with self.assertRaises(corral.LoadError) as cm:
            self.nb.fetch("k", s.loader("k"), error_ttl=0.001)
        self.assertIsInstance(cm.exception.exception, KeyError)
        self.assertEqual(self.nb.get("k", b"-"), b"-")

    def test_tags_prefix_flush(self):
        s = self.server
        s.set("t1", b"one", tags=["grp"])
        s.set("t2", b"two")
        s.set("p:1", b"three")
        self.assertEqual(self.nb.fetch("t1", s.loader("t1"), tags=["grp"]),
                         b"one")
        self.assertEqual(self.nb.fetch("t2", s.loader("t2")), b"two")
        self.assertEqual(self.nb.fetch("p:1", s.loader("p:1")), b"three")
        self.assertEqual(s.cmd("invalidate_tag grp"), "INVALIDATED")
        self.assertTrue(wait_until(lambda: self.nb.get("t1") is None))
        self.assertEqual(self.nb.get("t2"), b"two")  # untagged: kept
        self.assertEqual(s.cmd("invalidate_prefix p:"), "INVALIDATED")
        self.assertTrue(wait_until(lambda: self.nb.get("p:1") is None))
        self.assertEqual(self.nb.get("t2"), b"two")
        self.assertEqual(s.cmd("flush_all"), "OK")
        self.assertTrue(wait_until(lambda: self.nb.get("t2") is None))

    def test_stats_and_events(self):
        s = self.server
        events = []
        sub = self.b.subscribe(events.append)
        st = self.nb.stats()
        self.assertEqual(set(st), {"connects", "applied", "flushes",
                                   "last_seq", "node"})
        self.assertGreaterEqual(st["connects"], 1)
        self.assertNotEqual(st["node"], 0)
        s.set("e", b"x")
        self.nb.fetch("e", s.loader("e"))
        s.set("e", b"y")
        self.assertTrue(wait_until(lambda: self.nb.get("e") is None))
        # get() misses while the stream is down too: wait for the event
        self.assertTrue(wait_until(
            lambda: self.nb.stats()["applied"] > st["applied"]))
        after = self.nb.stats()
        self.assertGreater(after["last_seq"], 0)
        # the near cache's deletes carry the server's node as origin
        self.assertTrue(wait_until(lambda: any(
            ev.name == b"e" and ev.origin == st["node"] for ev in events)))
        sub.close()
        self.assertEqual(self.nb.address, ("127.0.0.1", self.port))
        self.assertIs(self.nb.cache, self.b)
        self.assertIn("synced", repr(self.nb))

    def test_loader_errors_and_threads(self):
        s = self.server

        def broken():
            raise OSError("backend down")

        with self.assertRaises(corral.LoadError) as cm:
            self.nb.fetch("le", broken, error_ttl=0.001)
        self.assertIsInstance(cm.exception.exception, OSError)

        # single flight through the near cache, GIL released while waiting
        calls, gate = [], threading.Event()

        def slow():
            calls.append(1)
            gate.wait(5)
            return b"slow"

        s.set("sf", b"ignored")
        out = []
        ts = [threading.Thread(target=lambda: out.append(
            self.nb.fetch("sf", slow))) for _ in range(4)]
        for t in ts:
            t.start()
        self.assertTrue(wait_until(lambda: calls))
        time.sleep(0.05)
        gate.set()
        for t in ts:
            t.join(10)
        self.assertEqual(out, [b"slow"] * 4)
        self.assertEqual(len(calls), 1)

    def test_close_inside_a_loader_is_refused(self):
        def closer():
            self.nb.close()
            return b"never"

        with self.assertRaises(corral.LoadError) as cm:
            self.nb.fetch("cl", closer)
        self.assertIsInstance(cm.exception.exception, corral.Error)
        self.assertFalse(self.nb.closed)
        self.assertTrue(self.nb.synced)

    def test_filters(self):
        c = corral.Cache(16 << 20)
        try:
            n = corral.NearCache(c, ("127.0.0.1", self.port),
                                 filters="prefix=f%3A", wait=10)
            s = self.server
            s.set("f:1", b"a")
            self.assertEqual(n.fetch("f:1", s.loader("f:1")), b"a")
            s.set("f:1", b"b")
            self.assertTrue(wait_until(lambda: n.get("f:1") is None))
            n.close()
        finally:
            c.close()

    def test_dropped_inside_its_own_event_callback(self):
        """The last reference to a near cache dropped by an event callback
        running on the near cache's own thread: it is destroyed on a
        helper thread (joining its own thread would deadlock)."""
        c = corral.Cache(16 << 20)
        holder = [corral.NearCache(c, ("127.0.0.1", self.port), wait=10)]
        ref = weakref.ref(holder[0])
        node = holder[0].stats()["node"]
        seen = threading.Event()

        def on_event(ev):
            if ev.origin == node and holder:
                holder.clear()  # the near cache is finalized here
                seen.set()

        self.server.set("d", b"first")
        self.assertEqual(holder[0].fetch("d", self.server.loader("d")),
                         b"first")
        sub = c.subscribe(on_event)
        self.server.set("d", b"second")  # an overwrite: an event
        self.assertTrue(seen.wait(10))
        gc.collect()
        self.assertTrue(wait_until(lambda: ref() is None))
        sub.close()
        c.close()  # waits for the helper; must not hang
        self.assertTrue(c.closed)


@unittest.skipUnless(HAVE_CORRALD, "corrald is not built")
class TestNearReadme(unittest.TestCase):
    """The near cache example (README.md and bindings/python/README.md hold
    the same block) runs against a corrald and prints what the README
    says."""

    EXPECTED = "b'Ada'\nb'Ada'\nNone b'Grace'\nTrue True\n"

    @staticmethod
    def example(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        begin = text.index("<!-- begin python near example -->")
        end = text.index("<!-- end python near example -->")
        block = text[begin:end]
        return block[block.index("```python\n") + 10:block.rindex("```")]

    def test_example(self):
        pkg_readme = os.path.join(TOP_SRCDIR, "bindings", "python",
                                  "README.md")
        pkg = self.example(pkg_readme)
        self.assertEqual(self.example(os.path.join(TOP_SRCDIR, "README.md")),
                         pkg)
        with open(pkg_readme, encoding="utf-8") as f:
            self.assertIn("prints:\n\n```\n" + self.EXPECTED + "```",
                          f.read())
        old = os.environ.get("CORRALD")
        with harness.corrald(["-t", "1"]) as srv:
            os.environ["CORRALD"] = "127.0.0.1:%d" % srv.port
            out = io.StringIO()
            try:
                with contextlib.redirect_stdout(out):
                    exec(compile(pkg, "README near example", "exec"), {})
            finally:
                if old is None:
                    del os.environ["CORRALD"]
                else:
                    os.environ["CORRALD"] = old
        self.assertEqual(out.getvalue(), self.EXPECTED)


@unittest.skipUnless(HAVE_CORRALD, "corrald is not built")
class TestNearOutage(unittest.TestCase):
    def test_stream_break_misses_then_flushes(self):
        srv = harness.corrald(["-t", "2"])
        port = srv.port
        cache = corral.Cache(16 << 20)
        near = corral.NearCache(cache, ("127.0.0.1", port), backoff_min=0.05,
                                backoff_max=0.2, wait=10)
        s = Server(port)
        try:
            s.set("o", b"value")
            self.assertEqual(near.fetch("o", s.loader("o")), b"value")
            self.assertEqual(near.get("o"), b"value")
            flushes = near.stats()["flushes"]
            s.close()

            srv.signal(signal.SIGKILL)
            srv.wait()
            self.assertTrue(wait_until(lambda: not near.synced),
                            "the break was not noticed")
            # never served stale: the near cache misses, the cache was
            # flushed, and every fetch goes to the loader
            self.assertIsNone(near.get("o"))
            self.assertNotIn("o", cache)
            self.assertGreater(near.stats()["flushes"], flushes)
            calls = []

            def during_outage():
                calls.append(1)
                return b"from the outage"

            self.assertEqual(near.fetch("o", during_outage),
                             b"from the outage")
            self.assertEqual(near.fetch("o", during_outage),
                             b"from the outage")
            self.assertEqual(len(calls), 2, "a local copy was reused")
            self.assertFalse(near.wait_synced(0.1))

            srv.close()
            srv = harness.corrald(["-t", "2"], port=port)
            self.assertTrue(near.wait_synced(10), "no reconnect")
            # what the loader stored during the outage is gone
            self.assertIsNone(near.get("o"))
            self.assertNotIn("o", cache)
            s = Server(port)
            s.set("o", b"again")
            self.assertEqual(near.fetch("o", s.loader("o")), b"again")
            s.set("o", b"later")
            self.assertTrue(wait_until(lambda: near.get("o") is None),
                            "no invalidations after the reconnect")
            self.assertGreaterEqual(near.stats()["connects"], 2)
        finally:
            s.close()
            near.close()
            cache.close()
            srv.close()


    def test_stopped_server(self):
        # a stopped server process (its kernel still answers TCP) is
        # noticed by the stream's silence
        srv = harness.corrald(["-t", "2"])
        cache = corral.Cache(16 << 20)
        near = corral.NearCache(cache, ("127.0.0.1", srv.port), silence=2,
                                backoff_min=0.05, backoff_max=0.2, wait=10)
        try:
            srv.signal(signal.SIGSTOP)
            try:
                self.assertTrue(wait_until(lambda: not near.synced),
                                "the stopped server was not noticed")
            finally:
                srv.signal(signal.SIGCONT)
            self.assertTrue(near.wait_synced(10), "no reconnect")
        finally:
            near.close()
            cache.close()
            srv.close()


class TestNearErrors(unittest.TestCase):
    def setUp(self):
        self.cache = corral.Cache(16 << 20)

    def tearDown(self):
        self.cache.close()

    def dead_port(self):
        return harness.free_port()  # nothing listens there

    def test_bad_arguments(self):
        c = self.cache
        bad = [
            ((c, ("127.0.0.1", 0)), corral.InvalidArgument),
            ((c, ("127.0.0.1", 70000)), corral.InvalidArgument),
            ((c, ("127.0.0.1", -1)), corral.InvalidArgument),
            ((c, ("127.0.0.1", 2 ** 70)), corral.InvalidArgument),
            ((c, ("127.0.0.1", "11211")), TypeError),
            ((c, ("127.0.0.1", 1.5)), TypeError),
            ((c, ("", 11211)), corral.InvalidArgument),
            ((c, ("a\0b", 11211)), corral.InvalidArgument),
            ((c, ("h" * 300, 11211)), corral.InvalidArgument),
            ((c, (b"127.0.0.1", 11211)), TypeError),
            ((c, "127.0.0.1"), corral.InvalidArgument),
            ((c, "127.0.0.1:"), corral.InvalidArgument),
            ((c, ":11211"), corral.InvalidArgument),
            ((c, 11211), TypeError),
            ((c, ("127.0.0.1",)), TypeError),
            (({}, ("127.0.0.1", 11211)), TypeError),
        ]
        for args, exc in bad:
            with self.assertRaises(exc, msg=repr(args)):
                corral.NearCache(*args)
        port = ("127.0.0.1", 11211)
        for kw in ({"connect_timeout": 0}, {"connect_timeout": -1},
                   {"backoff_min": 0}, {"backoff_min": 2, "backoff_max": 1},
                   {"filters": "a\r\nflush_all"}, {"filters": "x" * 1001},
                   {"silence": 1}, {"silence": -1}):
            with self.assertRaises(ValueError, msg=repr(kw)):
                corral.NearCache(c, port, **kw)
        with self.assertRaises(TypeError):
            corral.NearCache(c, port, filters=b"tag=x")
        self.assertTrue(issubclass(corral.InvalidArgument, ValueError))
        self.assertIsNone(c.config and None)  # the cache is still usable
        c.set("x", b"1")
        self.assertEqual(c.get("x"), b"1")

    def test_nobody_listening(self):
        port = self.dead_port()
        near = corral.NearCache(self.cache, ("127.0.0.1", port),
                                backoff_min=0.01, backoff_max=0.05)
        try:
            self.assertFalse(near.synced)
            self.assertFalse(near.wait_synced(0.2))
            self.assertEqual(near.stats()["connects"], 0)
            self.cache.set("k", b"local")
            self.assertIsNone(near.get("k"))  # not live: miss
            self.assertEqual(near.get("k", b"dflt"), b"dflt")
            calls = []
            self.assertEqual(near.fetch("k", lambda: calls.append(1) or b"l"),
                             b"l")
            self.assertEqual(near.fetch("k", lambda: calls.append(1) or b"l"),
                             b"l")
            self.assertEqual(len(calls), 2)
            self.assertIn("not synced", repr(near))
        finally:
            near.close()
        with self.assertRaises(corral.Timeout) as cm:
            corral.NearCache(self.cache, "127.0.0.1:%d" % port, wait=0.2)
        self.assertIsInstance(cm.exception, TimeoutError)
        self.assertIn("127.0.0.1:%d" % port, str(cm.exception))

    def test_wait_synced_releases_the_gil(self):
        near = corral.NearCache(self.cache, ("127.0.0.1", self.dead_port()))
        ticks = []
        stop = threading.Event()

        def count():
            while not stop.is_set():
                ticks.append(1)
                time.sleep(0.001)

        t = threading.Thread(target=count)
        t.start()
        try:
            self.assertFalse(near.wait_synced(0.3))
        finally:
            stop.set()
            t.join()
            near.close()
        self.assertGreater(len(ticks), 10)

    def test_close_from_another_thread_ends_a_wait(self):
        near = corral.NearCache(self.cache, ("127.0.0.1", self.dead_port()))
        out = []
        t = threading.Thread(target=lambda: out.append(near.wait_synced()))
        t.start()
        time.sleep(0.1)
        near.close()
        t.join(10)
        self.assertFalse(t.is_alive())
        self.assertEqual(out, [False])

        # closing the Cache ends it too (and closes the near cache)
        c = corral.Cache(16 << 20)
        near = corral.NearCache(c, ("127.0.0.1", self.dead_port()))
        out = []
        t = threading.Thread(target=lambda: out.append(near.wait_synced()))
        t.start()
        time.sleep(0.1)
        c.close()
        t.join(10)
        self.assertFalse(t.is_alive())
        self.assertEqual(out, [False])
        self.assertTrue(near.closed)

    @unittest.skipUnless(HAVE_CORRALD, "corrald is not built")
    def test_watch_refused(self):
        with harness.corrald(["-t", "1", "-W"]) as srv:
            near = corral.NearCache(self.cache, ("127.0.0.1", srv.port),
                                    backoff_min=0.02, backoff_max=0.05)
            try:
                self.assertFalse(near.wait_synced(0.3))
                self.assertIsNone(near.get("k"))
            finally:
                near.close()

    def test_closed(self):
        near = corral.NearCache(self.cache, ("127.0.0.1", self.dead_port()))
        near.close()
        near.close()  # no-op
        self.assertTrue(near.closed)
        self.assertFalse(near.synced)
        self.assertIn("closed", repr(near))
        for call in (lambda: near.get("k"), lambda: near.get_view("k"),
                     lambda: near.fetch("k", lambda: b"v"),
                     lambda: near.wait_synced(0), near.stats):
            with self.assertRaises(corral.Closed):
                call()
        with self.assertRaises(corral.Closed):
            with near:
                pass
        self.assertEqual(self.cache.fetch("k", lambda: b"v"), b"v")

        # closing the cache closes its near caches first
        n2 = corral.NearCache(self.cache, ("127.0.0.1", self.dead_port()))
        with n2:
            self.cache.close()
            self.assertTrue(n2.closed)
            with self.assertRaises(corral.Closed):
                n2.get("k")
        with self.assertRaises(corral.Closed):
            corral.NearCache(self.cache, ("127.0.0.1", 11211))

    def test_references_and_threads(self):
        cache = self.cache
        before = sys.getrefcount(cache)
        fds = len(os.listdir("/proc/self/fd"))
        tasks = len(os.listdir("/proc/self/task"))
        port = self.dead_port()
        for i in range(50):
            near = corral.NearCache(cache, ("127.0.0.1", port))
            self.assertEqual(sys.getrefcount(cache), before + 1)
            if i % 2:
                near.close()
            del near  # the others are closed by their finalizer
        gc.collect()
        self.assertEqual(sys.getrefcount(cache), before)
        self.assertTrue(wait_until(
            lambda: len(os.listdir("/proc/self/task")) <= tasks))
        self.assertLessEqual(len(os.listdir("/proc/self/fd")), fds)

        # a near cache keeps its cache alive; a cycle through the cache's
        # writer is collected, the near cache closed first
        c2 = corral.Cache(16 << 20)
        n2 = corral.NearCache(c2, ("127.0.0.1", port))
        c2.use_write_through(lambda w, n2=n2: None)
        refs = weakref.ref(c2), weakref.ref(n2)
        del c2, n2
        gc.collect()
        self.assertTrue(wait_until(
            lambda: refs[0]() is None and refs[1]() is None))


def main():
    import faulthandler
    faulthandler.dump_traceback_later(240, exit=True)
    runner = unittest.TextTestRunner(verbosity=2, stream=sys.stdout)
    result = runner.run(
        unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__]))
    failed = (len(result.failures) + len(result.errors)
              + len(result.unexpectedSuccesses))
    passed = result.testsRun - failed - len(result.skipped)
    print("RESULT: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
