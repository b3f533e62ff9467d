#!/usr/bin/env python3
"""test_tls.py - corrald -Z (TLS) with real TLS clients: Python's ssl
module, pymemcache with a tls_context, and openssl s_client.

A test CA, a server certificate for 127.0.0.1 and a client certificate
are generated at run time with openssl(1).  The server certificate is
checked by the clients (no verification shortcut), and with
ssl_verify_mode the server checks the client's.

What is covered: small and large values, long pipelines sent in large
TLS records (decrypted bytes left inside the TLS layer must still be
read) and requests split into one-byte records; a reader that stalls
(back-pressure under TLS); memcached's -o ssl_* options (key in the
chain file, DER keys, client certificates, the oldest version); -Y over
TLS; plain-text clients, abrupt disconnects and SIGTERM; configuration
errors.  Skipped, with a message, when corrald was built without
OpenSSL or openssl(1) is missing.
"""

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import SLOW  # noqa: E402


class Certs:
    """A CA, a server certificate for 127.0.0.1 and a client one."""

    def __init__(self, tmp):
        self.tmp = tmp
        p = self.path
        self.ok = True
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
              "-nodes"]
        self.run(["req", "-x509"] + ec + ["-keyout", p("ca.key"), "-out",
                 p("ca.pem"), "-days", "2", "-subj", "/CN=corral test CA"])
        for who, cn, ext in (("server", "127.0.0.1",
                              "subjectAltName=IP:127.0.0.1\n"
                              "extendedKeyUsage=serverAuth\n"),
                             ("client", "corral test client",
                              "extendedKeyUsage=clientAuth\n")):
            with open(p(who + ".ext"), "w") as f:
                f.write(ext)
            self.run(["req"] + ec + ["-keyout", p(who + ".key"), "-out",
                     p(who + ".csr"), "-subj", "/CN=" + cn])
            self.run(["x509", "-req", "-in", p(who + ".csr"), "-CA",
                      p("ca.pem"), "-CAkey", p("ca.key"), "-CAcreateserial",
                      "-out", p(who + ".pem"), "-days", "2", "-extfile",
                      p(who + ".ext")])
        # The key inside the chain file, and the key in DER.
        with open(p("both.pem"), "w") as out:
            for name in ("server.pem", "server.key"):
                with open(p(name)) as f:
                    out.write(f.read())
        self.run(["pkey", "-in", p("server.key"), "-outform", "DER", "-out",
                  p("server.der")])
        # A key that belongs to another certificate.
        self.run(["req", "-x509"] + ec + ["-keyout", p("other.key"),
                 "-out", p("other.pem"), "-days", "2", "-subj", "/CN=x"])

    def path(self, name):
        return os.path.join(self.tmp, name)

    def run(self, args):
        r = subprocess.run(["openssl"] + args, capture_output=True,
                           timeout=60)
        if r.returncode != 0:
            self.ok = False
            print("openssl %s: %s" % (" ".join(args), r.stderr.decode()))

    def client_ctx(self, cert=False, max_version=None):
        ctx = ssl.create_default_context(cafile=self.path("ca.pem"))
        if cert:
            ctx.load_cert_chain(self.path("client.pem"),
                                self.path("client.key"))
        if max_version is not None:
            ctx.maximum_version = max_version
        return ctx

    def server_args(self, extra=""):
        o = "ssl_chain_cert=%s,ssl_key=%s" % (self.path("server.pem"),
                                             self.path("server.key"))
        return ["-Z", "-o", o + extra]


class TLSClient(harness.Client):
    """harness.Client over TLS."""

    def __init__(self, port, ctx, timeout=10.0):
        raw = socket.create_connection(("127.0.0.1", port),
                                       timeout=timeout * SLOW)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        self.buf = b""


def tls_corrald(certs, args=(), extra="", env=None):
    return harness.corrald(certs.server_args(extra) + list(args), env=env,
                           wait=True)


