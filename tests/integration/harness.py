"""harness.py - start corrald (and memcached) on free loopback ports for
the integration tests, talk to them over raw sockets, count results.

Every server runs under a watchdog that kills it after a deadline, and is
torn down by the context manager even when a test fails.  Every test
program ends with "RESULT: <passed> passed, <failed> failed" (the project's
runner adds these up) and exits nonzero if anything failed.

Environment (exported by make check): top_builddir, top_srcdir,
CORRAL_SANITIZE ("none", "asan" or "tsan"; timeouts grow under
sanitizers).
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

TOP_BUILDDIR = os.environ.get(
    "top_builddir",
    os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
SANITIZE = os.environ.get("CORRAL_SANITIZE", "none") or "none"
SANITIZED = SANITIZE != "none"

# Everything that waits scales with this (sanitizers are 2-20x slower).
SLOW = 4.0 if SANITIZED else 1.0

CORRALD = os.path.join(TOP_BUILDDIR, "server", "corrald")
MEMCACHED = "/usr/bin/memcached"


def free_port():
    """A loopback TCP port nothing listens on right now."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def sanitizer_env():
    env = dict(os.environ)
    # Leaks are reported at exit; a finding fails the run with exit 1,
    # which the tests check through the exit status.
    env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
    env.setdefault("TSAN_OPTIONS", "halt_on_error=1:second_deadlock_stack=1")
    return env


class Server:
    """A server process on a loopback port, killed after `deadline` s.

    Use as a context manager; `stop()` sends SIGTERM and returns the exit
    status (the watchdog's SIGKILL shows as -9)."""

    def __init__(self, argv, port, deadline=120.0, env=None, name=None):
        self.argv = argv
        self.port = port
        self.deadline = deadline * SLOW
        self.env = env
        self.name = name or os.path.basename(argv[0])
        self.proc = None
        self.timer = None
        self.stderr_path = None
        self.returncode = None

    def start(self, wait=True):
        import tempfile
        fd, self.stderr_path = tempfile.mkstemp(prefix="corral-it-",
                                                suffix=".err")
        self.errf = os.fdopen(fd, "w+b")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=self.errf, env=self.env)
        self.timer = threading.Timer(self.deadline, self._kill)
        self.timer.daemon = True
        self.timer.start()
        if wait:
            self.wait_ready()
        return self

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            sys.stderr.write("watchdog: killing %s after %.0f s\n" %
                             (self.name, self.deadline))
            self.proc.kill()

    def wait_ready(self, timeout=10.0):
        end = time.time() + timeout * SLOW
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s before accepting: %s" %
                                   (self.name, self.proc.returncode,
                                    self.stderr_text()))
            try:
                s = socket.create_connection(("127.0.0.1", self.port),
                                             timeout=1.0)
                s.close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("%s did not accept on port %d" %
                           (self.name, self.port))

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def signal(self, sig):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout=30.0):
        try:
            self.returncode = self.proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.returncode = self.proc.wait()
        return self.returncode

    def stop(self, timeout=30.0):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.wait(timeout)
        if self.timer:
            self.timer.cancel()
        return rc

    def close(self):
        self.stop()
        keep = os.environ.get("CORRAL_TEST_KEEP_STDERR")
        if keep:
            import shutil
            shutil.copy(self.stderr_path, "%s.%s" % (keep, self.name))
        try:
            self.errf.close()
            os.unlink(self.stderr_path)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def corrald(args=(), port=None, env=None, deadline=120.0, wait=True):
    """Start corrald on a free port (or `port`); returns a started Server."""
    port = port or free_port()
    argv = [CORRALD, "-p", str(port), "-l", "127.0.0.1"] + list(args)
    extra = os.environ.get("CORRAL_TEST_CORRALD_ARGS")
    if extra:
        argv += extra.split()
    return Server(argv, port, deadline=deadline,
                  env=env if env is not None else sanitizer_env(),
                  name="corrald").start(wait=wait)


def memcached(args=(), port=None, deadline=120.0):
    """Start the reference memcached on a free port."""
    port = port or free_port()
    argv = [MEMCACHED, "-p", str(port), "-l", "127.0.0.1", "-U", "0"]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]
    argv += list(args)
    return Server(argv, port, deadline=deadline, name="memcached").start()


def have_memcached():
    return os.access(MEMCACHED, os.X_OK)


