"""test_introspection.py - what operators look at: memcached-tool's views,
the watch log streams, stats hotkeys, stats corral, and the log levels.

  * memcached-tool (Debian's memcached package) runs its display, stats
    and settings views against corrald and prints what they should.
  * "watch fetchers mutations" receives, for one scripted sequence of
    requests, the same lines from corrald as from memcached 1.6, once the
    fields that legitimately differ are masked (timestamp, gid, client
    descriptor; TTLs within 3 s).
  * watch semantics: -W, the 20-watcher limit, a watch behind pipelined
    replies, several watchers, stats, a watcher that does not read
    ("skipped=N"), closing.
  * stats hotkeys finds the hot key, exactly with --hot-keys-sample 1 and
    by sampling with the default.
  * logging: nothing per request by default; -vv one line per command.
"""

import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Client, Results  # noqa: E402

MEMCACHED_TOOL = "/usr/share/memcached/scripts/memcached-tool"


def tool(port, mode):
    out = subprocess.run(["perl", MEMCACHED_TOOL, "127.0.0.1:%d" % port,
                          mode], capture_output=True, timeout=30 *
                         harness.SLOW)
    return out.returncode, out.stdout.decode(), out.stderr.decode()


def t_memcached_tool(res, port):
    if not os.path.exists(MEMCACHED_TOOL):
        res.check(False, "memcached-tool at %s (Debian's memcached)" %
                  MEMCACHED_TOOL)
        return
    with Client(port) as c:
        for i in range(50):
            c.send(b"set tool%d 0 0 100\r\n%s\r\n" % (i, b"v" * 100))
            c.read_line()
        c.send(b"stats\r\n")
        items = int(re.search(rb"STAT curr_items (\d+)",
                              c.read_until(b"END\r\n")).group(1))
    rc, out, err = tool(port, "display")
    lines = out.splitlines()
    res.eq(rc, 0, "memcached-tool display exits 0")
    res.check(lines and lines[0].split() ==
              ["#", "Item_Size", "Max_age", "Pages", "Count", "Full?",
               "Evicted", "Evict_Time", "OOM"], "display header", out)
    row = [ln.split() for ln in lines[1:]]
    res.check(len(row) == 1 and row[0][0] == "1" and
              int(row[0][4]) == items and row[0][5] == "no",
              "display: one class holding every item, not full", out + err)
    rc, out, err = tool(port, "stats")
    res.eq(rc, 0, "memcached-tool stats exits 0")
    fields = dict(ln.split(None, 1) for ln in out.splitlines()[1:]
                  if len(ln.split(None, 1)) == 2)
    res.check(out.startswith("#127.0.0.1:%d" % port) and
              fields.get("curr_items", "").strip() == str(items) and
              "get_hits" in fields and "version" in fields,
              "stats view: curr_items, get_hits, version", out[:300])
    rc, out, err = tool(port, "settings")
    res.eq(rc, 0, "memcached-tool settings exits 0")
    fields = dict(ln.split(None, 1) for ln in out.splitlines()[1:]
                  if len(ln.split(None, 1)) == 2)
    res.check(fields.get("maxbytes", "").strip() == str(64 << 20) and
              fields.get("tcpport", "").strip() == str(port),
              "settings view: maxbytes, tcpport", out[:300])


# The scripted sequence: each request is sent once its predecessor has
# been answered, so both servers see the same order.
SCRIPT = [
    b"set t1 0 100 1\r\nx\r\n", b"get t1\r\n", b"get nope\r\n",
    b"get t1 nope t1\r\n", b"gets t1\r\n", b"gat 100 t1\r\n",
    b"touch t1 10\r\n", b"touch nope 1\r\n",
    b"add t1 0 0 1\r\ny\r\n", b"replace zz 0 0 1\r\ny\r\n",
    b"append zz 0 0 1\r\ny\r\n", b"prepend t1 0 0 1\r\ny\r\n",
    b"cas zz 0 0 1 5\r\ny\r\n", b"set n 0 0 1\r\n5\r\n", b"incr n 3\r\n",
    b"decr n 1\r\n", b"cas n 0 0 1 999\r\nz\r\n", b"incr nope 1\r\n",
    b"delete t1\r\n", b"delete t1\r\n", b"set t2 0 -1 1\r\nx\r\n",
    b"get t2\r\n", b"set a%b/c 0 0 1\r\nx\r\n", b"get a%b/c\r\n",
    b"mg n v\r\n", b"mg miss v\r\n", b"ms m 2\r\nhi\r\n",
    b"ms x 2 MA\r\nab\r\n", b"ms x 2 ME\r\nab\r\n", b"ms x 2 T50\r\nab\r\n",
    b"ms x 2 MR\r\nab\r\n", b"md m\r\n", b"ma n\r\n", b"ma cnt N0 J5\r\n",
    b"mg viv N30 v\r\n", b"me n\r\n", b"mn\r\n", b"ms Zm9v 1 b\r\nx\r\n",
    b"mg Zm9v b v\r\n", b"flush_all\r\n", b"get n\r\n",
]


