#!/usr/bin/env python3
"""test_differential.py - corrald against a real memcached, byte for byte.

A seeded random stream of commands (every classic and meta command, valid
and malformed, pipelined in batches) goes to a memcached started here and
to corrald, both with the same -m and -I.  After every command the test
sends "mn", so the reply stream splits into one exchange per command; the
exchanges must be identical except for what cannot be:

  * CAS values (each server numbers its own writes): compared by shape.
    A "cas" or a C flag that reuses a CAS uses, on each server, the value
    that server returned for that key.
  * statistics values, and the version string: compared by shape (the
    same names in the same order, a non-empty value).
  * TTLs (meta t, me exp): within two seconds.  The two servers read
    their clocks at different instants, memcached's clock ticks once a
    second on its own phase, and an absolute exptime goes through that
    clock twice (to its start-relative time and back).
  * last-access ages (meta l, me la): by shape.  memcached updates an
    item's access time on some hits only (its segmented LRU marks the
    first hit, bumps on the second, and its background maintainer decides
    when an item may be bumped again); libcorral records every access.
  * whether incr/decr/ma rewrite a number in place (space-padded to the
    old length, keeping the item's fetched bit) or store a new item
    (exact length, not fetched): memcached does it in place only while
    nothing else holds the item, and its holders include unsent replies
    (batched per 20 requests) and its background LRU thread's queue of
    pending bumps.  So after an increment the key is "unsettled" until it
    is stored again or deleted: its value is compared without trailing
    spaces, its length, s flag and fetched bit (h, me fetch) by shape,
    and no append or prepend is sent for it (they would build different
    values from the padding).  A batch also never increments a key that
    an earlier get or mg of the same batch may still hold.
  * ma's T flag is not sent: when the increment stores a new item,
    memcached applies T to the item it replaced, so whether the touch
    takes effect depends on the same hidden refcount.
  * a mg that creates an item (N) and then fails on a too-long O token:
    memcached hands out no recache token for it, libcorral gives the
    creator the token; such requests are not generated.
  * me's cls and size: memcached's slab class and chunk size.

Also designed around, so that the exchanges can be identical at all:

  * no expiry inside the run: exptimes are 0, negative (already expired),
    in the past, or at least 1000 s away; a TTL that elapses during the
    run would expire at instants up to a second apart.
  * no eviction: a small key space far below -m.
  * no number reaches 2^63: for such a value memcached's safe_strtoull()
    looks for a minus sign with strchr(), which runs past the end of the
    value into whatever bytes follow it in the slab page, so an incr or
    decr on it fails as non-numeric or not depending on memory layout.
    (Stored values stay below 2^62 and deltas are small; wrapping at 2^64
    is covered by test_classic.)
  * no delayed flush_all: a later delayed flush lifts an earlier
    immediate one in memcached for the items its background crawler has
    not reclaimed yet (timing-dependent); test_classic covers the delay.
  * base64 keys (meta flag b) come from their own key space, of bytes
    that no text command can name, and are never appended, prepended or
    incremented: memcached remembers that an item's key was stored in
    base64 (mg's k and me print it so) but forgets it when those rebuild
    the item, while libcorral keeps the mark.
  * both servers run with -W: a "watch" would turn the connection into a
    log stream (test_introspection compares those).  memcached also runs
    without its background threads (-o no_lru_maintainer,no_lru_crawler,
    slab_automove=0): they
    hold item references at moments no client can see, and whether an
    increment rewrites a number in place depends on them.
  * stats items, slabs, conns and cachedump are not sent: they describe
    memcached's slab classes and file descriptors.
  * memcached's tuning commands for its own allocator (slabs
    reassign/automove, lru, lru_crawler with arguments) are not sent:
    corrald has no such knobs and answers ERROR.  cache_memlimit is not
    sent either (it would change eviction); test_malformed compares it.
  * no command line longer than 2048 bytes without a newline (memcached
    closes the connection), no quit or shutdown: the session must live.

On a divergence the test prints the seed, the batch and the first
diverging exchange with both replies, and fails.  CORRAL_DIFF_SEED and
CORRAL_DIFF_COMMANDS override the seed and the command count.
"""

