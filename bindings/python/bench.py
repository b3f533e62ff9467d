"""bench.py - get/set operations per second from Python, side by side:

  corral       corral.Cache in this process (get copies into bytes)
  corral view  corral.Cache.get_view: the value read in place (zero copy)
  dict+lock    a dict guarded by a threading.Lock, the usual baseline
  pymemcache   Debian's python3-pymemcache talking to a corrald that this
               script starts on a free loopback port

    PYTHONPATH=<builddir>/bindings/python/build/lib /usr/bin/python3 \\
        bindings/python/bench.py --corrald <builddir>/server/corrald

Each cell runs for --seconds (default 0.5) after a short warm-up and
reports the median of --rounds (default 3) runs.  A benchmark, not a
test: it prints figures and asserts nothing.
"""

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

# Python puts this script's directory first on sys.path, where corral/ is
# the source package without its compiled extension: import the built or
# installed package instead.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(
        os.path.abspath(__file__)):
    del sys.path[0]

import corral  # noqa: E402


def free_port():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def start_corrald(path, threads):
    port = free_port()
    proc = subprocess.Popen([path, "-p", str(port), "-l", "127.0.0.1",
                             "-m", "256", "-t", str(threads)],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.02)
    proc.kill()
    raise SystemExit("corrald did not start: %s" % path)


class LockedDict:
    """The baseline: a dict and a lock around every access."""

    def __init__(self):
        self.d = {}
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            return self.d.get(key)

    def set(self, key, value):
        with self.lock:
            self.d[key] = value


def timed(op, keys, seconds):
    """Run op(key) over keys for `seconds`; operations per second."""
    n = len(keys)
    done = 0
    i = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        for _ in range(200):
            op(keys[i])
            i += 1
            if i == n:
                i = 0
        done += 200
        now = time.perf_counter()
        if now >= end:
            return done / (now - t0)


def measure(make_op, keys, seconds, nthreads, rounds):
    """Median ops/s of `rounds` runs of nthreads threads, each running
    make_op() (a fresh op per thread: a client per thread)."""
    results = []
    for _ in range(rounds):
        ops = [make_op() for _ in range(nthreads)]
        timed(ops[0], keys, min(0.05, seconds))  # warm-up
        rates = [0.0] * nthreads
        barrier = threading.Barrier(nthreads)

        def run(t):
            barrier.wait()
            rates[t] = timed(ops[t], keys[t::nthreads] or keys, seconds)

        threads = [threading.Thread(target=run, args=(t,))
                   for t in range(nthreads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        results.append(sum(rates))
    return statistics.median(results)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corrald", help="path to corrald (pymemcache column)")
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keys", type=int, default=10000)
    ap.add_argument("--sizes", default="100,4096",
                    help="value sizes in bytes, comma-separated")
    ap.add_argument("--threads", default="1,2",
                    help="thread counts, comma-separated")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",")]

    cache = corral.Cache(512 << 20)
    locked = LockedDict()
    server = None
    pymemcache = None
    if args.corrald:
        try:
            from pymemcache.client.base import Client
            pymemcache = Client
        except ImportError:
            print("pymemcache not installed (apt-get install "
                  "python3-pymemcache): its column is skipped")
        if pymemcache is not None:
            server, port = start_corrald(args.corrald, max(thread_counts))

    def memcache_client():
        return pymemcache(("127.0.0.1", port), no_delay=True,
                          default_noreply=False)

    columns = ["corral", "corral view", "dict+lock"]
    if server is not None:
        columns.append("pymemcache")
    print("Python %s, corral %s, %d keys, %.2f s x %d rounds per cell "
          "(median), ops/s" % (sys.version.split()[0], corral.__version__,
                               args.keys, args.seconds, args.rounds))
    print("%-22s" % "" + "".join("%14s" % c for c in columns))
    try:
        for size in sizes:
            value = os.urandom(size)
            keys = ["bench:%d:%d" % (size, i) for i in range(args.keys)]
            cache.set_many((k, value) for k in keys)
            for k in keys:
                locked.set(k, value)
            if server is not None:
                mc = memcache_client()
                for k in keys:
                    mc.set(k, value)
                mc.close()
            for nthreads in thread_counts:
                for verb in ("get", "set"):
                    cells = {}
                    if verb == "get":
                        cells["corral"] = lambda: cache.get
                        cells["corral view"] = \
                            lambda: lambda k: cache.get_view(k).release()
                        cells["dict+lock"] = lambda: locked.get
                        if server is not None:
                            cells["pymemcache"] = \
                                lambda: memcache_client().get
                    else:
                        cells["corral"] = \
                            lambda: lambda k: cache.set(k, value)
                        cells["dict+lock"] = \
                            lambda: lambda k: locked.set(k, value)
                        if server is not None:
                            cells["pymemcache"] = lambda: (
                                lambda c: lambda k: c.set(k, value))(
                                    memcache_client())
                    row = "%s %6d B %d thr" % (verb, size, nthreads)
                    line = "%-22s" % row
                    for col in columns:
                        if col not in cells:
                            line += "%14s" % "-"
                            continue
                        rate = measure(cells[col], keys, args.seconds,
                                       nthreads, args.rounds)
                        line += "%14.0f" % rate
                    print(line, flush=True)
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
        cache.close()


if __name__ == "__main__":
    main()