def run_script(port, streams=b"fetchers mutations"):
    """Watch, run SCRIPT, and return the watcher's lines up to the one
    for the final sentinel lookup."""
    w = socket.create_connection(("127.0.0.1", port),
                                 timeout=10 * harness.SLOW)
    w.sendall(b"watch " + streams + b"\r\n")
    buf = b""
    while b"\r\n" not in buf:
        buf += w.recv(4096)
    ok, _, buf = buf.partition(b"\r\n")
    with Client(port) as c:
        for req in SCRIPT:
            c.send(req + b"mn\r\n")
            c.read_until(b"MN\r\n")
        c.send(b"get zz_sentinel\r\n")
        c.read_value_reply()
    while b"key=zz_sentinel " not in buf:
        d = w.recv(65536)
        if not d:
            break
        buf += d
    w.close()
    return ok, buf.decode("utf-8", "replace").splitlines()


LINE_RE = re.compile(r"^ts=\d+\.\d{1,6} gid=\d+ type=(item_get|item_store) ")


def masked(line):
    """A line without what differs between servers: the timestamp, the
    gid and the client's descriptor.  Both say "expired" or "flushed" for
    an item not reclaimed yet and "not_found" once it is, but reclaim at
    different moments (memcached in background threads, corrald on
    lookups and writes)."""
    line = re.sub(r"^ts=\S+ gid=\d+ ", "", line)
    line = re.sub(r" status=(expired|flushed) ", " status=not_found ", line)
    return re.sub(r" cfd=\d+ ", " cfd=C ", line)


def same_line(a, b):
    ta, tb = masked(a).split(" "), masked(b).split(" ")
    if len(ta) != len(tb):
        return False
    for x, y in zip(ta, tb):
        if x == y:
            continue
        if x.startswith("ttl=") and y.startswith("ttl="):
            if abs(int(x[4:]) - int(y[4:])) <= 3:
                continue
        return False
    return True


def t_watch_vs_memcached(res, port):
    if not harness.have_memcached():
        res.check(False, "memcached installed for the comparison")
        return
    with harness.memcached(["-t", "2"]) as mc:
        ok_mc, want = run_script(mc.port)
    ok, got = run_script(port)
    res.eq(ok, ok_mc, "watch answers OK as memcached does")
    res.check(all(LINE_RE.match(ln) for ln in got),
              "every line: ts=<sec>.<usec> gid=<n> type=...",
              "\n".join(ln for ln in got if not LINE_RE.match(ln))[:500])
    gids = [int(re.search(r"gid=(\d+)", ln).group(1)) for ln in got]
    res.check(gids == sorted(gids) and len(set(gids)) == len(gids),
              "gids increase")
    ts = [float(re.match(r"ts=(\S+)", ln).group(1)) for ln in got]
    res.check(all(abs(t - time.time()) < 120 for t in ts),
              "timestamps are the time of day")
    diff = []
    for i in range(max(len(got), len(want))):
        a = got[i] if i < len(got) else "(none)"
        b = want[i] if i < len(want) else "(none)"
        if not same_line(a, b):
            diff.append("  corrald:   %s\n  memcached: %s" % (a, b))
    res.check(not diff and len(got) == len(want),
              "the same %d fetchers and mutations lines as memcached" %
              len(want), "\n" + "\n".join(diff[:12]))


def read_lines(sock, n, timeout=10.0):
    sock.settimeout(timeout * harness.SLOW)
    buf = b""
    while buf.count(b"\n") < n:
        d = sock.recv(65536)
        if not d:
            break
        buf += d
    return buf.decode("utf-8", "replace").splitlines()