def no_report(res, srv, what):
    err = srv.stderr_text()
    res.check("ERROR: AddressSanitizer" not in err and
              "ERROR: LeakSanitizer" not in err and
              "runtime error:" not in err and
              "WARNING: ThreadSanitizer" not in err,
              "%s: no sanitizer report" % what, err[-3000:])


def get_reply(key, value):
    return b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (key, len(value), value)


# ---------------------------------------------------------------------------

def t_basic(res, certs):
    with tls_corrald(certs, ["-t", "2", "-I", "2m"]) as srv:
        ctx = certs.client_ctx()
        with TLSClient(srv.port, ctx) as c:
            res.eq(c.request(b"set a 0 0 5\r\nhello\r\n"), b"STORED\r\n",
                   "TLS: set")
            c.send(b"get a\r\n")
            res.eq(c.read_value_reply(), get_reply(b"a", b"hello"),
                   "TLS: get")
            res.eq(c.sock.version() in ("TLSv1.2", "TLSv1.3"), True,
                   "TLS: protocol %s" % c.sock.version())
            big = bytes(range(256)) * 4096   # 1 MB
            res.eq(c.request(b"set big 0 0 %d\r\n" % len(big) + big +
                             b"\r\n"), b"STORED\r\n", "TLS: set 1 MB")
            c.send(b"get big big big\r\n")
            want = get_reply(b"big", big)[:-5] * 3 + b"END\r\n"
            r = c.read_exact(len(want))
            res.check(r == want, "TLS: three 1 MB values in one reply")
            # A pipeline of 10,000 sets, sent in large records.
            n = 10000
            c.send(b"".join(b"set p%d 0 0 %d\r\n%d\r\n" %
                            (i, len(b"%d" % i), i) for i in range(n)))
            r = c.read_exact(8 * n)
            res.check(r == b"STORED\r\n" * n, "TLS: 10,000 pipelined sets")
            # 200 KB of gets in one write, then nothing more is sent: the
            # last records' bytes must be read although the socket has
            # nothing left to read.
            keys = [b"p%d" % i for i in range(0, n, 7)]
            req = b"".join(b"get %s\r\n" % k for k in keys) * 3
            c.send(req)
            want = b"".join(get_reply(k, k[1:]) for k in keys) * 3
            r = c.read_exact(len(want))
            res.check(r == want, "TLS: %d KB of pipelined gets answered "
                      "whole" % (len(req) // 1024))
            # One request in one-byte records.
            for b in b"get a\r\n":
                c.send(bytes([b]))
            res.eq(c.read_value_reply(), get_reply(b"a", b"hello"),
                   "TLS: a request in one-byte records")
        with TLSClient(srv.port, ctx) as c:
            c.send(b"stats settings\r\n")
            st = c.read_until(b"END\r\n")
            res.check(b"STAT ssl_enabled yes\r\n" in st and
                      b"STAT ssl_min_version tlsv1.2\r\n" in st,
                      "TLS: stats settings report it")
        res.eq(srv.stop(), 0, "TLS basic: exit 0")
        no_report(res, srv, "TLS basic")


def t_slow_reader(res, certs):
    """A TLS client that stops reading stalls only itself."""
    with tls_corrald(certs, ["-t", "2"]) as srv:
        ctx = certs.client_ctx()
        v = b"s" * 100000
        with TLSClient(srv.port, ctx, timeout=30) as c, \
                TLSClient(srv.port, ctx) as other:
            c.request(b"set slow 0 0 %d\r\n" % len(v) + v + b"\r\n")
            n = 300   # 30 MB of replies
            c.send(b"get slow\r\n" * n)
            time.sleep(1.0)
            res.eq(other.request(b"version\r\n")[:8], b"VERSION ",
                   "TLS slow reader: others are served meanwhile")
            r = c.read_exact(n * len(get_reply(b"slow", v)))
            res.check(r == get_reply(b"slow", v) * n,
                      "TLS slow reader: every reply once it reads")
        res.eq(srv.stop(), 0, "TLS slow reader: exit 0")


def t_pymemcache(res, certs):
    try:
        from pymemcache.client.base import Client as PmClient
    except ImportError:
        print("SKIP: pymemcache over TLS: pymemcache is not installed "
              "(Debian: python3-pymemcache)")
        return
    with tls_corrald(certs, ["-t", "2"]) as srv:
        c = PmClient(("127.0.0.1", srv.port), tls_context=certs.client_ctx(),
                     default_noreply=False, timeout=10 * SLOW,
                     connect_timeout=5 * SLOW)
        res.check(c.set("tls:a", b"alpha"), "pymemcache TLS: set")
        res.eq(c.get("tls:a"), b"alpha", "pymemcache TLS: get")
        c.set_many({"tls:b": b"beta", "tls:n": b"41"})
        res.eq(c.get_many(["tls:a", "tls:b", "tls:none"]),
               {"tls:a": b"alpha", "tls:b": b"beta"},
               "pymemcache TLS: get_many")
        res.eq(c.incr("tls:n", 1), 42, "pymemcache TLS: incr")
        res.eq(c.delete("tls:a"), True, "pymemcache TLS: delete")
        res.check(int(c.stats()[b"curr_connections"]) >= 1,
                  "pymemcache TLS: stats")
        c.close()
        srv.stop()


def t_s_client(res, certs):
    with tls_corrald(certs, ["-t", "1"]) as srv:
        req = b"set sc 0 0 3\r\nabc\r\nget sc\r\nquit\r\n"
        p = subprocess.run(["openssl", "s_client", "-connect",
                            "127.0.0.1:%d" % srv.port, "-CAfile",
                            certs.path("ca.pem"), "-verify_return_error",
                            "-quiet", "-ign_eof"], input=req,
                           capture_output=True, timeout=30 * SLOW)
        res.check(p.stdout == b"STORED\r\nVALUE sc 0 3\r\nabc\r\nEND\r\n",
                  "openssl s_client: set, get, quit",
                  "%r %r" % (p.stdout, p.stderr[-500:]))
        srv.stop()


def t_options(res, certs):
    p = certs.path
    # The key inside the chain file.
    with harness.corrald(["-t", "1", "-Z", "--ssl-chain-cert",
                          p("both.pem")]) as srv:
        with TLSClient(srv.port, certs.client_ctx()) as c:
            res.eq(c.request(b"version\r\n")[:8], b"VERSION ",
                   "key in the chain file")
        srv.stop()
    # A DER key, through the environment.
    env = harness.sanitizer_env()
    env.update({"CORRAL_ENABLE_SSL": "1",
                "CORRAL_SSL_CHAIN_CERT": p("server.pem"),
                "CORRAL_SSL_KEY": p("server.der"),
                "CORRAL_SSL_KEYFORMAT": "DER"})
    with harness.corrald(["-t", "1"], env=env) as srv:
        with TLSClient(srv.port, certs.client_ctx()) as c:
            res.eq(c.request(b"version\r\n")[:8], b"VERSION ",
                   "a DER key, set in the environment")
        srv.stop()
    # Client certificates required.
    with tls_corrald(certs, ["-t", "1"], ",ssl_verify_mode=2,ssl_ca_cert=" +
                     p("ca.pem")) as srv:
        with TLSClient(srv.port, certs.client_ctx(cert=True)) as c:
            res.eq(c.request(b"version\r\n")[:8], b"VERSION ",
                   "ssl_verify_mode=2: a client with a certificate")
        refused = False
        try:
            with TLSClient(srv.port, certs.client_ctx()) as c:
                c.send(b"version\r\n")
                refused = c.read_eof(timeout=10) in (b"", None)
        except (ssl.SSLError, OSError):
            refused = True
        res.check(refused, "ssl_verify_mode=2: a client without one is "
                  "refused")
        srv.stop()
    # The oldest version.
    with tls_corrald(certs, ["-t", "1"], ",ssl_min_version=tlsv1.3") as srv:
        refused = False
        try:
            with TLSClient(srv.port, certs.client_ctx(
                    max_version=ssl.TLSVersion.TLSv1_2)) as c:
                c.request(b"version\r\n")
        except (ssl.SSLError, OSError, EOFError):
            refused = True
        res.check(refused, "ssl_min_version=tlsv1.3: a TLS 1.2 client is "
                  "refused")
        with TLSClient(srv.port, certs.client_ctx()) as c:
            res.eq(c.sock.version(), "TLSv1.3",
                   "ssl_min_version=tlsv1.3: TLS 1.3 served")
        srv.stop()


def t_auth(res, certs, tmp):
    authfile = os.path.join(tmp, "auth")
    with open(authfile, "w") as f:
        f.write("alice:secret\n")
    with tls_corrald(certs, ["-t", "1", "-Y", authfile]) as srv:
        with TLSClient(srv.port, certs.client_ctx()) as c:
            res.eq(c.request(b"get a\r\n"), b"CLIENT_ERROR unauthenticated\r\n",
                   "-Z -Y: refused before authenticating")
            res.eq(c.request(b"set a 0 0 12\r\nalice secret\r\n"),
                   b"STORED\r\n", "-Z -Y: authenticated over TLS")
            res.eq(c.request(b"get a\r\n"), b"END\r\n",
                   "-Z -Y: then served")
        srv.stop()


def t_bad_clients(res, certs):
    with tls_corrald(certs, ["-t", "2", "-I", "2m"]) as srv:
        # Plain text on a TLS port.
        with harness.Client(srv.port) as c:
            c.send(b"version\r\n")
            r = c.read_eof(timeout=10)
            res.check(r is not None and b"VERSION" not in r,
                      "a plain-text client is refused and closed")
        # Half a handshake, then gone; a handshake, then gone.
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        s.close()
        s = socket.create_connection(("127.0.0.1", srv.port))
        certs.client_ctx().wrap_socket(
            s, server_hostname="127.0.0.1").close()
        # In the middle of a large reply, with a reset.
        ctx = certs.client_ctx()
        with TLSClient(srv.port, ctx) as c:
            v = b"r" * 1000000
            c.request(b"set r 0 0 %d\r\n" % len(v) + v + b"\r\n")
        for i in range(10):
            c = TLSClient(srv.port, ctx)
            c.send(b"get r r r r\r\n")
            c.read_exact(1000 + i * 50000)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              b"\x01\x00\x00\x00\x00\x00\x00\x00")
            c.sock.close()
        with TLSClient(srv.port, ctx) as c:
            res.eq(c.request(b"version\r\n")[:8], b"VERSION ",
                   "still serving after bad and vanishing clients")
            c.send(b"stats\r\n")
            st = c.read_until(b"END\r\n")
            m = [ln for ln in st.split(b"\r\n")
                 if ln.startswith(b"STAT ssl_handshake_errors ")]
            res.check(m and int(m[0].split()[2]) >= 1,
                      "ssl_handshake_errors counted", repr(m))
        res.eq(srv.stop(), 0, "bad clients: exit 0")
        no_report(res, srv, "bad clients")


def t_sigterm(res, certs):
    with tls_corrald(certs, ["-t", "2"]) as srv:
        ctx = certs.client_ctx()
        clients = [TLSClient(srv.port, ctx, timeout=30) for _ in range(8)]
        errors = []
        pairs = [0] * len(clients)

        def run(i, c):
            # One thread per client (an SSL object must not be used by
            # two threads at once): keep two batches of 8 "set; get"
            # pairs in flight, reading one batch's replies per batch sent.
            sent = 0
            j = 0
            writing = True
            try:
                while writing or j < sent:
                    try:
                        if sent >= 100000:
                            raise OSError("enough")
                        c.send(b"".join(b"set t%d_%d 0 0 2\r\nok\r\n"
                                        b"get t%d_%d\r\n" % (i, k, i, k)
                                        for k in range(sent, sent + 8)))
                        sent += 8
                    except OSError:
                        writing = False   # closed for writing: read the rest
                    while j < (sent - 8 if writing else sent):
                        key = b"t%d_%d" % (i, j)
                        r = c.read_line()
                        if r != b"STORED\r\n":
                            errors.append((i, j, r))
                            return
                        r = c.read_value_reply()
                        if r != get_reply(key, b"ok"):
                            errors.append((i, j, r))
                            return
                        j += 1
                        pairs[i] = j
            except EOFError:
                if c.buf not in (b"", b"STORED\r\n"):
                    errors.append((i, "cut", c.buf[:80]))
            except (OSError, ssl.SSLError) as e:
                errors.append((i, "error", repr(e)))

        threads = [threading.Thread(target=run, args=(i, c))
                   for i, c in enumerate(clients)]
        for t in threads:
            t.start()
        end = time.time() + 20 * SLOW
        while time.time() < end and not all(p > 0 for p in pairs):
            time.sleep(0.05)
        res.check(all(p > 0 for p in pairs), "TLS SIGTERM: all clients "
                  "are pipelining")
        time.sleep(0.3)
        srv.signal(signal.SIGTERM)
        rc = srv.wait(timeout=60)
        for t in threads:
            t.join(60 * SLOW)
        res.eq(rc, 0, "TLS SIGTERM: exit 0")
        res.check(not errors, "TLS SIGTERM: every reply complete and "
                  "right (%d pairs)" % sum(pairs), repr(errors[:3]))
        for c in clients:
            c.close()
        no_report(res, srv, "TLS SIGTERM")


def run_corrald(args):
    p = subprocess.run([harness.CORRALD, "-p", "0"] + args,
                       env=harness.sanitizer_env(), capture_output=True,
                       timeout=20 * SLOW)
    return p.returncode, p.stderr.decode("utf-8", "replace")


def t_config_errors(res, certs):
    p = certs.path
    for name, args, code in (
            ("-Z without a certificate", ["-Z"], 64),
            ("a missing certificate", ["-Z", "-o", "ssl_chain_cert=" +
                                       p("missing.pem")], 78),
            ("a key that does not match", ["-Z", "--ssl-chain-cert",
                                           p("server.pem"), "--ssl-key",
                                           p("other.key")], 78),
            ("verify mode without CA", ["-Z", "--ssl-chain-cert",
                                        p("both.pem"), "--ssl-verify-mode",
                                        "2"], 64),
            ("an unknown -o name", ["-o", "ssl_nonsense=1"], 64),
            ("a bad version", ["-o", "ssl_min_version=9"], 64)):
        rc, err = run_corrald(args)
        res.check(rc == code, "%s: exit %d" % (name, code),
                  "exit %d: %s" % (rc, err[-500:]))


def tls_available():
    """corrald was built with OpenSSL (its --version says)."""
    p = subprocess.run([harness.CORRALD, "--version"], capture_output=True,
                       env=harness.sanitizer_env(), timeout=20 * SLOW)
    return b"TLS: not built in" not in p.stdout


def main():
    res = harness.Results("tls")
    harness.overall_deadline(400)
    if shutil.which("openssl") is None:
        print("SKIP: openssl(1) is not installed (Debian: apt-get install "
              "openssl)")
        res.finish()
    tmp = tempfile.mkdtemp(prefix="corral-tls-")
    try:
        certs = Certs(tmp)
        if not res.check(certs.ok, "test certificates generated"):
            res.finish()
        if not tls_available():
            print("SKIP: corrald was built without TLS (configure found "
                  "no OpenSSL; Debian: apt-get install libssl-dev)")
            res.finish()
        for t in (t_basic, t_slow_reader, t_pymemcache, t_s_client,
                  t_options, t_bad_clients, t_sigterm, t_config_errors):
            res.run(t, certs)
        res.run(t_auth, certs, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res.finish()


if __name__ == "__main__":
    main()
