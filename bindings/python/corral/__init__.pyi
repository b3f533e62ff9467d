"""Type hints for the corral package (the methods are implemented in C)."""

import sys
from types import TracebackType
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
    overload,
)

if sys.version_info >= (3, 12):
    from collections.abc import Buffer as _BytesLike
else:
    _BytesLike = Union[bytes, bytearray, memoryview]

Key = Union[str, bytes, bytearray, memoryview]
Tags = Union[str, bytes, Iterable[Union[str, bytes]]]
_T = TypeVar("_T")

__version__: str
ENGINE_VERSION: str
KEY_MAX: int
TAGS_MAX: int
TAG_MAX: int


class Error(Exception):
    status: Optional[int]


class NotFound(Error, KeyError): ...
class Exists(Error): ...
class NotStored(Error): ...
class OutOfMemory(Error, MemoryError): ...
class TooLarge(Error, ValueError): ...
class InvalidArgument(Error, ValueError): ...
class NonNumeric(Error, ValueError): ...
class Timeout(Error, TimeoutError): ...
class Stale(Error): ...
class Busy(Error): ...
class Closed(Error, ValueError): ...


class LoadError(Error):
    exception: Optional[BaseException]
    key: Any


class WriteError(Error):
    exception: Optional[BaseException]
    key: Any


class Write(NamedTuple):
    op: str
    key: bytes
    value: Optional[bytes]
    flags: int
    seq: int
    expires: int  # an attribute, not part of the tuple


class Event(NamedTuple):
    seq: int
    type: str
    name: bytes
    cas: int
    origin: int
    flush_time: int