def t_watch_semantics(res, port):
    watchers = []
    for streams in (b"fetchers", b"mutations", b"fetchers mutations",
                    b"evictions"):
        w = socket.create_connection(("127.0.0.1", port))
        w.sendall(b"watch " + streams + b"\r\n")
        res.eq(read_lines(w, 1), ["OK"], "watch %s: OK" % streams.decode())
        watchers.append(w)
    with Client(port) as c:
        res.eq(c.request(b"set w1 0 0 1\r\nx\r\n"), b"STORED\r\n", "set")
        c.send(b"get w1\r\n")
        c.read_value_reply()
        f = read_lines(watchers[0], 2)
        m = read_lines(watchers[1], 1)
        both = read_lines(watchers[2], 3)
        res.check(len(f) == 2 and "type=item_get key=w1 status=not_found" in
                  f[0] and "status=found" in f[1], "fetchers watcher", f)
        res.check(len(m) == 1 and "type=item_store key=w1 status=stored "
                  "cmd=set ttl=0 clsid=1" in m[0], "mutations watcher", m)
        res.eq([masked(x) for x in both], [masked(f[0]), masked(m[0]),
                                           masked(f[1])],
               "a watcher of both streams gets both, in order")
        c.send(b"stats\r\n")
        st = c.read_until(b"END\r\n")
        res.check(b"STAT log_watchers 4\r\n" in st, "stats: log_watchers 4")
        res.check(int(re.search(rb"STAT log_watcher_sent (\d+)",
                                st).group(1)) >= 6, "stats: log_watcher_sent")
        c.send(b"stats conns\r\n")
        res.check(c.read_until(b"END\r\n").count(b"conn_watch") == 4,
                  "stats conns shows the watchers in conn_watch")
        # A watch behind a reply still queued is refused; requests after a
        # successful watch in the same packet are not executed.
        c.send(b"version\r\nwatch\r\n")
        c.read_line()
        res.eq(c.read_line(),
               b"ERROR cannot pipeline other commands before watch\r\n",
               "pipelined watch refused")
    with Client(port) as c:
        c.send(b"watch mutations\r\nset never 0 0 1\r\nx\r\n")
        res.eq(c.read_line(), b"OK\r\n", "watch with a request behind it")
        c.send(b"get whatever\r\n")   # read and discarded
    with Client(port) as c:
        c.send(b"get never\r\n")
        res.eq(c.read_value_reply(), b"END\r\n",
               "requests after a watch are not executed")
    # The limit: 20 watchers (4 are open now).
    extra = []
    for i in range(16):
        w = socket.create_connection(("127.0.0.1", port))
        w.sendall(b"watch fetchers\r\n")
        read_lines(w, 1)
        extra.append(w)
    with Client(port) as c:
        res.eq(c.request(b"watch\r\n"),
               b"WATCHER_TOO_MANY log watcher limit reached\r\n",
               "the 21st watcher is refused")
        res.eq(c.request(b"version\r\n")[:8], b"VERSION ",
               "and its connection still serves requests")
    for w in extra + watchers:
        w.close()
    st = [b""]

    def gone():
        with Client(port) as c:
            c.send(b"stats\r\n")
            st[0] = c.read_until(b"END\r\n")
        return b"STAT log_watchers 0\r\n" in st[0]
    res.check(harness.wait_for(gone, 10), "closed watchers are gone",
              repr(st[0][-400:]))


def t_watch_slow(res, port):
    """A watcher that does not read loses lines, never memory, and is told
    how many it lost."""
    w = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    w.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    w.connect(("127.0.0.1", port))
    w.sendall(b"watch fetchers\r\n")
    res.eq(read_lines(w, 1), ["OK"], "watch")
    keys = b" ".join(b"slow_key_%d" % i for i in range(100))
    with Client(port) as c:
        for _ in range(1000):       # 100,000 lines, about 10 MB
            c.send(b"get " + keys + b"\r\n")
            c.read_value_reply()
        c.send(b"stats\r\n")
        st = c.read_until(b"END\r\n")
    skipped = int(re.search(rb"STAT log_watcher_skipped (\d+)", st).group(1))
    res.check(skipped > 0, "stats: lines skipped (%d)" % skipped)
    # The watcher drains what was queued before the gap (a buffer's worth,
    # through a 4 KiB receive buffer: slow on a loaded machine); a line
    # offered while its buffer is full is skipped too, so the request is
    # repeated every half second until its line arrives.
    w.settimeout(0.5)
    buf = b""
    with Client(port) as c:
        deadline = time.time() + 60 * harness.SLOW
        last = 0.0
        while b"after_the_gap" not in buf and time.time() < deadline:
            if time.time() - last >= 0.5:
                c.send(b"get after_the_gap\r\n")
                c.read_value_reply()
                last = time.time()
            try:
                d = w.recv(1 << 20)
            except socket.timeout:
                continue
            if not d:
                break
            buf += d
    m = re.search(rb"\nskipped=(\d+)\n", buf)
    res.check(m is not None and int(m.group(1)) > 0,
              "the watcher is told: skipped=N")
    res.check(b"after_the_gap" in buf, "and gets lines again afterwards")
    w.close()


