"""test_metrics.py - corrald's Prometheus endpoint (--metrics-port).

Scrapes the endpoint and checks every line of the text exposition format
(version 0.0.4) with a strict parser written here: the syntax of each
line, HELP and TYPE before a family's samples and at most once, a
family's samples together, no duplicate series, counters named _total
and never negative, histograms with increasing "le" bounds, cumulative
buckets ending in +Inf, and _count equal to the +Inf bucket.  Two scrapes
around some traffic must show every counter and histogram bucket grown
or equal, and the figures the traffic moved grown by what it did.  The
HTTP side is driven with raw sockets: errors for anything but GET/HEAD
/metrics, a bounded request head, the deadline, the connection limit, and
the bind address.  The invalidation stream's figures follow known
traffic (tags, prefixes, watchers, a replay and a gap) and agree with
"stats invalidations"; two linked nodes show one series per peer link.
"""

import math
import os
import re
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Client, Results  # noqa: E402
from test_invalidation import Watcher  # noqa: E402
from test_peers import inv_stats, wait_for  # noqa: E402

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
# A label value: any characters but a bare backslash, quote or newline.
LVALUE = r'(?:[^"\\\n]|\\\\|\\"|\\n)*'
SAMPLE_RE = re.compile(
    r"^(?P<name>%s)(?:\{(?P<labels>%s=\"%s\"(?:,%s=\"%s\")*,?)?\})?"
    r" (?P<value>\S+)(?: (?P<ts>-?\d+))?$" % (NAME, LABEL, LVALUE, LABEL,
                                            LVALUE))
LABEL_RE = re.compile(r'(%s)="(%s)"' % (LABEL, LVALUE))
HELP_RE = re.compile(r"^# HELP (%s) (.*)$" % NAME)
TYPE_RE = re.compile(r"^# TYPE (%s) (counter|gauge|histogram|summary|"
                     r"untyped)$" % NAME)
FLOAT_RE = re.compile(r"^(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|"
                      r"[+-]?Inf|NaN)$")


class FormatError(Exception):
    pass


def parse_value(text, where):
    if not FLOAT_RE.match(text):
        raise FormatError("%s: bad value %r" % (where, text))
    return float(text)


def unescape_help(text, where):
    out, i = "", 0
    while i < len(text):
        if text[i] == "\\":
            if i + 1 >= len(text) or text[i + 1] not in "\\n":
                raise FormatError("%s: bad escape in HELP" % where)
            out += "\\" if text[i + 1] == "\\" else "\n"
            i += 2
        else:
            out += text[i]
            i += 1
    return out


def parse_exposition(body):
    """Parse a text exposition strictly.  Returns {family: {"type",
    "help", "samples": {(name, labels tuple): value}}}; raises
    FormatError on the first violation."""
    if not body.endswith("\n"):
        raise FormatError("the body does not end with a newline")
    families = {}
    order = []          # families in order of their first line
    current = None      # the family whose lines are being read
    series = set()
    for n, line in enumerate(body[:-1].split("\n"), 1):
        where = "line %d %r" % (n, line[:80])
        if line == "":
            raise FormatError("%s: empty line" % where)
        if line.startswith("#"):
            m = HELP_RE.match(line) or TYPE_RE.match(line)
            if not m:
                if line.startswith("# HELP") or line.startswith("# TYPE"):
                    raise FormatError("%s: malformed HELP/TYPE" % where)
                continue    # a plain comment
            fam = m.group(1)
            f = families.get(fam)
            if f is None:
                f = families[fam] = {"type": None, "help": None,
                                     "samples": {}}
                order.append(fam)
            elif current != fam:
                raise FormatError("%s: family %s continues after another"
                                  % (where, fam))
            if f["samples"]:
                raise FormatError("%s: HELP/TYPE after %s's samples" %
                                  (where, fam))
            if line.startswith("# HELP"):
                if f["help"] is not None:
                    raise FormatError("%s: second HELP for %s" %
                                      (where, fam))
                f["help"] = unescape_help(m.group(2), where)
            else:
                if f["type"] is not None:
                    raise FormatError("%s: second TYPE for %s" %
                                      (where, fam))
                f["type"] = m.group(2)
            current = fam
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            raise FormatError("%s: not a sample line" % where)
        name = m.group("name")
        labels = tuple(LABEL_RE.findall(m.group("labels") or ""))
        if len({k for k, _ in labels}) != len(labels):
            raise FormatError("%s: a label repeats" % where)
        value = parse_value(m.group("value"), where)
        fam = current
        if fam is None or not (
                name == fam or
                (families[fam]["type"] == "histogram" and
                 name in (fam + "_bucket", fam + "_sum", fam + "_count"))):
            raise FormatError("%s: sample %s outside its family (%s)" %
                              (where, name, fam))
        f = families[fam]
        if f["type"] is None or f["help"] is None:
            raise FormatError("%s: %s has samples before HELP and TYPE" %
                              (where, fam))
        key = (name, labels)
        if key in series:
            raise FormatError("%s: duplicate series" % where)
        series.add(key)
        f["samples"][key] = value
    for fam in order:
        check_family(fam, families[fam])
    return families