import base64
import os
import random
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

COMMANDS = int(os.environ.get(
    "CORRAL_DIFF_COMMANDS", "50000" if harness.SANITIZED else "100000"))
SEED = int(os.environ.get("CORRAL_DIFF_SEED", str(random.randrange(1 << 30))))
SERVER_ARGS = ["-m", "64", "-I", "1m", "-t", "2", "-W"]
# memcached without its background threads (LRU maintainer and crawler,
# slab page mover): they take item references at moments the test cannot
# see, which decides whether an increment rewrites in place (see below).
MEMCACHED_ARGS = ["-o", "no_lru_maintainer,no_lru_crawler,"
                  "slab_automove=0"]
ITEM_MAX = 1 << 20

TEXT_KEYS = [b"k%d" % i for i in range(20)] + [b"n%d" % i for i in range(6)]
NUM_KEYS = TEXT_KEYS[20:]
BIN_KEYS = [bytes([0, i, 0xFF, 0x80 + i]) + b"bin%d" % i for i in range(6)]
B64_KEYS = [base64.b64encode(k) for k in BIN_KEYS]
LONG_KEY = b"L" * 251
ALNUM = b"abcdefghijklmnopqrstuvwxyz0123456789"
NOW = int(time.time())


class Gen:
    """Random commands.  A command is a list of parts: bytes, or
    ("cas", key) resolved per server to the last CAS it reported."""

    def __init__(self, rng):
        self.r = rng
        self.unsettled = set()

    # -- pieces -----------------------------------------------------------
    def key(self):
        r = self.r.random()
        if r < 0.002:
            return LONG_KEY
        if r < 0.25:
            return self.r.choice(NUM_KEYS)
        return self.r.choice(TEXT_KEYS)

    def value(self, numeric=False):
        r = self.r.random()
        if numeric or r < 0.15:
            return str(self.r.choice([0, 1, 7, 99, 100, 999, 1000,
                                      4611686018427387904,
                                      self.r.randrange(1 << 40)])).encode()
        if r < 0.20:
            n = self.r.randrange(513, 3000)   # referenced, not copied
        else:
            n = self.r.randrange(0, 40)
        return bytes(self.r.choice(ALNUM) for _ in range(n))

    def refused_data(self):
        """Data for a command that is refused before its data is read:
        both servers read it as a command line, so it is short (a line
        past 2048 bytes is cut by memcached's read timing, and either
        server may hang up) and starts with a digit, so that it is never
        a command (an "mn" would be taken for the test's own
        separator)."""
        return b"0" + bytes(self.r.choice(ALNUM)
                            for _ in range(self.r.randrange(40)))

    def exptime(self):
        return str(self.r.choice([0, 0, 0, 0, 1000, 5000, 86400, 2592000,
                                  -1, -100, NOW + 5000, NOW - 100])).encode()

    def flags(self):
        return str(self.r.choice([0, 0, 0, 1, 42, 65535, 4294967295])).encode()

    def cas(self, key):
        r = self.r.random()
        if r < 0.6:
            return ("cas", key)
        if r < 0.8:
            return b"0"
        return b"999999999999999"

    def noreply(self):
        return b" noreply" if self.r.random() < 0.1 else b""

    # -- classic ----------------------------------------------------------
    def storage(self):
        cmd = self.r.choice([b"set", b"set", b"add", b"replace", b"append",
                             b"prepend", b"cas"])
        key = self.key()
        if key in self.unsettled and cmd in (b"append", b"prepend"):
            cmd = b"set"
        if key == LONG_KEY:
            val = self.refused_data()
        else:
            val = self.value(numeric=key in NUM_KEYS)
        parts = [cmd + b" " + key + b" " + self.flags() + b" " +
                 self.exptime() + b" %d" % len(val)]
        if cmd == b"cas":
            parts += [b" ", self.cas(key)]
        parts.append(self.noreply() + b"\r\n" + val + b"\r\n")
        return parts, key

    def storage_bad(self):
        key = self.key()
        val = self.refused_data()
        r = self.r.random()
        if r < 0.2:     # data longer than announced: bad data chunk
            return [b"set " + key + b" 0 0 %d\r\n" % max(0, len(val) - 2) +
                    val + b"\r\n"], key
        if r < 0.3:     # shorter: the next line is eaten as data
            return [b"set " + key + b" 0 0 %d\r\n" % (len(val) + 3) + val +
                    b"\r\nxy\r\n"], key
        if r < 0.4:
            return [b"set " + key + b" 0 0 -1\r\n" + val + b"\r\n"], key
        if r < 0.5:
            return [b"set " + key + b" abc 0 %d\r\n" % len(val) + val +
                    b"\r\n"], key
        if r < 0.6:
            return [b"set " + key + b" 0 0\r\n"], key
        if r < 0.65:
            return [b"set " + key + b" 0 0 %d noreply extra\r\n" % len(val) +
                    val + b"\r\n"], key
        if r < 0.7:
            return [b"cas " + key + b" 0 0 %d\r\n" % len(val) + val +
                    b"\r\n"], key
        if r < 0.75:
            return [b"set " + LONG_KEY + b" 0 0 %d\r\n" % len(val) + val +
                    b"\r\n"], key
        if r < 0.8 and key not in self.unsettled:
            return [b"append " + key + b" 0 0 %d noreply\r\n" % len(val) +
                    val + b"\r\n"], key
        if r < 0.83 and self.r.random() < 0.1:
            # A valid key: after a refused key the data would be read as
            # a 1 MB command line, and both servers would hang up.
            key = self.r.choice(TEXT_KEYS)
            big = b"z" * (ITEM_MAX + self.r.randrange(1, 100))
            return [b"set " + key + b" 0 0 %d\r\n" % len(big) + big +
                    b"\r\n"], key
        if r < 0.9:
            return [b"set " + key + b" 4294967296 0 1\r\nx\r\n"], key
        return [b"set " + key + b" 0 99999999999 1\r\nx\r\n"], key

    def retrieval(self):
        cmd = self.r.choice([b"get", b"get", b"gets", b"gat", b"gats",
                             b"bget"])
        n = self.r.choice([1, 1, 1, 2, 3, 5])
        if self.r.random() < 0.01 and cmd in (b"get", b"gets"):
            n = 300   # a line over 2048 bytes: fine for get and gets only
        ks = [self.key() for _ in range(n)]
        keys = b" ".join(ks)
        if cmd in (b"gat", b"gats"):
            return [cmd + b" " + self.exptime() + b" " + keys + b"\r\n"], \
                ks[0]
        return [cmd + b" " + keys + b"\r\n"], ks[0]

    def misc(self):
        key = self.key()
        r = self.r.random()
        if r < 0.25:
            return [b"delete " + key + self.r.choice(
                [b"", b"", b" noreply", b" 0", b" 0 noreply", b" 1",
                 b" x y"]) + b"\r\n"], key
        if r < 0.5:
            verb = self.r.choice([b"incr", b"decr"])
            delta = self.r.choice([b"1", b"5", b"100", b"0",
                                   b"1000000", b"-1", b"abc",
                                   b"18446744073709551616"])
            return [verb + b" " + key + b" " + delta + self.noreply() +
                    b"\r\n"], key
        if r < 0.65:
            return [b"touch " + key + b" " + self.exptime() +
                    self.noreply() + b"\r\n"], key
        if r < 0.68:
            return [self.r.choice([b"flush_all", b"flush_all 0",
                                   b"flush_all noreply", b"flush_all 0 noreply",
                                   b"flush_all -1", b"flush_all abc"]) +
                    b"\r\n"], None
        if r < 0.74:
            return [self.r.choice([b"stats", b"stats settings",
                                   b"stats sizes", b"stats reset",
                                   b"stats detail on", b"stats detail off",
                                   b"stats detail", b"stats foo",
                                   b"stats  "]) + b"\r\n"], None
        if r < 0.78:
            return [self.r.choice([b"version", b"verbosity 0",
                                   b"verbosity 1", b"verbosity 0 noreply",
                                   b"verbosity", b"verbosity x"]) +
                    b"\r\n"], None
        if r < 0.82:
            return [self.r.choice([b"shutdown", b"watch", b"slabs reassign",
                                   b"lru_crawler", b"lru", b"slabs",
                                   b"misbehave", b"debugtime 1"]) +
                    b"\r\n"], None
        # malformed lines
        return [self.r.choice([
            b"", b" ", b"bogus", b"GET " + key, b"get", b"gets", b"gat",
            b"gat 10", b"gat abc " + key, b"incr", b"incr " + key,
            b"touch " + key, b"touch " + key + b" abc", b"delete",
            b"get " + key + b" " + LONG_KEY, b"gat 0 " + key + b" " + LONG_KEY,
            b"m", b"mx " + key, b"  get " + key, b"get " + key + b"  ",
            b"get\t" + key, b"set", b"cas " + key + b" 0 0 1",
            b"a b c d e f g h i j k l m n o p q r s t u v w x y z",
            b"get " + b" ".join([key] * 30),
            b"decr " + key + b" 1 2 3",
        ]) + b"\r\n"], key

    # -- meta -------------------------------------------------------------
    def meta_key(self):
        r = self.r.random()
        if r < 0.15:
            return self.r.choice(B64_KEYS), True
        return self.key(), False

    def opaque(self, long_ok=True):
        lengths = [0, 1, 4, 31, 32] if long_ok else [0, 1, 4, 31]
        return b"O" + bytes(self.r.choice(ALNUM)
                            for _ in range(self.r.choice(lengths)))

    def meta_flags(self, pool, modes, key, b64, mg=False):
        """Flags in random order; each is a list of parts."""
        n = self.r.choice([0, 1, 2, 3, 4, 5, 6])
        out = []
        chosen = self.r.sample(pool, min(n, len(pool)))
        # A vivifying mg stopped by a too-long O: see the header.
        long_ok = not (mg and "N" in chosen)
        for f in chosen:
            if f == "O":
                out.append([self.opaque(long_ok)])
            elif f in "TN":
                out.append([f.encode() + self.exptime()])
            elif f == "R":
                out.append([b"R" + self.r.choice([b"30", b"2000", b"100000",
                                                   b"0", b"x"])])
            elif f == "F":
                out.append([b"F" + self.flags()])
            elif f == "C":
                out.append([b"C", self.cas(key)])
            elif f == "M":
                mode = self.r.choice(modes)
                if key in self.unsettled and mode in b"AP":
                    mode = ord("S")
                out.append([b"M" + bytes([mode])])
            elif f == "D":
                out.append([b"D" + self.r.choice([b"1", b"10", b"0", b"x",
                                                   b"1000000"])])
            elif f == "J":
                out.append([b"J" + self.r.choice([b"0", b"5", b"x"])])
            else:
                out.append([f.encode()])
        if b64:
            out.insert(self.r.randrange(len(out) + 1), [b"b"])
        if self.r.random() < 0.03:
            out.append([self.r.choice([b"!", b"vv", b"Z", b"E", b"x1"])])
        return out

    def meta(self):
        cmd = self.r.choice([b"mg", b"mg", b"mg", b"ms", b"ms", b"md", b"ma",
                             b"me"])
        key, b64 = self.meta_key()
        if cmd == b"me":
            return [b"me " + key + (b" b" if b64 else b"") + b"\r\n"], \
                base64.b64decode(key) if b64 else key
        if b64 and cmd == b"ma":
            cmd = b"mg"     # see the header: base64 keys
        pool, modes = META_POOLS[cmd]
        if b64 and cmd == b"ms":
            modes = b"ERSx"
        if cmd == b"mg" and self.r.random() < 0.5:
            pool = [f for f in pool if f != "N"]
        dkey = base64.b64decode(key) if b64 else key
        parts = [cmd + b" " + key]
        if cmd == b"ms":
            val = (self.refused_data() if key == LONG_KEY
                   else self.value(numeric=key in NUM_KEYS))
            parts.append(b" %d" % len(val))
        for flag in self.meta_flags(pool, modes, dkey, b64, cmd == b"mg"):
            parts.append(b" ")
            parts.extend(flag)
        parts.append(b"\r\n")
        if cmd == b"ms":
            parts.append(val + b"\r\n")
        # The key the reply's CAS belongs to (decoded for base64 keys).
        return parts, dkey