def t_watch_evictions(res):
    """watch evictions: one line per item evicted, with memcached's fields;
    and fetchers say expired and flushed as memcached does."""
    with harness.corrald(["-m", "2", "-t", "2"]) as srv, \
            Client(srv.port) as c:
        w = socket.create_connection(("127.0.0.1", srv.port))
        w.sendall(b"watch evictions\r\n")
        res.eq(read_lines(w, 1), ["OK"], "watch evictions: OK")
        value = b"v" * 10240
        for i in range(600):
            c.send(b"set ev%d 7 0 %d noreply\r\n%s\r\n" %
                   (i, len(value), value))
        c.send(b"stats\r\n")
        st = c.read_until(b"END\r\n")
        evicted = int(re.search(rb"STAT evictions (\d+)", st).group(1))
        res.check(evicted > 100, "600 sets of 10 KB into -m 2 evict",
                  "evictions %d" % evicted)
        lines = read_lines(w, evicted)
        w.settimeout(0.3)
        try:
            extra = w.recv(65536)
        except socket.timeout:
            extra = b""
        pat = re.compile(r"^ts=\d+\.\d+ gid=\d+ type=eviction key=ev\d+ "
                         r"fetch=no ttl=-1 la=\d+ clsid=1 size=10240$")
        bad = [ln for ln in lines if not pat.match(ln)]
        res.check(len(lines) == evicted and extra == b"",
                  "one line per eviction (%d)" % evicted,
                  "%d lines, then %r" % (len(lines), extra[:100]))
        res.check(not bad, "every line in memcached's format", bad[:3])
        w.close()

    with harness.corrald(["-t", "1"]) as srv, Client(srv.port) as c:
        w = socket.create_connection(("127.0.0.1", srv.port))
        w.sendall(b"watch fetchers\r\n")
        res.eq(read_lines(w, 1), ["OK"], "watch fetchers: OK")
        res.eq(c.request(b"set soon 0 1 1\r\nx\r\n"), b"STORED\r\n",
               "set with a 1 s TTL")
        res.eq(c.request(b"set gone 0 0 1\r\nx\r\n"), b"STORED\r\n", "set")
        time.sleep(2.1)
        res.eq(c.request(b"flush_all\r\n"), b"OK\r\n", "flush_all")
        c.send(b"get soon\r\nget gone\r\nget never\r\n")
        for _ in range(3):
            c.read_until(b"END\r\n")
        f = read_lines(w, 5)[2:]   # after the lookups the sets log
        res.check(len(f) == 3 and "key=soon status=expired" in f[0] and
                  "key=gone status=flushed" in f[1] and
                  "key=never status=not_found" in f[2],
                  "fetchers: expired, flushed, not_found", f)
        w.close()


def t_watch_disabled(res):
    with harness.corrald(["-W"]) as srv, Client(srv.port) as c:
        res.eq(c.request(b"watch fetchers\r\n"),
               b"CLIENT_ERROR watch commands not allowed\r\n",
               "-W refuses watch")


def hotkeys(c, arg=b""):
    c.send(b"stats hotkeys" + arg + b"\r\n")
    r = c.read_until(b"END\r\n")
    return dict(re.findall(rb"STAT (\S+) (\S+)\r\n", r))