def check_family(fam, f):
    t = f["type"]
    if not f["samples"]:
        raise FormatError("%s: HELP/TYPE without samples" % fam)
    if not fam.startswith(("corral_", "process_")):
        raise FormatError("%s: not under the corral_ (or process_) prefix"
                          % fam)
    if t == "counter":
        if not fam.endswith("_total"):
            raise FormatError("%s: a counter not named _total" % fam)
        for k, v in f["samples"].items():
            if not v >= 0 or math.isinf(v):
                raise FormatError("%s: counter value %r" % (k, v))
    elif t == "gauge":
        if fam.endswith("_total"):
            raise FormatError("%s: a gauge named _total" % fam)
    elif t == "histogram":
        check_histogram(fam, f)
    else:
        raise FormatError("%s: unexpected type %s" % (fam, t))


def check_histogram(fam, f):
    groups = {}
    for (name, labels), v in f["samples"].items():
        rest = tuple(kv for kv in labels if kv[0] != "le")
        g = groups.setdefault(rest, {"buckets": [], "sum": None,
                                     "count": None})
        if name == fam + "_bucket":
            le = [val for k, val in labels if k == "le"]
            if len(le) != 1:
                raise FormatError("%s%s: a bucket without one le" %
                                  (name, rest))
            g["buckets"].append((parse_value(le[0], name), v))
        elif any(k == "le" for k, _ in labels):
            raise FormatError("%s: le on a _sum or _count" % name)
        elif name == fam + "_sum":
            g["sum"] = v
        else:
            g["count"] = v
    for rest, g in groups.items():
        where = "%s%r" % (fam, rest)
        b = g["buckets"]
        if not b or g["sum"] is None or g["count"] is None:
            raise FormatError("%s: buckets, _sum and _count all needed" %
                              where)
        bounds = [le for le, _ in b]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise FormatError("%s: le bounds not increasing" % where)
        if not math.isinf(bounds[-1]) or bounds[-1] < 0:
            raise FormatError("%s: the last bucket is not +Inf" % where)
        counts = [c for _, c in b]
        if counts != sorted(counts):
            raise FormatError("%s: buckets not cumulative" % where)
        if counts[-1] != g["count"]:
            raise FormatError("%s: _count %r != +Inf bucket %r" %
                              (where, g["count"], counts[-1]))
        if g["sum"] < 0:
            raise FormatError("%s: negative _sum" % where)


def http(port, request, timeout=10.0, host="127.0.0.1"):
    """Send raw bytes; return everything the server sends until it
    closes."""
    s = socket.create_connection((host, port), timeout=timeout * harness.SLOW)
    try:
        s.sendall(request)
        out = b""
        while True:
            d = s.recv(65536)
            if not d:
                return out
            out += d
    finally:
        s.close()


