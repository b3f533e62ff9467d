"""corral - Corral's cache engine inside a Python process.

A :class:`Cache` is libcorral's sharded, memory-bounded cache, compiled into
this package's extension: no server, no serialisation, no copy on the read
path when :meth:`Cache.get_view` is used.  Keys are ``str`` (UTF-8) or
``bytes`` of 1 to 250 bytes; values are bytes-like and come back as
``bytes``.  Every method may be called from any number of threads.

    >>> import corral
    >>> cache = corral.Cache(max_memory=64 << 20)
    >>> cache.set("greeting", b"hello", ttl=300, tags=["demo"])
    >>> cache.get("greeting")
    b'hello'
    >>> cache.fetch("user:42", lambda: b"loaded once", ttl=60)
    b'loaded once'
    >>> cache.invalidate_tag("demo")
    >>> "greeting" in cache
    False
    >>> cache.close()

Read-through (:meth:`Cache.fetch`): the loader runs once per key however
many threads ask at the same time; the others wait (with the GIL
released) and get the same value, or the same exception wrapped in
:class:`LoadError`.  A loader returns a bytes-like value, a
:class:`Loaded` (a value with its own ttl, flags or tags), or
:data:`ABSENT` / :class:`Absent` to cache the key's absence (``fetch``
then returns ``default``).

Threads of callbacks.  Loaders run on the fetching thread (or, with
``background=True``, a refresh of a stale value runs on one of the
cache's refresh threads).  Write-through writers run on the thread
calling :meth:`Cache.put` / :meth:`Cache.remove`; write-behind writers
on the cache's flusher thread.  Event callbacks run, one at a time per
cache, on a thread that changed the cache, right after the change and
with no engine lock held: often the thread that made the change, but it
may be another thread that was delivering events at that moment.  Every
callback holds the GIL while it runs and may use the cache, except
:meth:`Cache.close`.

Memory.  The engine allocates with the C library's malloc inside Python
(the extension cannot load jemalloc), and counts each allocation at its
real size (``malloc_usable_size``), so ``max_memory`` bounds what the
cache really holds.

A :class:`NearCache` keeps a :class:`Cache` coherent with a ``corrald``:
a thread follows the server's invalidation stream and applies it to the
cache, so that a write made through any client of the server makes the
local copy miss, and nothing is served from it while the stream is not
live.

Open caches are closed at interpreter exit (write-behind writes are
flushed first, near caches bound to them closed).
"""

import atexit
import functools
import hashlib
import threading
import weakref

from . import _corral
from ._corral import (
    ENGINE_VERSION,
    KEY_MAX,
    TAG_MAX,
    TAGS_MAX,
    Busy,
    Closed,
    Error,
    Event,
    Exists,
    InvalidArgument,
    LoadError,
    NonNumeric,
    NotFound,
    NotStored,
    OutOfMemory,
    Stale,
    Subscription,
    Timeout,
    TooLarge,
    Value,
    Write,
    WriteError,
)

__version__ = "0.1.0"

__all__ = [
    "ABSENT", "Absent", "Busy", "Cache", "Closed", "ENGINE_VERSION", "Error",
    "Event", "Exists", "InvalidArgument", "KEY_MAX", "LoadError", "Loaded",
    "NearCache", "NonNumeric", "NotFound", "NotStored", "OutOfMemory",
    "Stale",
    "Subscription", "TAGS_MAX", "TAG_MAX", "Timeout", "TooLarge", "Value",
    "Write", "WriteError",
]


class Loaded:
    """A loader's result with settings of its own.

    ``value`` is bytes-like.  ``ttl`` and ``stale_ttl`` (seconds) replace
    the fetch's for this value, ``flags`` its client flags and ``tags`` its
    tags; ``None`` keeps the fetch's.
    """

    __slots__ = ("value", "ttl", "stale_ttl", "flags", "tags")

    def __init__(self, value, *, ttl=None, stale_ttl=None, flags=None,
                 tags=None):
        self.value = value
        self.ttl = ttl
        self.stale_ttl = stale_ttl
        self.flags = flags
        self.tags = tags

    def __repr__(self):
        extra = "".join(", %s=%r" % (n, getattr(self, n))
                        for n in ("ttl", "stale_ttl", "flags", "tags")
                        if getattr(self, n) is not None)
        return "corral.Loaded(%r%s)" % (self.value, extra)


class Absent:
    """A loader's answer that the key does not exist (negative caching).

    The cache remembers the absence for ``ttl`` seconds (``None``: the
    fetch's ``absent_ttl``, which defaults to its ``ttl``); meanwhile
    ``fetch`` returns its ``default`` without calling the loader.
    """

    __slots__ = ("ttl",)

    def __init__(self, ttl=None):
        self.ttl = ttl

    def __repr__(self):
        if self.ttl is None:
            return "corral.ABSENT"
        return "corral.Absent(ttl=%r)" % (self.ttl,)