META_POOLS = {
    b"mg": (list("bcfhklOqstuvNRT"), b"S"),
    b"ms": (list("bcCFIkOqTM"), b"EAPRSx"),
    b"md": (list("bCIkOqT"), b"S"),
    b"ma": (list("bCNJDMqtcvkO"), b"ID+-x"),
}


def gen_command(g):
    r = g.r.random()
    if r < 0.30:
        return g.storage()
    if r < 0.36:
        return g.storage_bad()
    if r < 0.55:
        return g.retrieval()
    if r < 0.72:
        return g.misc()
    return g.meta()


# -- replies --------------------------------------------------------------

META_CODES = (b"HD", b"VA", b"EN", b"NF", b"NS", b"EX")
FUZZY = object()


def norm_line(line, loose):
    """A reply line as a list of comparable tokens; (FUZZY, n) tokens may
    differ by two.  @loose: the reply is about an unsettled key."""
    toks = line.split(b" ")
    head = toks[0]
    if head == b"VALUE" and len(toks) in (4, 5):
        out = toks[:3] + [b"<len>" if toks[1] in loose else toks[3]]
        return out + ([b"<cas>"] if len(toks) == 5 else [])
    if head in META_CODES:
        out = [head]
        rest = toks[1:]
        if head == b"VA" and rest:
            out.append(b"<len>" if loose else rest[0])
            rest = rest[1:]
        for t in rest:
            if re.fullmatch(rb"c\d+", t):
                out.append(b"c<cas>")
            elif re.fullmatch(rb"t-?\d+", t):
                out.append((FUZZY, t[:1], int(t[1:])))
            elif re.fullmatch(rb"l\d+", t):
                out.append(b"l<age>")
            elif loose and re.fullmatch(rb"[sh]\d+", t):
                out.append(t[:1] + b"<n>")
            else:
                out.append(t)
        return out
    if head == b"ME":
        out = toks[:2]
        for t in toks[2:]:
            k, _, v = t.partition(b"=")
            if k == b"exp":
                out.append((FUZZY, k, int(v)))
            elif k == b"la":
                out.append(b"la=<age>")
            elif k == b"cas":
                out.append(b"cas=<cas>")
            elif k in (b"cls", b"size"):
                continue
            elif k == b"fetch" and loose:
                out.append(b"fetch=<bit>")
            else:
                out.append(t)
        return out
    if head == b"VERSION":
        return [b"VERSION", b"<version>"] if len(toks) == 2 else toks
    if head == b"STAT" and len(toks) >= 3:
        return [b"STAT", toks[1], b"<value>"]
    return toks


