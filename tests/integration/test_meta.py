#!/usr/bin/env python3
"""test_meta.py - the meta protocol (mg ms md ma mn me) with its flags,
base64 keys, opaque tokens, quiet mode, and the stampede flags N R T with
their W X Z returns and I on md and ms.

Every scenario runs on corrald and on a real memcached 1.6, each on its
own fresh keys, and the replies must match (CAS values, ages and the
version compared by shape, TTLs within a second; see harness.same).  A
few properties are also checked on corrald alone, exactly.
"""

import base64
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Client, exchange  # noqa: E402

B64 = base64.b64encode(b"\x00bin\xffkey").decode()

# Each scenario: a name and a list of steps, run in order on one
# connection; {k} is replaced by a key unique to the scenario.
SCENARIOS = [
    ("mg miss", ["mg {k} v", "mg {k} v q", "mg {k} k O123 q",
                 "mg {k} k O123"]),
    ("mg hit flags", ["ms {k} 5 F42 T1000\r\nhello", "mg {k}",
                      "mg {k} v", "mg {k} s f t k O9", "mg {k} v c",
                      "mg {k} h l", "mg {k} h", "mg {k} q v"]),
    ("mg u does not count a fetch", ["ms {k} 1\r\nx", "mg {k} u h",
                                     "mg {k} u h", "mg {k} h", "mg {k} h",
                                     "me {k}"]),
    ("mg T touch and t order", ["ms {k} 1 T1000\r\nx", "mg {k} t T100",
                                "mg {k} t", "mg {k} T200 t", "mg {k} t",
                                "mg {k} T0 t", "mg {k} t"]),
    ("mg N vivify", ["mg {k} N30 s v t", "mg {k} N30 s v t",
                     "mg {k} v t", "ms {k} 3\r\nnew", "mg {k} N30 v t"]),
    ("mg N then T on a new item", ["mg {k} N30 T100 t", "mg {k} t",
                                   "mg {k}2 T100 N30 t", "mg {k}2 t",
                                   "mg {k}3 t N30", "mg {k}3 t"]),
    ("mg R recache", ["ms {k} 1 T100\r\nx", "mg {k} R30 t",
                      "mg {k} R200 t c", "mg {k} R200 t", "mg {k} t",
                      "mg {k} R0", "ms {k} 1 T100\r\ny", "mg {k} R200"]),
    ("mg T before R", ["ms {k} 1 T1000\r\nx", "mg {k} T10 R30 t",
                       "mg {k} t", "ms {k}2 1 T1000\r\nx",
                       "mg {k}2 R30 T10 t", "mg {k}2 R30"]),
    ("md I stale", ["ms {k} 3 T1000\r\nold", "md {k} I T30",
                    "mg {k} v t c", "mg {k} v t", "mg {k} v",
                    "ms {k} 3\r\nnew", "mg {k} v"]),
    ("md", ["md {k}", "md {k} q", "ms {k} 1\r\nx", "md {k} q", "mg {k}",
            "ms {k} 1\r\nx", "md {k} k O5", "md {k} C0", "md {k} I q"]),
    ("ms modes", ["ms {k} 1 ME\r\na", "ms {k} 1 ME\r\nb", "mg {k} v",
                  "ms {k} 1 MA\r\nc", "ms {k} 1 MP\r\nd", "mg {k} v",
                  "ms {k}x 1 MR\r\ne", "ms {k} 1 MR\r\ne", "mg {k} v",
                  "ms {k}x 1 MA\r\nz", "ms {k} 1 MS\r\nf", "mg {k} v",
                  "ms {k} 1 Mx\r\ng", "ms {k} 1 MEE\r\ng"]),
    ("ms flags", ["ms {k} 2 c k O7\r\nhi", "ms {k} 2 q\r\nhi",
                  "ms {k} 2 q ME\r\nhi", "ms {k} 2 F7 T1000\r\nhi",
                  "mg {k} f t v", "ms {k} 0\r\n", "mg {k} v s"]),
    ("ms C and I", ["ms {k} 1\r\na", "ms {k} 1 C1\r\nb", "mg {k} v",
                    "ms {k}x 1 C5\r\nb", "ms {k} 1 C0\r\nb",
                    "ms {k} 1 C1 I\r\nc", "mg {k} v", "ms {k} 1 C1 MA\r\nd",
                    "ms {k} 1 C0 MA\r\nd", "mg {k} v"]),
    ("ma", ["ma {k}", "ma {k} q", "ma {k} N0 J10 v", "ma {k} v",
            "ma {k} D5 v t", "ma {k} MD D3 v", "ma {k} M- D100 v",
            "ma {k} M+ v", "ma {k} MI v q", "ma {k} q", "mg {k} v",
            "ma {k} Mx", "ma {k} D-1", "ma {k} Jx N0", "ma {k} O1 k c"]),
    ("ma N creates even with q", ["ma {k} N0 q J5", "ma {k} N0 q J5",
                                  "mg {k} v"]),
    ("ma on words", ["ms {k} 3\r\nabc", "ma {k}", "ms {k} 0\r\n",
                     "ma {k}", "ma {k} C1", "ms {k} 20\r\n"
                     "18446744073709551615", "ma {k} v", "mg {k} v"]),
    ("ma t T order", ["ms {k} 1 T1000\r\n5", "ma {k} t T100",
                      "mg {k} t", "ma {k} T200 t", "mg {k} t"]),
    ("me", ["me {k}", "ms {k} 4 T100\r\nabcd", "me {k}", "mg {k} v",
            "me {k}", "me {k} b"]),
    ("base64 keys", ["ms " + B64 + " 3 b\r\nbin", "mg " + B64 + " b v s",
                     "ma " + B64 + " b", "md " + B64 + " b q",
                     "mg " + B64 + " b v", "me " + B64 + " b",
                     "mg !!!! b v", "ms $$$$ 1 b\r\nx"]),
    ("opaque", ["mg {k} O" + "x" * 31, "mg {k} O" + "x" * 32,
                "ms {k} 1 O" + "x" * 32 + "\r\nx", "mg {k} v",
                "ma {k} N0 O" + "x" * 32, "mg {k} v"]),
    ("flag errors", ["mg {k} v v", "mg {k} !", "mg {k} Tx", "mg {k} Nx",
                     "mg {k} Rx", "ms {k} 1 Fx\r\nx", "ms {k} 1 Cx\r\nx",
                     "md {k} v v", "ma {k} Dx", "ma {k} Jx",
                     "mg {k} " + " ".join("v" * 1 for _ in range(1)) +
                     " " + " ".join(c for c in "cfhklstuqO")]),
    ("too many flags", ["mg {k} " + " ".join("O%d" % i for i in range(20)),
                        "mg {k} a b c d e f g h i j k l m n o p q r s",
                        "md {k} " + " ".join("k" for _ in range(20))]),
    ("meta syntax", ["mg", "ms {k}", "ms {k} x\r\n", "ms {k} -1\r\n",
                     "md", "ma", "mz {k}", "mn", "me"]),
]