class Value:
    key: bytes
    flags: int
    cas: int
    tags: Tuple[str, ...]
    released: bool
    def release(self) -> None: ...
    def tobytes(self) -> bytes: ...
    def __len__(self) -> int: ...
    def __bytes__(self) -> bytes: ...
    def __buffer__(self, flags: int) -> memoryview: ...
    def __enter__(self) -> "Value": ...
    def __exit__(self, et: Optional[Type[BaseException]],
                 ev: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None: ...


class Subscription:
    active: bool
    callback: Optional[Callable[[Event], Any]]
    def close(self) -> None: ...
    def __enter__(self) -> "Subscription": ...
    def __exit__(self, et: Optional[Type[BaseException]],
                 ev: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None: ...


class Loaded:
    value: _BytesLike
    ttl: Optional[int]
    stale_ttl: Optional[int]
    flags: Optional[int]
    tags: Optional[Tags]
    def __init__(self, value: _BytesLike, *, ttl: Optional[int] = ...,
                 stale_ttl: Optional[int] = ..., flags: Optional[int] = ...,
                 tags: Optional[Tags] = ...) -> None: ...


class Absent:
    ttl: Optional[int]
    def __init__(self, ttl: Optional[int] = ...) -> None: ...


ABSENT: Absent

LoaderResult = Union[_BytesLike, Loaded, Absent]


class Cached:
    """What Cache.cached() returns: the function, with helpers."""
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def key(self, *args: Any, **kwargs: Any) -> Union[str, bytes]: ...
    def invalidate(self, *args: Any, **kwargs: Any) -> bool: ...


class Cache:
    closed: bool
    config: Dict[str, Union[int, float]]
    event_seq: int
    last_write_error: Optional[BaseException]

    def __init__(self, max_memory: int = ..., *, shards: int = ...,
                 max_items: int = ..., max_item_size: Optional[int] = ...,
                 event_ring: int = ..., refresh_threads: int = ...,
                 breaker_failures: int = ..., breaker_open: float = ...,
                 backoff_min: float = ..., backoff_max: float = ...) -> None:
        ...

    # retrieval
    @overload
    def get(self, key: Key) -> Optional[bytes]: ...
    @overload
    def get(self, key: Key, default: _T) -> Union[bytes, _T]: ...
    @overload
    def get_view(self, key: Key) -> Optional[Value]: ...
    @overload
    def get_view(self, key: Key, default: _T) -> Union[Value, _T]: ...
    @overload
    def gets(self, key: Key) -> Optional[Tuple[bytes, int]]: ...
    @overload
    def gets(self, key: Key, default: _T) -> Union[Tuple[bytes, int], _T]:
        ...
    def get_many(self, keys: Iterable[Key]) -> Dict[Key, bytes]: ...
    def ttl(self, key: Key) -> Optional[int]: ...
    def __getitem__(self, key: Key) -> bytes: ...
    def __contains__(self, key: object) -> bool: ...
    def __len__(self) -> int: ...

    # storage
    def set(self, key: Key, value: _BytesLike, ttl: int = ...,
            flags: int = ..., tags: Optional[Tags] = ...) -> None: ...
    def add(self, key: Key, value: _BytesLike, ttl: int = ...,
            flags: int = ..., tags: Optional[Tags] = ...) -> bool: ...
    def replace(self, key: Key, value: _BytesLike, ttl: int = ...,
                flags: int = ..., tags: Optional[Tags] = ...) -> bool: ...
    def append(self, key: Key, value: _BytesLike) -> bool: ...
    def prepend(self, key: Key, value: _BytesLike) -> bool: ...
    def cas(self, key: Key, value: _BytesLike, cas: int, ttl: int = ...,
            flags: int = ..., tags: Optional[Tags] = ...) -> Optional[bool]:
        ...
    def set_many(self, items: Union[Mapping[Key, _BytesLike],
                                    Iterable[Tuple[Key, _BytesLike]]],
                 ttl: int = ..., flags: int = ...,
                 tags: Optional[Tags] = ...) -> None: ...
    def __setitem__(self, key: Key, value: _BytesLike) -> None: ...

    # deletion, touch, arithmetic
    def delete(self, key: Key) -> bool: ...
    def delete_many(self, keys: Iterable[Key]) -> int: ...
    def __delitem__(self, key: Key) -> None: ...
    def touch(self, key: Key, ttl: int) -> bool: ...
    def incr(self, key: Key, delta: int = ..., initial: Optional[int] = ...,
             ttl: int = ...) -> int: ...
    def decr(self, key: Key, delta: int = ..., initial: Optional[int] = ...,
             ttl: int = ...) -> int: ...

    # flush, invalidation, maintenance
    def flush(self, delay: int = ...) -> None: ...
    def invalidate_tag(self, tag: Union[str, bytes]) -> None: ...
    def invalidate_prefix(self, prefix: Key) -> None: ...
    def invalidate(self, type: str, name: Optional[Key] = ..., *,
                   origin: int = ..., flush_time: int = ...) -> None: ...
    def sweep(self, budget: int = ...) -> int: ...
    def set_max_memory(self, max_memory: int) -> None: ...
    def stats(self) -> Dict[str, int]: ...
    def reset_stats(self) -> None: ...

    # read-through
    @overload
    def fetch(self, key: Key, loader: Callable[[], LoaderResult], *,
              ttl: int = ..., stale_ttl: int = ...,
              tags: Optional[Tags] = ..., flags: int = ...,
              absent_ttl: Optional[int] = ..., wait: Optional[float] = ...,
              error_ttl: Optional[float] = ..., stale_if_error: int = ...,
              beta: Optional[float] = ..., background: bool = ...,
              early: bool = ...) -> Optional[bytes]: ...
    @overload
    def fetch(self, key: Key, loader: Callable[[], LoaderResult], *,
              ttl: int = ..., stale_ttl: int = ...,
              tags: Optional[Tags] = ..., flags: int = ...,
              absent_ttl: Optional[int] = ..., wait: Optional[float] = ...,
              error_ttl: Optional[float] = ..., stale_if_error: int = ...,
              beta: Optional[float] = ..., background: bool = ...,
              early: bool = ..., default: _T) -> Union[bytes, _T]: ...
    @overload
    def cached(self, ttl: Callable[..., Any]) -> Cached: ...
    @overload
    def cached(self, ttl: int = ..., *,
               tags: Union[Tags, Callable[..., Tags]] = ...,
               key: Optional[Callable[..., Union[str, bytes]]] = ...,
               stale_ttl: int = ..., absent_ttl: Optional[int] = ...,
               background: bool = ...,
               dumps: Optional[Callable[[Any], bytes]] = ...,
               loads: Optional[Callable[[bytes], Any]] = ...,
               **fetch_options: Any) -> Callable[[Callable[..., Any]],
                                                 Cached]: ...

    # events
    def subscribe(self, callback: Callable[[Event], Any],
                  since: int = ...) -> Subscription: ...

    # writers
    def use_write_through(self, writer: Callable[[Write], Any]) -> None: ...
    def use_write_behind(
            self, writer: Callable[[List[Write]],
                                   Optional[Sequence[Any]]], *,
            queue_max: int = ..., batch_max: int = ...,
            delay: Optional[float] = ..., retry_min: Optional[float] = ...,
            retry_max: Optional[float] = ...,
            refuse_when_full: bool = ...) -> None: ...
    def put(self, key: Key, value: _BytesLike, ttl: int = ...,
            flags: int = ...) -> None: ...
    def remove(self, key: Key) -> None: ...
    def write_flush(self, timeout: Optional[float] = ...) -> bool: ...

    # life
    def close(self, timeout: Optional[float] = ...) -> None: ...
    def __enter__(self) -> "Cache": ...
    def __exit__(self, et: Optional[Type[BaseException]],
                 ev: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None: ...


class NearCache:
    """A Cache kept coherent with a corrald's invalidation stream."""
    cache: Cache
    address: Tuple[str, int]
    synced: bool
    closed: bool

    def __init__(self, cache: Cache,
                 address: Union[str, Tuple[str, int]], *,
                 connect_timeout: float = ..., backoff_min: float = ...,
                 backoff_max: float = ..., filters: Optional[str] = ...,
                 silence: float = ...,
                 wait: Optional[float] = ...) -> None: ...
    @overload
    def get(self, key: Key) -> Optional[bytes]: ...
    @overload
    def get(self, key: Key, default: _T) -> Union[bytes, _T]: ...
    @overload
    def get_view(self, key: Key) -> Optional[Value]: ...
    @overload
    def get_view(self, key: Key, default: _T) -> Union[Value, _T]: ...
    @overload
    def fetch(self, key: Key, loader: Callable[[], LoaderResult], *,
              ttl: int = ..., stale_ttl: int = ...,
              tags: Optional[Tags] = ..., flags: int = ...,
              absent_ttl: Optional[int] = ..., wait: Optional[float] = ...,
              error_ttl: Optional[float] = ..., stale_if_error: int = ...,
              beta: Optional[float] = ..., background: bool = ...,
              early: bool = ...) -> Optional[bytes]: ...
    @overload
    def fetch(self, key: Key, loader: Callable[[], LoaderResult], *,
              ttl: int = ..., stale_ttl: int = ...,
              tags: Optional[Tags] = ..., flags: int = ...,
              absent_ttl: Optional[int] = ..., wait: Optional[float] = ...,
              error_ttl: Optional[float] = ..., stale_if_error: int = ...,
              beta: Optional[float] = ..., background: bool = ...,
              early: bool = ..., default: _T) -> Union[bytes, _T]: ...
    def wait_synced(self, timeout: Optional[float] = ...) -> bool: ...
    def stats(self) -> Dict[str, int]: ...
    def close(self) -> None: ...
    def __enter__(self) -> "NearCache": ...
    def __exit__(self, et: Optional[Type[BaseException]],
                 ev: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None: ...