def same_tokens(a, b):
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, tuple) or isinstance(y, tuple):
            if not (isinstance(x, tuple) and isinstance(y, tuple)):
                return False
            if x[1] != y[1] or abs(x[2] - y[2]) > 2:
                return False
        elif x != y:
            return False
    return True


# General stats that memcached prints only with its LRU maintainer and
# crawler running (corrald prints memcached's default list;
# test_classic compares the lists with a default memcached).
MAINTAINER_STATS = {b"lru_crawler_running", b"lru_crawler_starts",
                    b"lru_maintainer_juggles", b"evicted_active",
                    b"moves_to_cold", b"moves_to_warm", b"moves_within_lru",
                    b"direct_reclaims", b"lru_bumps_dropped"}


def reply_lines(reply, key, unsettled):
    """Normalized lines; data lines of unsettled keys lose their trailing
    spaces."""
    out = []
    lines = [ln for ln in reply.split(b"\r\n")
             if not (ln.startswith(b"STAT ") and
                     ln.split(b" ")[1] in MAINTAINER_STATS)]
    value_of = None
    for line in lines:
        if value_of is not None:
            out.append([line.rstrip(b" ") if value_of in unsettled
                        else line])
            value_of = None
            continue
        toks = line.split(b" ")
        if toks[0] == b"VALUE" and len(toks) >= 4:
            value_of = toks[1]
            out.append(norm_line(line, unsettled))
        elif toks[0] == b"VA":
            value_of = key if key in unsettled else b""
            out.append(norm_line(line, key in unsettled))
        else:
            out.append(norm_line(line, key in unsettled))
    return out