def run(client, steps, key):
    out = []
    for st in steps:
        req = st.replace("{k}", key).encode() + b"\r\n"
        if req.startswith(b"mn"):
            client.send(req)
            out.append(client.read_line())
            continue
        out.append(exchange(client, req))
    return out


def differential(res, cd_port, mc_port):
    with Client(cd_port) as cd, Client(mc_port) as mc:
        for i, (name, steps) in enumerate(SCENARIOS):
            key = "meta%d" % i
            got = run(cd, steps, key)
            want = run(mc, steps, key)
            bad = [(s, g, w) for s, g, w in zip(steps, got, want)
                   if not harness.same(g, w)]
            res.check(not bad, "meta: %s (as memcached)" % name,
                      "".join("\n  %r\n    corrald:   %r\n    memcached: %r"
                              % b for b in bad[:3]))


def exact(res, port):
    """Properties checked on corrald alone."""
    with Client(port) as c:
        res.eq(exchange(c, b"mg nokey v\r\n"), b"EN\r\n", "mg miss EN")
        res.eq(exchange(c, b"ms k1 2 T0 F3\r\nhi\r\nmg k1 v f t s\r\n"),
               b"HD\r\nVA 2 f3 t-1 s2\r\nhi\r\n", "ms then mg")
        r = exchange(c, b"mg k1 c\r\n")
        m = re.match(rb"HD c(\d+)\r\n$", r)
        res.check(m is not None, "mg c returns the CAS", repr(r))
        cas = int(m.group(1)) if m else 0
        res.eq(exchange(c, b"ms k1 1 C%d\r\nx\r\n" % (cas + 1)), b"EX\r\n",
               "ms with a stale C")
        res.eq(exchange(c, b"ms k1 1 C%d\r\nx\r\n" % cas), b"HD\r\n",
               "ms with the right C")
        # stampede: one winner
        res.eq(exchange(c, b"mg st N30 v\r\n"), b"VA 0 W\r\n\r\n",
               "first vivifying mg wins")
        res.eq(exchange(c, b"mg st N30 v\r\n"), b"VA 0 Z\r\n\r\n",
               "the next sees Z")
        exchange(c, b"ms st 3 T100\r\nval\r\n")
        res.eq(exchange(c, b"md st I\r\nmg st v\r\n"),
               b"HD\r\nVA 3 X W\r\nval\r\n", "md I: stale, one winner")
        res.eq(exchange(c, b"mg st v\r\n"), b"VA 3 Z X\r\nval\r\n",
               "then stale and already won")
        res.eq(exchange(c, b"ma cnt N0 J41 v\r\nma cnt v\r\n"),
               b"VA 2\r\n41\r\nVA 2\r\n42\r\n", "ma N J, then incr")
        res.eq(exchange(c, b"mg k1 q\r\nmg nokey q\r\n"), b"HD\r\n",
               "q hides EN only for mg")
        client_b64 = base64.b64encode(b"\x01\x02key").decode().encode()
        res.eq(exchange(c, b"ms " + client_b64 + b" 1 b k\r\nz\r\n"),
               b"HD k" + client_b64 + b" b\r\n", "b keys come back encoded")


def main():
    res = harness.Results("meta")
    harness.overall_deadline(180)
    with harness.corrald(["-t", "2"]) as cd:
        res.run(exact, cd.port)
        if harness.have_memcached():
            with harness.memcached(["-t", "2"]) as mc:
                res.run(differential, cd.port, mc.port)
        else:
            res.check(False, "memcached installed for the comparison")
        res.eq(cd.stop(), 0, "corrald exits 0 on SIGTERM")
    res.finish()


if __name__ == "__main__":
    main()