def t_hotkeys(res):
    with harness.corrald(["--hot-keys-sample", "1"]) as srv, \
            Client(srv.port) as c:
        c.send(b"set hot 0 0 1\r\nx\r\n")
        c.read_line()
        for i in range(500):
            c.send(b"get hot\r\n")
            c.read_value_reply()
        for i in range(20):
            for _ in range(10):
                c.send(b"get cold%d\r\n" % i)
                c.read_value_reply()
        c.send(b"ms AP9rZXk= 1 b\r\nx\r\n")  # base64 of b"\x00\xffkey"
        c.read_line()
        h = hotkeys(c)
        res.eq(h.get(b"hotkeys_sample"), b"1", "sample 1")
        res.eq(h.get(b"hotkey:1:key"), b"hot", "the hot key comes first")
        res.eq(h.get(b"hotkey:1:requests"), b"501",
               "exact count with sample 1 (set + 500 gets)")
        res.eq(h.get(b"hotkey:1:error"), b"0", "no error")
        res.check(float(h.get(b"hotkey:1:rate", b"0")) > 0, "a rate")
        res.check(b"hotkey:10:key" in h and b"hotkey:11:key" not in h,
                  "ten keys by default")
        h = hotkeys(c, b" 3")
        res.check(b"hotkey:3:key" in h and b"hotkey:4:key" not in h,
                  "stats hotkeys 3")
        res.eq(c.request(b"stats hotkeys 0\r\n"),
               b"CLIENT_ERROR bad command line\r\n", "stats hotkeys 0")
        h = hotkeys(c, b" 64")
        res.check(b"%00%FFkey" in h.values(),
                  "a binary key is percent-encoded")
    with harness.corrald([]) as srv, Client(srv.port) as c:
        # Default sampling (1 in 64): a key with 80 % of 20,000 requests.
        batch = b"".join(b"get hot\r\n" if i % 5 else b"get cold%d\r\n" % i
                         for i in range(1000))
        for _ in range(20):
            c.send(batch)
            for _ in range(1000):
                c.read_value_reply()
        h = hotkeys(c)
        res.eq(h.get(b"hotkeys_sample"), b"64", "default sample 1 in 64")
        res.eq(h.get(b"hotkey:1:key"), b"hot", "sampled: the hot key first")
        est = int(h.get(b"hotkey:1:requests", b"0"))
        res.check(8000 <= est <= 24000,
                  "sampled estimate near 16,000 (%d)" % est)
    with harness.corrald(["--hot-keys-sample", "0"]) as srv, \
            Client(srv.port) as c:
        res.eq(hotkeys(c), {b"hotkeys_sample": b"0"}, "sampling off")


def t_stats_corral(res, port):
    with Client(port) as c:
        c.send(b"stats corral\r\n")
        r = c.read_until(b"END\r\n")
    names = re.findall(rb"^STAT (\S+) \d+\r$", r, re.M)
    for want in (b"curr_items", b"loads", b"load_waits", b"stale_served",
                 b"tag_invalidations", b"write_queue", b"recache_wins",
                 b"meta_vivified"):
        res.check(want in names, "stats corral has %s" % want.decode())


def t_logging(res):
    """No line per request unless asked; -vv gives one per command."""
    with harness.corrald([]) as srv:
        with Client(srv.port) as c:
            for _ in range(20):
                c.request(b"set q 0 0 1\r\nx\r\n")
        srv.stop()
        res.eq(srv.stderr_text(), "", "default: nothing on stderr")
    with harness.corrald(["-vv"]) as srv:
        with Client(srv.port) as c:
            for _ in range(3):
                c.request(b"set q 0 0 1\r\nx\r\n")
        srv.stop()
        err = srv.stderr_text()
        res.eq(len(re.findall(r"^<\d+ set q 0 0 1$", err, re.M)), 3,
               "-vv: one line per command")
        res.check(re.search(r"^<\d+ new client connection", err, re.M),
                  "-vv: connection events")
    with harness.corrald(["-v"]) as srv:
        with Client(srv.port) as c:
            c.request(b"set q 0 0 1\r\nx\r\n")
        srv.stop()
        err = srv.stderr_text()
        res.check("listening on tcp:127.0.0.1:" in err and
                  "set q" not in err, "-v: notices, no requests", err)


def main():
    harness.overall_deadline(300)
    res = Results("test_introspection")
    with harness.corrald(["-t", "2"]) as srv:
        res.run(t_memcached_tool, srv.port)
        res.run(t_watch_vs_memcached, srv.port)
        res.run(t_watch_semantics, srv.port)
        res.run(t_watch_slow, srv.port)
        res.run(t_stats_corral, srv.port)
        res.eq(srv.stop(), 0, "corrald exits 0")
    res.run(t_watch_disabled)
    res.run(t_watch_evictions)
    res.run(t_hotkeys)
    res.run(t_logging)
    res.finish()


if __name__ == "__main__":
    main()