def same_reply(a, b, key=None, unsettled=frozenset()):
    la = reply_lines(a, key, unsettled)
    lb = reply_lines(b, key, unsettled)
    if len(la) != len(lb):
        return False
    return all(same_tokens(x, y) for x, y in zip(la, lb))


def settle(unsettled, parts, key, reply):
    """Track keys whose last change may have been an in-place increment."""
    first = parts[0] if isinstance(parts[0], bytes) else b""
    verb = first.split(b" ")[0].split(b"\r\n")[0]
    if verb.startswith(b"flush_all"):
        unsettled.clear()
    elif key is None:
        return
    elif verb in (b"incr", b"decr", b"ma"):
        unsettled.add(key)
    elif verb in (b"set", b"add", b"replace", b"cas", b"ms") and \
            (reply.startswith(b"STORED") or reply.startswith(b"HD")):
        if verb != b"ms" or not re.search(rb" M[AP]", first):
            unsettled.discard(key)
    elif verb in (b"delete", b"md") and (reply.startswith(b"DELETED") or
                                         reply.startswith(b"HD")):
        if not re.search(rb" I", first):
            unsettled.discard(key)


CAS_VALUE = re.compile(rb"^VALUE (\S+) \d+ \d+ (\d+)$")
CAS_META = re.compile(rb" c(\d+)(?= |$)")


