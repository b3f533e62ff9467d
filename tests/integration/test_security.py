#!/usr/bin/env python3
"""test_security.py - corrald's security defaults and options:

  - it binds 127.0.0.1 unless told otherwise, and opens no UDP socket
    (checked in /proc: the sockets the process holds);
  - -U accepts only 0;
  - the commands that change the server can be refused: flush_all (-F),
    verbosity (--disable-verbosity), shutdown (off unless -A), by flag
    or environment variable, with memcached's replies where memcached
    has the option;
  - -Y authentication, side by side with memcached -Y for each exchange,
    then what corrald adds: one reply per pipelined line, bounded buffers
    before authentication, counters, and a clear refusal of a bad file.
"""

import os
import re
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Client, SLOW  # noqa: E402


def socket_inodes(pid):
    """The inodes of the sockets process @pid holds."""
    out = set()
    d = "/proc/%d/fd" % pid
    for fd in os.listdir(d):
        try:
            link = os.readlink(os.path.join(d, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", link)
        if m:
            out.add(m.group(1))
    return out


def proc_net(kind):
    """Rows of /proc/net/<kind>: (local address hex, state, inode)."""
    rows = []
    try:
        with open("/proc/net/" + kind) as f:
            next(f)
            for line in f:
                p = line.split()
                rows.append((p[1], p[3], p[9]))
    except OSError:
        pass
    return rows


def listening(pid):
    """{"tcp": [(addr, port)], "tcp6": [...], "udp": [...], "udp6": [...]}
    for the sockets of @pid (TCP: listening ones only)."""
    mine = socket_inodes(pid)
    out = {}
    for kind in ("tcp", "tcp6", "udp", "udp6"):
        out[kind] = []
        for local, state, inode in proc_net(kind):
            if inode not in mine:
                continue
            if kind.startswith("tcp") and state != "0A":   # TCP_LISTEN
                continue
            addr, port = local.split(":")
            out[kind].append((addr, int(port, 16)))
    return out


def start_plain(args, env=None, port=None):
    """corrald without the harness's "-l 127.0.0.1": its own defaults."""
    port = port or harness.free_port()
    argv = [harness.CORRALD, "-p", str(port)] + list(args)
    return harness.Server(argv, port, env=env or harness.sanitizer_env(),
                          name="corrald").start(wait=False)


def run_corrald(args, env=None, timeout=10):
    e = harness.sanitizer_env()
    e.update(env or {})
    p = subprocess.run([harness.CORRALD] + args, env=e, capture_output=True,
                       timeout=timeout * SLOW)
    return p.returncode, p.stderr.decode("utf-8", "replace")


def wait_listening(srv, host="127.0.0.1"):
    end = time.time() + 10 * SLOW
    while time.time() < end:
        try:
            socket.create_connection((host, srv.port), timeout=1).close()
            return True
        except OSError:
            if srv.proc.poll() is not None:
                return False
            time.sleep(0.05)
    return False


# ---------------------------------------------------------------------------
# binding and UDP

def t_default_bind(res):
    with start_plain(["-t", "1"]) as srv:
        res.check(wait_listening(srv), "default: serving on 127.0.0.1")
        socks = listening(srv.proc.pid)
        res.eq(socks["tcp"], [("0100007F", srv.port)],
               "default: the only listening socket is 127.0.0.1")
        res.eq(socks["tcp6"], [], "default: nothing on IPv6")
        res.eq(socks["udp"] + socks["udp6"], [], "default: no UDP socket")
        res.eq(srv.stop(), 0, "default: exit 0")
    # -l is honoured: another loopback address, then the environment.
    with start_plain(["-t", "1", "-l", "127.0.0.2"]) as srv:
        res.check(wait_listening(srv, "127.0.0.2"), "-l 127.0.0.2: serving")
        res.eq(listening(srv.proc.pid)["tcp"], [("0200007F", srv.port)],
               "-l 127.0.0.2: bound there only")
        srv.stop()
    env = harness.sanitizer_env()
    env["CORRAL_LISTEN"] = "127.0.0.3"
    with start_plain(["-t", "1"], env=env) as srv:
        res.check(wait_listening(srv, "127.0.0.3"), "CORRAL_LISTEN: serving")
        res.eq(listening(srv.proc.pid)["tcp"], [("0300007F", srv.port)],
               "CORRAL_LISTEN=127.0.0.3: bound there only")
        srv.stop()


def t_no_udp(res):
    for args, env in ((["-U", "11211"], None), (["--udp-port=1"], None),
                      ([], {"CORRAL_UDP_PORT": "11211"})):
        rc, err = run_corrald(["-p", "0"] + args, env)
        res.check(rc == 64 and "UDP" in err, "UDP refused: %s %s" %
                  (" ".join(args), env or ""), "exit %d: %s" % (rc, err))
    with start_plain(["-t", "1", "-U", "0"]) as srv:
        res.check(wait_listening(srv), "-U 0 accepted")
        socks = listening(srv.proc.pid)
        res.eq(socks["udp"] + socks["udp6"], [], "-U 0: no UDP socket")
        srv.stop()


# ---------------------------------------------------------------------------
# commands that change the server

def t_disabled_commands(res):
    with harness.corrald(["-t", "1", "-F", "--disable-verbosity"]) as srv:
        with Client(srv.port) as c:
            c.request(b"set keep 0 0 1\r\nk\r\n")
            res.eq(c.request(b"flush_all\r\n"),
                   b"CLIENT_ERROR flush_all not allowed\r\n",
                   "-F: flush_all refused")
            res.eq(c.request(b"flush_all 0\r\n"),
                   b"CLIENT_ERROR flush_all not allowed\r\n",
                   "-F: flush_all with a delay refused")
            res.eq(c.request(b"verbosity 2\r\n"),
                   b"CLIENT_ERROR verbosity not allowed\r\n",
                   "--disable-verbosity: verbosity refused")
            res.eq(c.request(b"verbosity 2 noreply\r\nget keep\r\n"),
                   b"VALUE keep 0 1\r\n",
                   "refusals honour noreply; data untouched")
            c.read_line()
            c.read_line()
            res.eq(c.request(b"shutdown\r\n"),
                   b"ERROR: shutdown not enabled\r\n",
                   "shutdown refused without -A")
            c.send(b"stats settings\r\n")
            st = c.read_until(b"END\r\n")
            res.check(b"STAT flush_enabled no\r\n" in st and
                      b"STAT verbosity 0\r\n" in st and
                      b"STAT shutdown_command no\r\n" in st,
                      "stats settings reports them")
        res.eq(srv.stop(), 0, "disabled commands: exit 0")
    env = harness.sanitizer_env()
    env.update({"CORRAL_DISABLE_FLUSH_ALL": "yes",
                "CORRAL_DISABLE_VERBOSITY": "1"})
    with harness.corrald(["-t", "1"], env=env) as srv:
        with Client(srv.port) as c:
            res.eq(c.request(b"flush_all\r\n"),
                   b"CLIENT_ERROR flush_all not allowed\r\n",
                   "CORRAL_DISABLE_FLUSH_ALL=yes")
            res.eq(c.request(b"verbosity 1\r\n"),
                   b"CLIENT_ERROR verbosity not allowed\r\n",
                   "CORRAL_DISABLE_VERBOSITY=1")
        srv.stop()
    with harness.corrald(["-t", "1"]) as srv:
        with Client(srv.port) as c:
            res.eq(c.request(b"verbosity 1\r\n"), b"OK\r\n",
                   "verbosity allowed by default")
            res.eq(c.request(b"flush_all\r\n"), b"OK\r\n",
                   "flush_all allowed by default")
        srv.stop()
    if harness.have_memcached():
        with harness.memcached(["-F"]) as mc:
            with Client(mc.port) as c:
                res.eq(c.request(b"flush_all\r\n"),
                       b"CLIENT_ERROR flush_all not allowed\r\n",
                       "memcached -F gives the same reply")
                res.eq(c.request(b"shutdown\r\n"),
                       b"ERROR: shutdown not enabled\r\n",
                       "memcached without -A gives the same reply")


# ---------------------------------------------------------------------------
# authentication

# Each case: a list of chunks sent one at a time on a fresh connection,
# the replies to each read before the next (memcached 1.6.18 drops all
# but the last reply of a batch read before authentication).
AUTH_CASES = [
    ("a command before authenticating", [b"get foo\r\n"]),
    ("version before authenticating", [b"version\r\n"]),
    ("quit before authenticating", [b"quit\r\n"]),
    ("meta before authenticating", [b"mn\r\n"]),
    ("an empty line", [b"\r\n"]),
    ("a good token", [b"set auth 0 0 12\r\nalice secret\r\n",
                      b"set k 0 0 2\r\nhi\r\n", b"get k\r\n"]),
    ("the second user", [b"set x 1 2 11\r\nbob hunter2\r\n", b"get x\r\n"]),
    ("key, flags and exptime ignored",
     [b"set whatever 99 999 12\r\nalice secret\r\n", b"mn\r\n"]),
    ("noreply still answered", [b"set a 0 0 12 noreply\r\nalice secret\r\n",
                                b"version\r\n"]),
    ("a wrong password", [b"set a 0 0 12\r\nalice wrong!\r\n",
                          b"get k\r\n"]),
    ("an unknown user", [b"set a 0 0 12\r\nmallory pass\r\n"]),
    ("a password prefix", [b"set a 0 0 11\r\nalice secre\r\n"]),
    ("a password with more", [b"set a 0 0 13\r\nalice secret2\r\n"]),
    ("no password", [b"set a 0 0 5\r\nalice\r\n"]),
    ("extra tokens in the data", [b"set a 0 0 18\r\nalice secret extra\r\n",
                                  b"mn\r\n"]),
    ("data not ended by \\r\\n", [b"set a 0 0 12\r\nalice secretXX"]),
    ("add is not authentication", [b"add a 0 0 12\r\n", b"mn\r\n"]),
    ("set without a length", [b"set a 0 0\r\n"]),
    ("set with a bad length", [b"set a 0 0 x\r\n"]),
    ("retry after a failure",
     [b"set a 0 0 12\r\nalice wrong!\r\n",
      b"set a 0 0 12\r\nalice secret\r\n", b"get k\r\n"]),
    ("line ending in \\n only", [b"set a 0 0 12\nalice secret\r\n",
                                 b"mn\r\n"]),
]


def auth_exchange(port, chunks, wait=0.3):
    """The replies to each chunk: what arrives within @wait seconds."""
    out = []
    with Client(port, timeout=10) as c:
        for ch in chunks:
            c.send(ch)
            out.append(c.drain_available(wait))
    return out


def t_auth_differential(res, authfile):
    if not harness.have_memcached():
        res.check(False, "memcached installed for the comparison")
        return
    cd = harness.corrald(["-t", "1", "-Y", authfile])
    mc = harness.memcached(["-Y", authfile])
    try:
        for name, chunks in AUTH_CASES:
            got = auth_exchange(cd.port, chunks)
            want = auth_exchange(mc.port, chunks)
            if not all(harness.same(g, w) for g, w in zip(got, want)):
                # A reply later than the wait counts for the next chunk:
                # a difference is one only if a longer wait shows it too.
                got = auth_exchange(cd.port, chunks, wait=3)
                want = auth_exchange(mc.port, chunks, wait=3)
            res.check(all(harness.same(g, w) for g, w in zip(got, want)),
                      "-Y: %s (as memcached)" % name,
                      "\n  corrald:   %r\n  memcached: %r" % (got, want))
    finally:
        cd.close()
        mc.close()


def t_auth_own(res, authfile):
    """What corrald adds to memcached's -Y behaviour."""
    with harness.corrald(["-t", "2", "-Y", authfile]) as srv:
        with Client(srv.port) as c:
            # Every line is answered, even pipelined.
            c.send(b"get a\r\nget b\r\nversion\r\n")
            r = b"".join(c.read_line() for _ in range(3))
            res.eq(r, b"CLIENT_ERROR unauthenticated\r\n" * 3,
                   "-Y: one refusal per pipelined line")
            c.send(b"set a 0 0 12\r\nalice secret\r\nset k 0 0 1\r\n1\r\n"
                   b"get k\r\n")
            r = b"".join(c.read_line() for _ in range(5))
            res.eq(r, b"STORED\r\nSTORED\r\nVALUE k 0 1\r\n1\r\nEND\r\n",
                   "-Y: commands pipelined behind the token are served")
        with Client(srv.port) as c:
            # A token too large is refused and its bytes discarded as
            # they come, never buffered: the connection stays in step.
            n = 5000000
            res.eq(c.request(b"set a 0 0 %d\r\n" % n),
                   b"CLIENT_ERROR authentication failure\r\n",
                   "-Y: an oversized token is refused at once")
            chunk = b"z" * 65536
            left = n + 2
            while left > 0:
                c.send(chunk[:left])
                left -= min(left, len(chunk))
            res.eq(c.request(b"set a 0 0 11\r\nbob hunter2\r\n"),
                   b"STORED\r\n", "-Y: then authentication works")
        with Client(srv.port) as c:
            c.send(b"x" * 3000)
            res.eq(c.read_eof(), b"", "-Y: an unterminated line over 2048 "
                   "bytes before authenticating closes")
        with Client(srv.port) as c:
            c.request(b"set a 0 0 11\r\nbob hunter2\r\n")
            c.send(b"stats\r\n")
            st = c.read_until(b"END\r\n")
            m = dict(re.findall(rb"STAT (auth_\w+) (\d+)", st))
            res.check(int(m.get(b"auth_cmds", 0)) >= 4 and
                      int(m.get(b"auth_errors", 0)) >= 1,
                      "-Y: auth_cmds and auth_errors counted", repr(m))
            c.send(b"stats settings\r\n")
            st = c.read_until(b"END\r\n")
            res.check(b"STAT auth_enabled_ascii yes\r\n" in st,
                      "-Y: stats settings auth_enabled_ascii yes")
        res.eq(srv.stop(), 0, "-Y: exit 0")
    env = harness.sanitizer_env()
    env["CORRAL_AUTH_FILE"] = authfile
    with harness.corrald(["-t", "1"], env=env) as srv:
        with Client(srv.port) as c:
            res.eq(c.request(b"get a\r\n"), b"CLIENT_ERROR unauthenticated\r\n",
                   "CORRAL_AUTH_FILE: authentication required")
        srv.stop()


def t_auth_file_forms(res, tmp):
    """Blank lines and CRLF line ends are accepted (memcached refuses a
    blank line); a password may hold ':'."""
    path = os.path.join(tmp, "forms")
    with open(path, "wb") as f:
        f.write(b"\r\nalice:secret\r\n\ncarol:a:b:c\n\n")
    with harness.corrald(["-t", "1", "-Y", path]) as srv:
        for token in (b"alice secret", b"carol a:b:c"):
            with Client(srv.port) as c:
                res.eq(c.request(b"set a 0 0 %d\r\n%s\r\n" %
                                 (len(token), token)), b"STORED\r\n",
                       "-Y file forms: %s" % token.split()[0].decode())
        srv.stop()


def t_auth_file_errors(res, tmp):
    cases = [
        ("a missing file", os.path.join(tmp, "nope"), None),
        ("an empty file", os.path.join(tmp, "empty"), b""),
        ("a line without ':'", os.path.join(tmp, "nocolon"),
         b"alice:secret\nbob\n"),
        ("an empty password", os.path.join(tmp, "nopass"), b"alice:\n"),
        ("a space in a password", os.path.join(tmp, "space"),
         b"alice:sec ret\n"),
    ]
    for name, path, content in cases:
        if content is not None:
            with open(path, "wb") as f:
                f.write(content)
        rc, err = run_corrald(["-p", "0", "-Y", path])
        res.check(rc == 78 and path in err,
                  "-Y with %s: refused at startup (exit 78, names the file)"
                  % name, "exit %d: %s" % (rc, err))


def main():
    res = harness.Results("security")
    harness.overall_deadline(300)
    tmp = tempfile.mkdtemp(prefix="corral-sec-")
    os.chmod(tmp, 0o755)   # memcached may read it as "nobody"
    authfile = os.path.join(tmp, "auth")
    with open(authfile, "w") as f:
        f.write("alice:secret\r\nbob:hunter2\n")
    os.chmod(authfile, 0o644)
    try:
        res.run(t_default_bind)
        res.run(t_no_udp)
        res.run(t_disabled_commands)
        res.run(t_auth_differential, authfile)
        res.run(t_auth_own, authfile)
        res.run(t_auth_file_forms, tmp)
        res.run(t_auth_file_errors, tmp)
    finally:
        for name in os.listdir(tmp):
            os.unlink(os.path.join(tmp, name))
        os.rmdir(tmp)
    res.finish()


if __name__ == "__main__":
    main()