#: Return this from a loader when the key does not exist.
ABSENT = Absent()

_corral._register(Loaded, Absent)

# Caches still open at exit are closed before the interpreter shuts down:
# afterwards their threads could no longer run Python writers.
_open = weakref.WeakSet()
_open_lock = threading.Lock()


@atexit.register
def _close_all():
    with _open_lock:
        caches = list(_open)
    for cache in caches:
        cache.close()


def _default_key(func):
    """A key builder: the function's qualified name and its arguments."""
    name = "%s.%s" % (func.__module__, func.__qualname__)
    prefix = name.encode("utf-8", "surrogatepass")[:KEY_MAX - 34]

    def make_key(*args, **kwargs):
        key = "%s:%r" % (name, args)
        if kwargs:
            key += "%r" % (sorted(kwargs.items()),)
        raw = key.encode("utf-8", "surrogatepass")
        if len(raw) <= KEY_MAX:
            return raw
        digest = hashlib.blake2b(raw, digest_size=16).hexdigest()
        # cut in bytes: a name of non-ASCII characters takes more bytes
        # than characters
        return prefix + b":#" + digest.encode()

    return make_key


class Cache(_corral.Cache):
    """An in-process cache.

    Cache(max_memory=64 MiB, *, shards=0, max_items=0,
          max_item_size=None, event_ring=4096, refresh_threads=2,
          breaker_failures=20, breaker_open=1.0, backoff_min=0.1,
          backoff_max=10.0)

    ``max_memory`` (bytes, at least 1 MiB) bounds the items, hash tables
    and eviction metadata; the least useful items are evicted (S3-FIFO)
    to stay under it.  ``shards`` is a power of two up to 1024 (0 picks
    one from the CPU count); ``max_items`` caps the item count (0: no
    cap); ``max_item_size`` is the largest item, key and metadata
    included (1 KiB to max_memory / 2; default 1 MiB or max_memory / 2,
    whichever is smaller).  ``event_ring`` events are kept
    for subscribers that fall behind; ``refresh_threads`` run background
    refreshes.  The loader circuit breaker opens after
    ``breaker_failures`` consecutive loader failures (0: never) for
    ``breaker_open`` seconds; a failing key's loader is retried after
    ``backoff_min`` seconds, doubling up to ``backoff_max``.

    The cache is also a context manager (closing it on exit) and a
    mapping: ``cache[key]`` (NotFound, a KeyError, when absent),
    ``cache[key] = value``, ``del cache[key]``, ``key in cache`` and
    ``len(cache)``.

    Expiry times (``ttl``) follow memcached: 0 never expires, up to 30
    days (2592000 s) is relative, larger is an absolute Unix time, and a
    negative value means already expired.
    """

    def __init__(self, max_memory=64 << 20, *, shards=0, max_items=0,
                 max_item_size=None, event_ring=4096, refresh_threads=2,
                 breaker_failures=20, breaker_open=1.0, backoff_min=0.1,
                 backoff_max=10.0):
        if max_item_size is None:
            max_item_size = min(1 << 20, max_memory // 2)
        super().__init__(max_memory, shards=shards, max_items=max_items,
                         max_item_size=max_item_size, event_ring=event_ring,
                         refresh_threads=refresh_threads,
                         breaker_failures=breaker_failures,
                         breaker_open=breaker_open, backoff_min=backoff_min,
                         backoff_max=backoff_max)
        with _open_lock:
            _open.add(self)

    def __repr__(self):
        if self.closed:
            return "<corral.Cache closed>"
        cfg = self.config
        return "<corral.Cache %d items, max_memory=%d, shards=%d>" % (
            len(self), cfg["max_memory"], cfg["shards"])

    def cached(self, ttl=0, *, tags=(), key=None, stale_ttl=0,
               absent_ttl=None, background=False, dumps=None, loads=None,
               **fetch_options):
        """Decorator: cache a function's results through :meth:`fetch`.

        ``key(*args, **kwargs)`` builds the cache key (default: the
        function's qualified name and the repr of its arguments, hashed
        when longer than 250 bytes); ``tags`` is an iterable of tags or a
        callable taking the function's arguments and returning one.  The
        function returns bytes-like values (or :class:`Loaded`,
        :data:`ABSENT`) unless ``dumps`` and ``loads`` convert, e.g.
        ``dumps=pickle.dumps, loads=pickle.loads``.  An absent result
        makes the call return None.  Concurrent calls with the same key
        run the function once.  Other keyword arguments go to fetch().

        The wrapper has ``key(*args, **kwargs)`` and
        ``invalidate(*args, **kwargs)`` (deletes that call's entry).
        ``@cache.cached`` without parentheses caches forever.
        """
        if callable(ttl):  # used as @cache.cached
            return self.cached()(ttl)

        def decorate(func):
            make_key = key if key is not None else _default_key(func)

            @functools.wraps(func)
            def wrapper(*args, **kwargs):
                def load():
                    result = func(*args, **kwargs)
                    if dumps is None or isinstance(result, Absent):
                        return result
                    if isinstance(result, Loaded):
                        result.value = dumps(result.value)
                        return result
                    return dumps(result)

                item_tags = tags(*args, **kwargs) if callable(tags) else tags
                value = self.fetch(make_key(*args, **kwargs), load, ttl=ttl,
                                   stale_ttl=stale_ttl, tags=item_tags,
                                   absent_ttl=absent_ttl,
                                   background=background, **fetch_options)
                if value is None or loads is None:
                    return value
                return loads(value)

            def invalidate(*args, **kwargs):
                return self.delete(make_key(*args, **kwargs))

            wrapper.key = make_key
            wrapper.invalidate = invalidate
            return wrapper

        return decorate


def _split_address(address):
    """(host, port) from a (host, port) pair or a "host:port" string."""
    if isinstance(address, str):
        host, sep, port = address.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]  # "[::1]:11211"
        if not sep or not host or not port.isdigit():
            raise InvalidArgument(
                "NearCache(): the address must be 'host:port' or "
                "(host, port), not %r" % (address,))
        return host, int(port)
    try:
        host, port = address
    except (TypeError, ValueError):
        raise TypeError("NearCache(): the address must be 'host:port' or "
                        "(host, port), not %r" % (address,)) from None
    return host, port