class Side:
    """One server's connection and what it told us about CAS values."""

    def __init__(self, name, port):
        self.name = name
        self.cli = harness.Client(port, timeout=10)
        self.cas = {}

    def resolve(self, parts):
        out = []
        for p in parts:
            if isinstance(p, tuple):
                out.append(b"%d" % self.cas.get(p[1], 123456789))
            else:
                out.append(p)
        return b"".join(out)

    def learn(self, key, reply):
        for line in reply.split(b"\r\n"):
            m = CAS_VALUE.match(line)
            if m:
                self.cas[m.group(1)] = int(m.group(2))
                continue
            if key is not None and line[:2] in META_CODES:
                m = CAS_META.search(line)
                if m:
                    self.cas[key] = int(m.group(1))

    def exchanges(self, n):
        """Read n exchanges, each ending with the sentinel's MN line.
        On a timeout, returns what did arrive (fewer exchanges, the last
        one partial)."""
        out = []
        cur = b""
        try:
            while len(out) < n:
                line = self.cli.read_line()
                if line == b"MN\r\n":
                    out.append(cur)
                    cur = b""
                else:
                    cur += line
        except (OSError, EOFError) as e:
            print("%s: %s after %d of %d exchanges" %
                  (self.name, e, len(out), n))
            out.append(cur + self.cli.buf + b"<no sentinel>")
        return out