class Client:
    """A raw protocol client: send bytes, read exactly what is expected."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout * SLOW)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(1 << 20)
        if not d:
            raise EOFError("connection closed; buffered %r" % self.buf[:200])
        self.buf += d

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n") + 2
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_until(self, marker):
        """Everything up to and including the first `marker`."""
        while marker not in self.buf:
            self._fill()
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_value_reply(self):
        """A get/gets/gat reply through END, values read by length."""
        out = b""
        while True:
            line = self.read_line()
            out += line
            if line.startswith(b"VALUE "):
                n = int(line.split()[3])
                out += self.read_exact(n + 2)
            else:
                return out

    def read_meta_reply(self):
        """One meta reply line, plus its data block for VA."""
        line = self.read_line()
        if line.startswith(b"VA "):
            n = int(line.split()[1])
            return line + self.read_exact(n + 2)
        return line

    def request(self, data):
        """Send, then read one line."""
        self.send(data)
        return self.read_line()

    def read_eof(self, timeout=5.0):
        """Read until the server closes; returns the bytes before EOF, or
        None if it did not close within `timeout` seconds."""
        self.sock.settimeout(timeout * SLOW)
        out = self.buf
        self.buf = b""
        try:
            while True:
                d = self.sock.recv(1 << 20)
                if not d:
                    return out
                out += d
        except socket.timeout:
            return None
        except ConnectionResetError:
            return out

    def drain_available(self, wait=0.2):
        """What arrives within `wait` seconds."""
        self.sock.settimeout(wait * SLOW)
        out = self.buf
        self.buf = b""
        try:
            while True:
                d = self.sock.recv(1 << 20)
                if not d:
                    break
                out += d
        except socket.timeout:
            pass
        self.sock.settimeout(10.0 * SLOW)
        return out


def wait_for(pred, timeout):
    """Poll pred() every 50 ms until it is true or @timeout seconds (scaled
    by SLOW) pass; returns its last value."""
    end = time.time() + timeout * SLOW
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def version_ok(port):
    """True if a new connection to @port is answered "version"."""
    try:
        with Client(port, timeout=5) as c:
            return c.request(b"version\r\n").startswith(b"VERSION ")
    except (OSError, EOFError):
        return False


def fill_socket(s, chunk, seconds):
    """Send @chunk repeatedly on non-blocking @s until the kernel takes no
    more for a while (or @seconds pass).  A send that takes part of the
    chunk is continued from there, so the stream is whole chunks.  Returns
    bytes sent."""
    s.setblocking(False)
    sent = 0
    idle_since = None
    end = time.time() + seconds
    chunk = memoryview(chunk)
    while time.time() < end:
        try:
            sent += s.send(chunk[sent % len(chunk):])
            idle_since = None
        except BlockingIOError:
            if idle_since is None:
                idle_since = time.time()
            elif time.time() - idle_since > 0.5:
                break
            time.sleep(0.02)
        except OSError:
            break
    return sent


def exchange(client, payload, sentinel=True):
    """Send @payload followed by "mn" and return every reply byte before
    the MN line (payloads must not produce an MN line themselves)."""
    client.send(payload + (b"mn\r\n" if sentinel else b""))
    return client.read_until(b"MN\r\n")[:-4]


def normalize(reply):
    """A reply with what two servers legitimately differ in masked: CAS
    values, the version string, statistics values, last-access ages, and
    memcached's slab class and chunk size in "me"; TTLs are kept (callers
    compare them with a one-second tolerance via same())."""
    out = []
    for line in reply.split(b"\r\n"):
        toks = line.split(b" ")
        if toks[0] == b"VALUE" and len(toks) == 5:
            toks[4] = b"<cas>"
        elif toks[0] in (b"HD", b"VA", b"EN", b"NF", b"NS", b"EX"):
            toks = [re.sub(rb"^c\d+$", b"c<cas>", t) for t in toks]
            toks = [re.sub(rb"^l\d+$", b"l<age>", t) for t in toks]
        elif toks[0] == b"ME":
            toks = [t for t in toks if not t.startswith((b"cls=", b"size="))]
            toks = [re.sub(rb"^cas=\d+$", b"cas=<cas>", t) for t in toks]
            toks = [re.sub(rb"^la=\d+$", b"la=<age>", t) for t in toks]
        elif toks[0] == b"VERSION" and len(toks) == 2:
            toks[1] = b"<version>"
        elif toks[0] == b"STAT" and len(toks) >= 3:
            toks = toks[:2] + [b"<value>"]
        out.append(toks)
    return out


def same(a, b):
    """Replies equal after normalize(), TTLs (t, exp=) within 1 s."""
    na, nb = normalize(a), normalize(b)
    if len(na) != len(nb):
        return False
    for la, lb in zip(na, nb):
        if len(la) != len(lb):
            return False
        for x, y in zip(la, lb):
            if x == y:
                continue
            mx = re.match(rb"^(t|exp=)(-?\d+)$", x)
            my = re.match(rb"^(t|exp=)(-?\d+)$", y)
            if not (mx and my and mx.group(1) == my.group(1) and
                    abs(int(mx.group(2)) - int(my.group(2))) <= 1):
                return False
    return True


class Results:
    """Counts checks; prints the RESULT line and exits accordingly."""

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0

    def check(self, cond, what, detail=""):
        if cond:
            self.passed += 1
            print("PASS: %s" % what)
        else:
            self.failed += 1
            print("FAIL: %s %s" % (what, detail))
        sys.stdout.flush()
        return cond

    def eq(self, got, want, what):
        return self.check(got == want, what,
                          "\n  got:  %r\n  want: %r" % (got, want))

    def run(self, fn, *args):
        """Run one test function; an exception is one failure."""
        try:
            fn(self, *args)
        except Exception:
            self.failed += 1
            print("FAIL: %s raised:" % fn.__name__)
            traceback.print_exc(file=sys.stdout)
        sys.stdout.flush()

    def finish(self):
        print("RESULT: %d passed, %d failed" % (self.passed, self.failed))
        sys.stdout.flush()
        sys.exit(1 if self.failed else 0)


def overall_deadline(seconds):
    """Abort the whole test program after `seconds` (scaled)."""
    def on_alarm(signum, frame):
        print("FAIL: test program exceeded its %.0f s deadline" %
              (seconds * SLOW))
        print("RESULT: 0 passed, 1 failed")
        sys.stdout.flush()
        os._exit(1)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(seconds * SLOW))