def wait_metrics(port, host="127.0.0.1"):
    """Wait until the metrics port accepts.  corrald opens it just after
    the memcached port, which is what harness.corrald() waits for."""
    end = time.time() + 10 * harness.SLOW
    while True:
        try:
            socket.create_connection((host, port), timeout=1.0).close()
            return
        except OSError:
            if time.time() > end:
                raise
            time.sleep(0.02)


def split_response(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for h in lines[1:]:
        k, _, v = h.partition(":")
        headers[k.strip().lower()] = v.strip()
    return lines[0], headers, body


def scrape(port, path=b"/metrics"):
    raw = http(port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = split_response(raw)
    if status != "HTTP/1.1 200 OK":
        raise FormatError("status %r" % status)
    if int(headers.get("content-length", "-1")) != len(body):
        raise FormatError("Content-Length %r, body %d bytes" %
                          (headers.get("content-length"), len(body)))
    return headers, parse_exposition(body.decode("utf-8"))


def value(fams, fam, name=None, **labels):
    want = tuple(sorted(labels.items()))
    for (n, ls), v in fams[fam]["samples"].items():
        if n == (name or fam) and tuple(sorted(ls)) == want:
            return v
    return None


def t_format(res, srv, mport):
    headers, fams = scrape(mport)
    res.check(headers.get("content-type", "").startswith(
        "text/plain; version=0.0.4"), "Content-Type is the 0.0.4 text format",
        repr(headers))
    res.eq(headers.get("connection"), "close", "Connection: close")
    res.check(len(fams) > 60, "many families (%d)" % len(fams))
    for fam, typ in (("corral_cmd_get_total", "counter"),
                     ("corral_get_hits_total", "counter"),
                     ("corral_evictions_total", "counter"),
                     ("corral_items", "gauge"),
                     ("corral_memory_used_bytes", "gauge"),
                     ("corral_memory_limit_bytes", "gauge"),
                     ("corral_loads_total", "counter"),
                     ("corral_load_waits_total", "counter"),
                     ("corral_stale_served_total", "counter"),
                     ("corral_tag_invalidations_total", "counter"),
                     ("corral_connections", "gauge"),
                     ("corral_connections_total", "counter"),
                     ("corral_read_bytes_total", "counter"),
                     ("corral_written_bytes_total", "counter"),
                     ("corral_recache_wins_total", "counter"),
                     ("corral_meta_vivified_total", "counter"),
                     ("corral_log_watchers", "gauge"),
                     ("process_cpu_seconds_total", "counter"),
                     ("process_resident_memory_bytes", "gauge")):
        res.check(fam in fams and fams[fam]["type"] == typ,
                  "%s is a %s" % (fam, typ))
    res.eq(value(fams, "corral_memory_limit_bytes"), float(32 << 20),
           "memory limit in bytes (-m 32)")
    res.eq(fams["corral_cmd_get_total"]["help"], "keys looked up",
           "HELP comes from CORRAL_STATS_TABLE")


def monotonic(res, a, b, what):
    """Every counter and histogram series of @a is in @b, not smaller."""
    grew, shrank, missing = [], [], []
    for fam, f in a.items():
        if f["type"] not in ("counter", "histogram"):
            continue
        for key, v in f["samples"].items():
            if fam not in b or key not in b[fam]["samples"]:
                missing.append(key)
            elif b[fam]["samples"][key] < v:
                shrank.append((key, v, b[fam]["samples"][key]))
            elif b[fam]["samples"][key] > v:
                grew.append(key)
    res.eq(missing, [], "%s: every series is still there" % what)
    res.eq(shrank, [], "%s: no counter or bucket went down" % what)
    res.check(len(grew) > 5, "%s: counters grew (%d series)" %
              (what, len(grew)))


def delta(a, b, fam, name=None, **labels):
    before = value(a, fam, name, **labels) if fam in a else None
    return value(b, fam, name, **labels) - (before or 0)


def t_traffic(res, srv, mport):
    """Scrapes around known traffic: everything monotonic, and the
    figures moved by exactly what was done."""
    _, a = scrape(mport)
    with Client(srv.port) as c:
        c.send(b"set m1 0 0 3\r\nabc\r\n")
        res.eq(c.read_line(), b"STORED\r\n", "set")
        for _ in range(10):
            c.send(b"get m1 nothere\r\n")
            c.read_value_reply()
        _, b = scrape(mport)
        res.check(value(b, "corral_connections") >= 1,
                  "corral_connections counts this client")
        c.send(b"mg stampede v N30\r\n")   # vivifies and wins
        res.eq(c.read_meta_reply(), b"VA 0 W\r\n\r\n", "mg N wins")
        c.send(b"mg stampede v N30\r\n")   # the win is taken
        res.eq(c.read_meta_reply(), b"VA 0 Z\r\n\r\n", "mg N again: Z")
        c.send(b"bogus\r\n")
        res.eq(c.read_line(), b"ERROR\r\n", "unknown command")
        res.eq(c.request(b"stats reset\r\n"), b"RESET\r\n", "stats reset")
        _, cc = scrape(mport)
    monotonic(res, a, b, "scrapes 1-2")
    monotonic(res, b, cc, "scrapes 2-3 (stats reset between)")
    res.eq(delta(a, b, "corral_cmd_get_total"), 20.0,
           "cmd_get +20 (10 x 2 keys)")
    res.eq(delta(a, b, "corral_get_hits_total"), 10.0, "get_hits +10")
    res.eq(delta(a, b, "corral_get_misses_total"), 10.0, "get_misses +10")
    res.eq(delta(a, b, "corral_commands_total", command="get"), 10.0,
           "commands_total{get} +10")
    res.eq(delta(a, b, "corral_commands_total", command="set"), 1.0,
           "commands_total{set} +1")
    res.eq(delta(a, b, "corral_command_duration_seconds",
                 "corral_command_duration_seconds_count", command="get"),
           10.0, "get latency histogram counted 10")
    res.check(delta(a, b, "corral_read_bytes_total") > 100,
              "bytes read grew")
    res.eq(delta(b, cc, "corral_command_errors_total", command="unknown"),
           1.0, "an unknown command is an error")
    res.eq(delta(b, cc, "corral_commands_total", command="mg"), 2.0,
           "commands_total{mg} +2")
    res.eq(delta(b, cc, "corral_recache_wins_total"), 1.0,
           "recache wins (W) +1")
    res.eq(delta(b, cc, "corral_recache_lost_total"), 1.0,
           "recache losses (Z) +1")
    res.eq(delta(b, cc, "corral_meta_vivified_total"), 1.0,
           "meta vivified +1")
    res.eq(delta(b, cc, "corral_meta_commands_total"), 2.0,
           "meta commands +2")
    res.check(value(cc, "corral_items") >= 2, "items gauge")


WATCH_FAMILIES = (("corral_watch_history_events", "gauge"),
                  ("corral_watch_history_used_events", "gauge"),
                  ("corral_watch_next_seq", "gauge"),
                  ("corral_watch_events_total", "counter"),
                  ("corral_watchers", "gauge"),
                  ("corral_watchers_total", "counter"),
                  ("corral_watch_lines_sent_total", "counter"),
                  ("corral_watchers_lagged_total", "counter"),
                  ("corral_watch_gaps_total", "counter"),
                  ("corral_watch_replays_total", "counter"))


def t_invalidation(res, srv, mport):
    """The invalidation stream: the server's tag and prefix counters and
    the watch history's figures, moved by known traffic, and equal to
    what "stats invalidations" says at a quiet moment."""
    _, a = scrape(mport)
    for fam, typ in WATCH_FAMILIES + (
            ("corral_invalidate_tag_commands_total", "counter"),
            ("corral_invalidate_prefix_commands_total", "counter"),
            ("corral_tagged_stores_total", "counter")):
        res.check(fam in a and a[fam]["type"] == typ,
                  "%s is a %s" % (fam, typ))
    res.check("corral_peers" not in a, "no peer families without --peer")
    w1, w2 = Watcher(srv.port), Watcher(srv.port)
    node = w1.sync["node"]
    with Client(srv.port) as c:
        res.eq(c.request(b"tset mt1 0 0 1 red,blue\r\nx\r\n"),
               b"STORED\r\n", "tset")
        res.eq(c.request(b"tset mt2 0 0 1 red\r\ny\r\n"), b"STORED\r\n",
               "tset")
        res.eq(c.request(b"invalidate_tag red\r\n"), b"INVALIDATED\r\n",
               "invalidate_tag")
        res.eq(c.request(b"invalidate_prefix mt\r\n"), b"INVALIDATED\r\n",
               "invalidate_prefix")
    # both watchers have both events before the scrape
    for w in (w1, w2):
        got = w.lines_until(lambda ln: ln.get("type") == b"prefix")
        res.check(any(ln.get("tag") == b"red" for ln in got),
                  "a watcher heard the tag")
    seq_tag = [int(ln["seq"]) for ln in got if ln.get("tag") == b"red"][0]
    _, b = scrape(mport)
    res.eq(delta(a, b, "corral_tagged_stores_total"), 2.0,
           "tagged stores +2")
    res.eq(delta(a, b, "corral_invalidate_tag_commands_total"), 1.0,
           "invalidate_tag commands +1")
    res.eq(delta(a, b, "corral_invalidate_prefix_commands_total"), 1.0,
           "invalidate_prefix commands +1")
    res.eq(value(b, "corral_watchers"), 2.0, "watchers now: 2")
    res.eq(delta(a, b, "corral_watchers_total"), 2.0, "watchers total +2")
    ev = delta(a, b, "corral_watch_events_total")
    res.check(ev >= 2, "watch events +%r (the tag and the prefix)" % ev)
    res.eq(delta(a, b, "corral_watch_next_seq"), ev,
           "next seq moved with the events")
    res.eq(delta(a, b, "corral_watch_lines_sent_total"), 2 * ev,
           "lines sent: every event to both watchers")
    res.check(0 < value(b, "corral_watch_history_used_events") <=
              value(b, "corral_watch_history_events"),
              "history used within its size")
    w1.close()
    w2.close()
    # a replay and a gap
    r = Watcher(srv.port, b"since=%d node=%s" % (seq_tag, node))
    res.eq(r.line().get("seq"), b"%d" % seq_tag, "since= replays")
    r.close()
    r = Watcher(srv.port, b"since=%d node=%s" % (10 ** 12, node))
    res.eq(r.line().get("type"), b"gap", "since= in the future: a gap")
    r.close()
    wait_for(lambda: inv_stats(srv.port)["watchers"] == "0",
             "the watchers' close")
    _, cc = scrape(mport)
    res.eq(delta(b, cc, "corral_watch_replays_total"), 1.0, "replays +1")
    res.eq(delta(b, cc, "corral_watch_gaps_total"), 1.0, "gaps +1")
    res.eq(value(cc, "corral_watchers"), 0.0, "watchers now: 0")
    st = inv_stats(srv.port)
    for stat, fam in (("watch_history", "corral_watch_history_events"),
                      ("watch_history_used",
                       "corral_watch_history_used_events"),
                      ("watch_next_seq", "corral_watch_next_seq"),
                      ("watch_events", "corral_watch_events_total"),
                      ("watchers_total", "corral_watchers_total"),
                      ("watch_lines_sent", "corral_watch_lines_sent_total"),
                      ("watchers_lagged", "corral_watchers_lagged_total"),
                      ("watch_gaps", "corral_watch_gaps_total"),
                      ("watch_replays", "corral_watch_replays_total"),
                      ("cmd_invalidate_tag",
                       "corral_invalidate_tag_commands_total"),
                      ("cmd_invalidate_prefix",
                       "corral_invalidate_prefix_commands_total"),
                      ("cmd_tagged_store", "corral_tagged_stores_total")):
        res.eq(value(cc, fam), float(st[stat]),
               "%s equals stats invalidations' %s" % (fam, stat))


def t_no_history(res):
    """--watch-history 0: no watch families; the commands are counted."""
    mport = harness.free_port()
    with harness.corrald(["--watch-history", "0", "--metrics-port",
                          str(mport)]) as srv:
        wait_metrics(mport)
        with Client(srv.port) as c:
            c.request(b"invalidate_tag t\r\n")
        _, fams = scrape(mport)
        res.eq([f for f, _ in WATCH_FAMILIES if f in fams], [],
               "no watch families without a history")
        res.eq(value(fams, "corral_invalidate_tag_commands_total"), 1.0,
               "invalidate_tag still counted")
        res.eq(srv.stop(), 0, "corrald exits 0")


def t_auth(res):
    """-Y: authentication attempts and refusals, as stats counts them."""
    mport = harness.free_port()
    tmp = tempfile.mkdtemp(prefix="corral-metrics-")
    try:
        authfile = os.path.join(tmp, "auth")
        with open(authfile, "w") as f:
            f.write("alice:secret\n")
        with harness.corrald(["-Y", authfile, "--metrics-port",
                              str(mport)]) as srv:
            wait_metrics(mport)
            with Client(srv.port) as c:
                res.eq(c.request(b"set a 0 0 9\r\nalice bad\r\n"),
                       b"CLIENT_ERROR authentication failure\r\n",
                       "a wrong password is refused")
                res.eq(c.request(b"set a 0 0 12\r\nalice secret\r\n"),
                       b"STORED\r\n", "the right one is accepted")
            _, fams = scrape(mport)
            res.eq(value(fams, "corral_auth_commands_total"), 2.0,
                   "two authentication attempts")
            res.eq(value(fams, "corral_auth_errors_total"), 1.0,
                   "one refused")
            res.eq(srv.stop(), 0, "corrald exits 0")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def peer_value(fams, fam, peer, **labels):
    return value(fams, fam, peer=peer, **labels)


def t_peers(res):
    """Two linked nodes, A also given its own address (a "self" link):
    A's scrape has a series per link, labelled with the address, that
    follows what B sends and agrees with "stats invalidations"."""
    pa, pb, mport = harness.free_port(), harness.free_port(), \
        harness.free_port()
    la, lb = "127.0.0.1:%d" % pa, "127.0.0.1:%d" % pb
    b_node = harness.corrald(["-t", "2", "--peer", la], port=pb)
    a_node = harness.corrald(["-t", "2", "--peer", la, "--peer", lb,
                              "--metrics-port", str(mport)], port=pa)
    try:
        wait_metrics(mport)
        wait_for(lambda: inv_stats(pa).get("peers_up") == "1" and
                 inv_stats(pb).get("peers_up") == "1", "links up")
        wait_for(lambda: inv_stats(pa).get("peer:%s:state" % la) == "self",
                 "A's link to itself closed")
        _, a = scrape(mport)
        for fam, typ in (("corral_peers", "gauge"),
                         ("corral_peers_up", "gauge"),
                         ("corral_peer_up", "gauge"),
                         ("corral_peer_state", "gauge"),
                         ("corral_peer_events_applied_total", "counter"),
                         ("corral_peer_flushes_total", "counter"),
                         ("corral_peer_connects_total", "counter"),
                         ("corral_peer_lag_seconds", "gauge"),
                         ("corral_peer_lag_seconds_total", "counter"),
                         ("corral_peer_last_event_timestamp_seconds",
                          "gauge")):
            res.check(fam in a and a[fam]["type"] == typ,
                      "%s is a %s" % (fam, typ))
        res.eq(value(a, "corral_peers"), 2.0, "two links configured")
        res.eq(value(a, "corral_peers_up"), 1.0, "one link up")
        res.eq(peer_value(a, "corral_peer_up", lb), 1.0, "the link to B up")
        res.eq(peer_value(a, "corral_peer_up", la), 0.0,
               "the link to itself not up")
        states = ("down", "connecting", "waiting", "up", "self")
        res.eq([peer_value(a, "corral_peer_state", lb, state=s)
                for s in states], [0.0, 0.0, 0.0, 1.0, 0.0],
               "B's link: state up, one-hot")
        res.eq([peer_value(a, "corral_peer_state", la, state=s)
                for s in states], [0.0, 0.0, 0.0, 0.0, 1.0],
               "the self link: state self")
        res.check(peer_value(a, "corral_peer_connects_total", lb) >= 1,
                  "connects counted")
        res.check(peer_value(a, "corral_peer_flushes_total", lb) >= 1,
                  "the first link flushed A")
        # events caused on B reach A, and the figures follow
        with Client(pb) as c:
            for i in range(5):
                res.eq(c.request(b"invalidate_tag pt%d\r\n" % i),
                       b"INVALIDATED\r\n", "invalidate_tag on B")
        applied0 = peer_value(a, "corral_peer_events_applied_total", lb)
        wait_for(lambda: int(inv_stats(pa)["peer:%s:applied" % lb]) >=
                 applied0 + 5, "A applied B's tags")
        now = time.time()
        _, b = scrape(mport)
        st = inv_stats(pa)
        res.eq(peer_value(b, "corral_peer_events_applied_total", lb),
               float(st["peer:%s:applied" % lb]),
               "applied equals stats invalidations")
        res.eq(peer_value(b, "corral_peer_events_applied_total", lb) -
               applied0, 5.0, "applied +5")
        res.eq(value(b, "corral_peer_events_applied_total", peer=la), 0.0,
               "nothing applied through the self link")
        lag = peer_value(b, "corral_peer_lag_seconds", lb)
        res.eq(lag, int(st["peer:%s:lag_us" % lb]) / 1e6,
               "lag equals stats invalidations' lag_us, in seconds")
        res.check(lag >= 0, "lag not negative")
        res.check(peer_value(b, "corral_peer_lag_seconds_total", lb) >=
                  lag, "lag sum at least the last lag")
        last = peer_value(b, "corral_peer_last_event_timestamp_seconds", lb)
        res.check(now - 600 < last <= now + 1,
                  "last event time is Unix seconds (%r, now %r)" %
                  (last, now))
        monotonic(res, a, b, "peer scrapes")
    finally:
        for n in (a_node, b_node):
            res.eq(n.stop(), 0, "linked corrald exits 0")
            n.close()


def t_http(res, srv, mport):
    def status(req):
        raw = http(mport, req)
        return split_response(raw)[0] if raw else "(closed)"

    res.eq(status(b"GET / HTTP/1.1\r\n\r\n"), "HTTP/1.1 404 Not Found",
           "another path: 404")
    res.eq(status(b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
           "HTTP/1.1 405 Method Not Allowed", "POST: 405")
    res.eq(status(b"GET /metrics HTTP/2.0\r\n\r\n"),
           "HTTP/1.1 505 HTTP Version Not Supported", "HTTP/2.0: 505")
    res.eq(status(b"hello\r\n\r\n"), "HTTP/1.1 400 Bad Request",
           "garbage: 400")
    res.eq(status(b"GET /metrics\r\n\r\n"), "HTTP/1.1 400 Bad Request",
           "HTTP/0.9 style: 400")
    res.eq(status(b"GET /metrics HTTP/1.1\r\n" + b"X-Big: " + b"a" * 9000 +
                  b"\r\n\r\n"),
           "HTTP/1.1 431 Request Header Fields Too Large", "a huge head: 431")
    raw = http(mport, b"GET /metrics?x=1 HTTP/1.0\n\n")
    res.eq(split_response(raw)[0], "HTTP/1.1 200 OK",
           "HTTP/1.0, bare newlines and a query string")
    raw = http(mport, b"HEAD /metrics HTTP/1.1\r\n\r\n")
    st, hd, body = split_response(raw)
    res.check(st == "HTTP/1.1 200 OK" and body == b"" and
              int(hd["content-length"]) > 1000,
              "HEAD: headers with the length, no body", repr(raw[:200]))
    # A request that arrives a byte at a time.
    s = socket.create_connection(("127.0.0.1", mport))
    for ch in b"GET /metrics HTTP/1.1\r\n\r\n":
        s.send(bytes([ch]))
        time.sleep(0.002)
    out = b""
    s.settimeout(10 * harness.SLOW)
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
    s.close()
    res.check(out.startswith(b"HTTP/1.1 200 OK\r\n"), "byte-by-byte request")


def t_limits(res, srv, mport):
    """Idle connections are closed at the deadline; past the connection
    limit new ones are closed at once; the endpoint keeps serving."""
    # Let the server see the end of the earlier exchanges first: it
    # keeps each connection until the client's close reaches it.
    time.sleep(0.5 * harness.SLOW)
    t0 = time.time()  # the server accepts each one after this
    idle = [socket.create_connection(("127.0.0.1", mport))
            for _ in range(16)]
    time.sleep(0.2 * harness.SLOW)
    extra = socket.create_connection(("127.0.0.1", mport))
    extra.settimeout(5 * harness.SLOW)
    try:
        extra.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
        got = extra.recv(100)
    except OSError:
        got = b""
    extra.close()
    res.eq(got, b"", "a 17th connection is closed without an answer")
    idle[0].settimeout(15 * harness.SLOW)
    try:
        closed = idle[0].recv(100) == b""
    except OSError:
        closed = True
    waited = time.time() - t0
    # (from before the connect: the server's clock for it starts later,
    # though its loop time may lag the accept by a little)
    res.check(closed and 9.5 <= waited <= 13 * harness.SLOW,
              "an idle connection is closed at the 10 s deadline "
              "(%.1f s)" % waited)
    for s in idle:
        s.close()
    # Served again once the server has seen those closes.
    err = [None]

    def serves():
        try:
            scrape(mport)
            return True
        except Exception as e:  # noqa: BLE001
            err[0] = e
            return False
    res.check(harness.wait_for(serves, 10),
              "the endpoint serves again afterwards",
              "scrape after the limits: %r" % err[0])


def t_bind(res):
    """The metrics port follows -l by default; --metrics-listen and the
    environment variable set it."""
    mport = harness.free_port()
    with harness.corrald(["--metrics-port", str(mport)]) as srv:
        wait_metrics(mport)
        res.check(scrape(mport) is not None, "bound on -l's 127.0.0.1")
        try:
            socket.create_connection(("127.0.0.2", mport), timeout=2).close()
            other = True
        except OSError:
            other = False
        res.check(not other, "not bound on 127.0.0.2")
        srv.stop()
    mport = harness.free_port()
    with harness.corrald(["--metrics-listen", "127.0.0.2"],
                         env=dict(harness.sanitizer_env(),
                                  CORRAL_METRICS_PORT=str(mport))):
        wait_metrics(mport, host="127.0.0.2")
        raw = http(mport, b"GET /metrics HTTP/1.1\r\n\r\n", host="127.0.0.2")
        res.check(raw.startswith(b"HTTP/1.1 200 OK"),
                  "CORRAL_METRICS_PORT with --metrics-listen 127.0.0.2")
    with harness.corrald([]) as srv:
        with Client(srv.port) as c:
            c.send(b"stats settings\r\n")
            c.read_until(b"END\r\n")
        res.check(True, "no --metrics-port: no endpoint, server runs")
    port = harness.free_port()
    srv = harness.Server([harness.CORRALD, "-p", str(port), "-l", "127.0.0.1",
                          "--metrics-port", str(port)], port,
                         env=harness.sanitizer_env(), name="corrald")
    srv.start(wait=False)
    res.eq(srv.wait(10), 64, "--metrics-port equal to -p: exit 64")
    srv.close()


def main():
    harness.overall_deadline(240)
    res = Results("test_metrics")
    mport = harness.free_port()
    with harness.corrald(["-m", "32", "-t", "2", "--metrics-port",
                          str(mport)]) as srv:
        wait_metrics(mport)
        for fn in (t_format, t_traffic, t_invalidation, t_http, t_limits):
            res.run(fn, srv, mport)
        res.eq(srv.stop(), 0, "corrald exits 0")
    res.run(t_bind)
    res.run(t_no_history)
    res.run(t_auth)
    res.run(t_peers)
    res.finish()


if __name__ == "__main__":
    main()