def main():
    res = harness.Results("differential")
    harness.overall_deadline(900)
    if not harness.have_memcached():
        print("memcached not installed: cannot run the differential test")
        res.check(False, "memcached available at %s" % harness.MEMCACHED)
        res.finish()
    print("seed %d, %d commands" % (SEED, COMMANDS))
    rng = random.Random(SEED)
    g = Gen(rng)
    with harness.memcached(SERVER_ARGS + MEMCACHED_ARGS) as mc, \
            harness.corrald(SERVER_ARGS) as cd:
        a = Side("memcached", mc.port)
        b = Side("corrald", cd.port)
        done = 0
        batch_no = 0
        history = []
        by_key = {}
        full = []
        t0 = time.time()
        while done < COMMANDS:
            n = min(rng.choice([1, 10, 50, 100, 200]), COMMANDS - done)
            cmds = []
            held = set()
            while len(cmds) < n:
                parts, key = gen_command(g)
                words = parts[0].split(b"\r\n")[0].split() \
                    if isinstance(parts[0], bytes) else []
                words = words or [b""]
                verb = words[0]
                if verb in (b"incr", b"decr", b"ma") and len(words) > 1 and \
                        (words[1] in held or key in held):
                    continue
                if verb in (b"get", b"gets", b"bget"):
                    held.update(words[1:])
                elif verb in (b"gat", b"gats"):
                    held.update(words[2:])
                elif verb == b"mg" and key is not None:
                    held.add(key)
                    if len(words) > 1:
                        held.add(words[1])
                cmds.append((parts, key))
            wa = b"".join(a.resolve(p) + b"mn\r\n" for p, _ in cmds)
            wb = b"".join(b.resolve(p) + b"mn\r\n" for p, _ in cmds)
            a.cli.send(wa)
            b.cli.send(wb)
            ra = a.exchanges(n)
            rb = b.exchanges(n)
            for i, (parts, key) in enumerate(cmds):
                xa = ra[i] if i < len(ra) else b"<nothing>"
                xb = rb[i] if i < len(rb) else b"<nothing>"
                if not same_reply(xa, xb, key, g.unsettled) or \
                        i >= len(ra) - 1 and len(ra) < n:
                    print("DIVERGENCE: seed %d, batch %d, command %d of %d "
                          "(%d commands in)" % (SEED, batch_no, i, n,
                                                done + i))
                    for h in history[-5:]:
                        print("  earlier: %r -> %r" % h)
                    for h in by_key.get(key, [])[-12:]:
                        print("  same key earlier: %r -> %r" % h)
                    for h in by_key.get(None, [])[-3:]:
                        print("  keyless earlier: %r -> %r" % h)
                    print("  to memcached: %r" % a.resolve(parts)[:600])
                    print("  to corrald:   %r" % b.resolve(parts)[:600])
                    print("  memcached:    %r" % xa[:1500])
                    print("  corrald:      %r" % xb[:1500])
                    if key is not None and len(ra) == n and len(rb) == n:
                        # What each holds for the key now, to tell a
                        # wrong reply from a wrong state.
                        probe = b"mg " + (base64.b64encode(key) + b" b"
                                          if key in BIN_KEYS else key) + \
                            b" v f t s\r\n"
                        print("  memcached holds: %r" %
                              harness.exchange(a.cli, probe)[:300])
                        print("  corrald holds:   %r" %
                              harness.exchange(b.cli, probe)[:300])
                        for side in (a, b):
                            st = harness.exchange(side.cli, b"stats\r\n")
                            print("  %s: %s" % (side.name, b" ".join(
                                m for m in re.findall(
                                    rb"STAT (evictions \d+|curr_items \d+|"
                                    rb"bytes \d+|reclaimed \d+)", st))
                                .decode()))
                    trace = os.environ.get("CORRAL_DIFF_TRACE")
                    if trace:
                        with open(trace, "wb") as f:
                            for t in full:
                                f.write(b"%r\n" % (t,))
                            f.write(b"%r\n" % ((a.resolve(parts), xa, xb),))
                            f.write(b"-- rest of the batch:\n")
                            for p2, _ in cmds[i + 1:]:
                                f.write(b"%r\n" % a.resolve(p2)[:300])
                        print("  full trace in %s" % trace)
                    res.check(False, "identical replies (seed %d)" % SEED)
                    res.finish()
                if os.environ.get("CORRAL_DIFF_TRACE"):
                    full.append((a.resolve(parts), xa, xb))
                a.learn(key, xa)
                b.learn(key, xb)
                settle(g.unsettled, parts, key, xa)
                history.append((a.resolve(parts)[:200], xa[:300]))
                if len(history) > 10:
                    history.pop(0)
                if key is not None or parts[0][:5] == b"flush":
                    kh = by_key.setdefault(key, [])
                    kh.append((a.resolve(parts)[:200], xa[:300]))
                    if len(kh) > 20:
                        kh.pop(0)
            done += n
            batch_no += 1
        print("%d commands in %d batches, %.1f s" %
              (done, batch_no, time.time() - t0))
        res.check(True, "%d commands identical to memcached (seed %d)" %
                  (done, SEED))
        rc = cd.stop()
        res.eq(rc, 0, "corrald exits 0 after the run")
        if rc != 0:
            print(cd.stderr_text()[-3000:])
    res.finish()


if __name__ == "__main__":
    main()