class NearCache(_corral.NearCache):
    """A near cache: ``cache`` kept coherent with a corrald.

    NearCache(cache, address, *, connect_timeout=2.0, backoff_min=0.1,
              backoff_max=5.0, filters=None, silence=5.0, wait=None)

    ``address`` is ``"host:port"`` or ``(host, port)``.  A thread of the
    near cache connects to the server (and reconnects, with backoff from
    ``backoff_min`` to ``backoff_max`` seconds, for as long as the near
    cache is open), sends ``watch invalidations`` (with ``filters``,
    corrald's syntax such as ``"prefix=user%3A tag=site"``: then cache
    only keys the filters cover) and applies every event to ``cache``: a
    key deleted, overwritten or marked stale on the server is deleted
    locally; tags, prefixes and flushes are applied as such.

    Never silently stale: until the stream is live (:attr:`synced`) and
    from the moment it breaks, :meth:`get` misses and :meth:`fetch` runs
    its loader; at every (re)connection, and whenever events may have
    been missed, the local cache is flushed.  A server that vanishes
    without closing the connection, or whose process stops, is noticed
    when its stream stays silent for ``silence`` seconds (it is asked for
    a heartbeat line every quarter of that; at least 2; 0 turns this
    off and leaves it to TCP keepalive).

    The constructor returns without waiting for the connection, unless
    ``wait`` (seconds) is given: it then raises :class:`Timeout` (and
    closes the near cache) if the stream is not live by then.  Bad
    arguments raise :class:`InvalidArgument` (a ValueError) or
    TypeError; an address that does not answer is not an error (the
    thread keeps trying): see :attr:`synced` and :meth:`wait_synced`.

    Tag invalidations reach items fetched with the same ``tags``.
    Creating a key on the server sends no event, so a loader that finds
    nothing should raise rather than return :data:`ABSENT`.  Reads
    through ``cache`` directly bypass these rules.  The near cache
    keeps ``cache`` alive; closing ``cache`` closes it.  It is a context
    manager, and every method may be called from any thread.
    """

    def __init__(self, cache, address, *, connect_timeout=2.0,
                 backoff_min=0.1, backoff_max=5.0, filters=None, silence=5.0,
                 wait=None):
        host, port = _split_address(address)
        super().__init__(cache, host, port, connect_timeout=connect_timeout,
                         backoff_min=backoff_min, backoff_max=backoff_max,
                         filters=filters, silence=silence)
        if wait is not None and not self.wait_synced(wait):
            self.close()
            raise Timeout("NearCache(): no live invalidation stream from "
                          "%s:%d after %g s" % (host, port, wait))

    def __repr__(self):
        host, port = self.address
        state = ("closed" if self.closed
                 else "synced" if self.synced else "not synced")
        return "<corral.NearCache %s:%d %s>" % (host, port, state)
