"""Parallel tree maps, and pytrees that cross interpreters cheaper than pickle.

:func:`tree_map` is :func:`optree.tree_map` with the leaves mapped in chunks on workers: threads,
subinterpreters, processes, or any :class:`concurrent.futures.Executor` (``dask.distributed``'s
included). :func:`pack` turns a pytree into an object made only of what CPython 3.14's
:mod:`concurrent.interpreters` shares natively (str, bytes, tuples), and :func:`unpack` rebuilds
the pytree in the receiving interpreter; the structure is encoded once per shape and cached on
both sides, so sending many trees of one shape costs about an unflatten on the receiver.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import importlib
import math
import os
import pickle
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import CancelledError, Executor, Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import optree._C as _C
from optree._C import _flatten

if TYPE_CHECKING:
    from optree.typing import PyTree, PyTreeSpec

__all__ = ['UnpackError', 'pack', 'shutdown', 'tree_map', 'unpack']

T = TypeVar('T')
S = TypeVar('S')
U = TypeVar('U')

# ------------------------------------------------------------------------------ pack / unpack

#: The first item of every packed tree: the format and its version.
PACK_FORMAT = 'optree.parallel.pack/1'

# At most this many shapes are remembered per interpreter on each side (the oldest go first).
_CACHE_SIZE = 512

_DUMPS = functools.partial(pickle.dumps, protocol=pickle.HIGHEST_PROTOCOL)
_LOADS = pickle.loads
_MISSING = object()


class UnpackError(RuntimeError):
    """A packed tree names something the receiving interpreter cannot find.

    Raised by :func:`unpack` when a type of the tree's structure (a namedtuple, a
    ``PyStructSequence``, a custom node type, a ``defaultdict`` factory) cannot be imported by
    its module and qualified name, or when a custom node type is not registered in the receiving
    interpreter (registries are per interpreter: the receiver must register it itself).
    """


def _lookup(module: str, qualname: str) -> Any:
    obj = sys.modules.get(module)
    if obj is None:
        obj = importlib.import_module(module)
    for name in qualname.split('.'):
        obj = getattr(obj, name)
    return obj


def _locate(obj: Any) -> tuple[str, str, int]:
    """How another interpreter finds ``obj`` (a type): its module, qualified name and flag."""
    module = getattr(obj, '__module__', None)
    qualname = getattr(obj, '__qualname__', None)
    if isinstance(module, str) and isinstance(qualname, str):
        try:
            found = _lookup(module, qualname)
        except Exception:
            found = _MISSING
        if found is obj:
            return module, qualname, 0
        if type(found) is obj:  # e.g. type(sys.float_info), named 'sys.float_info'
            return module, qualname, 1
    raise TypeError(
        f'optree.parallel.pack: cannot send {obj!r}: a receiving interpreter finds types by '
        f'module and qualified name, and {module}.{qualname} does not name it here (a class '
        'defined inside a function, or not at the top level of its module?)'
    )


def _resolve(module: str, qualname: str, flag: int, role: str) -> Any:
    """The object that ``_locate`` described, found in this interpreter."""
    try:
        obj = _lookup(module, qualname)
    except Exception as ex:
        raise UnpackError(
            f'optree.parallel.unpack: cannot find {module}.{qualname}, the {role}, in this '
            f'interpreter ({type(ex).__name__}: {ex}); it must be importable here'
        ) from ex
    return type(obj) if flag else obj


_cache_lock = threading.Lock()
# hash(treespec) -> (treespec, key, encoding, dict order mode that made the treespec): the
# structures this interpreter sent.
_sent: dict[int, tuple[PyTreeSpec, bytes, bytes, bool]] = {}
# key -> (encoding, treespec): the structures this interpreter received.
_received: dict[bytes, tuple[bytes, PyTreeSpec]] = {}
# number of leaves -> (key, encoding) of a list of that many leaves (tree_map's chunks).
_leaf_lists: dict[int, tuple[bytes, bytes]] = {}


def _remember(cache: dict, key: Any, value: Any) -> None:
    with _cache_lock:
        while len(cache) >= _CACHE_SIZE:
            cache.pop(next(iter(cache)), None)
        cache[key] = value


# Per thread, the entry of _sent used last: a tree of that shape skips flatten (see pack).
_last_sent = threading.local()


def _encode(treespec: PyTreeSpec, namespace: str = '') -> tuple[bytes, bytes]:
    """The key and encoding of a treespec's structure, encoded once per shape."""
    entry = getattr(_last_sent, 'entry', None)
    if entry is not None and _C._transfer_same_structure(entry[0], treespec):
        return entry[1], entry[2]
    digest = hash(treespec)
    entry = _sent.get(digest)
    if entry is None or not _C._transfer_same_structure(entry[0], treespec):
        # The dict order mode of the flatten that made the treespec (read just after it).
        insertion_ordered = _C.is_dict_insertion_ordered(namespace)
        encoding = _C._transfer_encode_structure(treespec, _locate, _DUMPS)
        key = hashlib.blake2b(encoding, digest_size=16).digest()
        entry = (treespec, key, encoding, insertion_ordered)
        _remember(_sent, digest, entry)
    _last_sent.entry = entry
    return entry[1], entry[2]


def _decode(key: Any, encoding: Any) -> PyTreeSpec:
    """The treespec of a received structure, decoded once per shape."""
    if type(key) is not bytes or type(encoding) is not bytes:
        raise ValueError('optree.parallel.unpack: malformed packed data: bad structure fields')
    entry = _received.get(key)
    # Reused while its custom node types keep the registrations it was bound to.
    if entry is not None and entry[0] == encoding and _C._transfer_registrations_current(entry[1]):
        return entry[1]
    treespec = _C._transfer_decode_structure(encoding, _resolve, _LOADS, UnpackError)
    if hashlib.blake2b(encoding, digest_size=16).digest() == key:
        _remember(_received, key, (encoding, treespec))
    return treespec


def pack(
    tree: PyTree[T],
    /,
    *,
    is_leaf: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> tuple[Any, ...]:
    """Pack a pytree into an object that CPython 3.14 interpreters share without pickling.

    The result is a tuple of str, bytes and tuples only: what :mod:`concurrent.interpreters`
    copies natively through a :class:`~concurrent.interpreters.Queue`, ``Interpreter.call`` or an
    :class:`~concurrent.futures.InterpreterPoolExecutor`. It also pickles, for processes. Rebuild
    the tree with :func:`unpack`, in any interpreter of the process or in another process.

    What it holds:

    - the **structure** (:class:`~optree.PyTreeSpec`), encoded once per shape and cached: packing
      many trees of one shape reuses the encoding, and :func:`unpack` decodes it once per
      receiving interpreter. Types in it (namedtuples, ``PyStructSequence`` types, custom node
      types, ``defaultdict`` factories) travel by module and qualified name; custom node types
      must be registered in the receiving interpreter, in the same namespace (registries are per
      interpreter). Dict keys, deque lengths and custom metadata of types other than None, bool,
      int, float, str, bytes, tuple and list are pickled.
    - the **leaves**: None, bools, ints (64-bit), floats, str and bytes are written into one bytes
      object; large bytes and memoryviews travel as themselves; any other leaf is pickled on its
      own (so its type must be importable where it is unpacked).

    Args:
        tree: The pytree to pack.
        is_leaf: An optionally specified function called at each flattening step; a true
            result makes the node a leaf (see :func:`optree.tree_flatten`).
        none_is_leaf: Whether to treat None as a leaf rather than a node with no children.
        namespace: The registry namespace of custom node types.

    Returns:
        A tuple ``(format, key, structure, leaves, objects)``, opaque to its users.

    >>> import optree.parallel
    >>> packed = optree.parallel.pack({'b': (1.5, 'x'), 'a': [None, 2]})
    >>> optree.parallel.unpack(packed)
    {'b': (1.5, 'x'), 'a': [None, 2]}
    """
    entry = getattr(_last_sent, 'entry', None)
    if entry is not None and is_leaf is None:
        # A tree of the shape sent last: its leaves, checked against that shape as they are
        # collected, without building a treespec.
        encoded = _C._transfer_match_leaves(
            entry[0], tree, none_is_leaf, namespace, entry[3], _DUMPS
        )
        if encoded is not None:
            return (PACK_FORMAT, entry[1], entry[2], encoded[0], encoded[1])
    leaves, treespec = _flatten(tree, is_leaf, none_is_leaf, namespace)
    key, encoding = _encode(treespec, namespace)
    data, objects = _C._transfer_encode_leaves(leaves, _DUMPS)
    return (PACK_FORMAT, key, encoding, data, objects)


def unpack(packed: tuple[Any, ...], /) -> PyTree[Any]:
    """Rebuild the pytree of a :func:`pack` result, in this interpreter.

    The structure of each shape is decoded once per interpreter and cached, so unpacking trees of
    a shape seen before costs about an :func:`optree.tree_unflatten`.

    Raises:
        UnpackError: If a type of the structure cannot be imported here, or a custom node type is
            not registered in this interpreter (in the namespace it was packed with).
        ValueError: If ``packed`` is not a well-formed result of :func:`pack`.

    Like :func:`pickle.loads`, unpack only data you trust: pickled leaves and metadata run code.
    """
    if type(packed) is tuple and packed and packed[0] != PACK_FORMAT:
        fmt = packed[0]
        if type(fmt) is str and fmt.startswith('optree.parallel.pack/'):
            raise ValueError(
                f'optree.parallel.unpack: the data was packed in format {fmt!r} (by another '
                f'version of optree?); this version reads {PACK_FORMAT!r}'
            )
    if type(packed) is not tuple or len(packed) != 5 or packed[0] != PACK_FORMAT:
        raise ValueError(
            f'optree.parallel.unpack: expected a result of optree.parallel.pack() '
            f'({PACK_FORMAT!r}), got {type(packed).__name__}'
        )
    _, key, encoding, data, objects = packed
    treespec = _decode(key, encoding)
    return treespec.unflatten(_C._transfer_decode_leaves(data, objects, _LOADS))


def _pack_list(items: list[Any]) -> tuple[Any, ...]:
    """``pack(list(items))`` with every item a leaf, whatever its type."""
    n = len(items)
    entry = _leaf_lists.get(n)
    if entry is None:
        entry = _encode(_C._structure([None] * n, None, True, ''), '')  # type: ignore[arg-type]
        _remember(_leaf_lists, n, entry)
    data, objects = _C._transfer_encode_leaves(items, _DUMPS)
    return (PACK_FORMAT, entry[0], entry[1], data, objects)


# ------------------------------------------------------------------------------ tree_map


class _RemoteTraceback(Exception):
    """The traceback of an exception raised in another interpreter or process."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


_worker_state = threading.local()


class _Stopped:
    """Stands for the result of a leaf where func raised StopIteration. optree.tree_map's
    unflatten reads its map object on past such a leaf (see _Replay); pickled by reference, so
    that it comes back from a worker as this interpreter's own."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return '_STOPPED'

    def __repr__(self) -> str:
        return '<StopIteration from func>'


_STOPPED = _Stopped()


class _WithStops(list):  # type: ignore[type-arg]
    """The results of a chunk in which func raised StopIteration at some leaves (_STOPPED)."""

    __slots__ = ()


def _map_into(results: list[Any], func: Callable[..., Any], columns: list[Any]) -> bool:
    """Appends func's result for each leaf of `columns` to `results`, _STOPPED for a leaf where
    func raised StopIteration; returns whether it did so. Raises what func raises, the results
    before the failing leaf appended (list.extend keeps what it appended before an exception)."""
    mapped = map(func, *columns)
    expected = len(results) + len(columns[0])
    stopped = False
    while True:
        results.extend(mapped)  # up to the end of the columns, or a StopIteration from func
        if len(results) >= expected:
            return stopped
        results.append(_STOPPED)
        stopped = True


def _map_local(func: Callable[..., Any], columns: list[list[Any]], start: int, stop: int) -> Any:
    """Map a chunk in this interpreter: the results (a list, a _WithStops if func raised
    StopIteration somewhere), or (index, exception)."""
    results: list[Any] = []
    _worker_state.depth = getattr(_worker_state, 'depth', 0) + 1
    try:
        stopped = _map_into(results, func, [column[start:stop] for column in columns])
    except Exception as ex:
        # The failing leaf is the one after the results.
        return (start + len(results), ex)
    finally:
        _worker_state.depth -= 1
    return _WithStops(results) if stopped else results


# The default interpreter pool measures func on the first leaves, in the calling thread, for
# about this long (seconds) ...
_PROBE_SECONDS = 0.0002
# ... and maps the rest there too when it would take less than this: handing a chunk to a worker
# interpreter and back costs 0.1-0.4 ms (CPython 3.14, 2 cores), plus the leaves' transfer.
_PARALLEL_MIN_SECONDS = 0.002
# Chunks for that pool take at least this long at the measured pace (the handoffs stay a few
# percent of the work), down to one chunk per worker.
_MIN_CHUNK_SECONDS = 0.005


def _map_prefix(func: Callable[..., Any], columns: list[list[Any]]) -> tuple[Any, bool, float]:
    """Maps leaves from the first one in the calling thread, in doubling slices, until that took
    `_PROBE_SECONDS`; then the rest too if, at the measured pace, it takes less than
    `_PARALLEL_MIN_SECONDS`. Returns the outcome (results or (index, exception), as
    _map_local), whether the map is complete (every leaf, a failure, or an early end), and the
    measured seconds per leaf."""
    n = len(columns[0])
    results: list[Any] = []
    size = 1
    began = time.perf_counter()
    elapsed = 0.0
    while len(results) < n and elapsed < _PROBE_SECONDS:
        start = len(results)
        stop = min(n, start + size)
        outcome = _map_local(func, columns, start, stop)
        if type(outcome) is tuple:
            return outcome, True, 0.0
        if type(outcome) is _WithStops and type(results) is not _WithStops:
            results = _WithStops(results)
        results.extend(outcome)
        size *= 2
        elapsed = time.perf_counter() - began
    mapped = len(results)
    pace = elapsed / mapped if mapped else 0.0
    if mapped == n or pace * (n - mapped) >= _PARALLEL_MIN_SECONDS:
        return results, mapped == n, pace
    outcome = _map_local(func, columns, mapped, n)
    if type(outcome) is tuple:
        return outcome, True, pace
    if type(outcome) is _WithStops and type(results) is not _WithStops:
        results = _WithStops(results)
    results.extend(outcome)
    return results, True, pace


def _export_exception(stage: str, index: int, ex: BaseException) -> tuple[Any, ...]:
    text = ''.join(traceback.format_exception(type(ex), ex, ex.__traceback__))
    try:
        blob = pickle.dumps(ex, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        blob = None
    name = f'{type(ex).__module__}.{type(ex).__qualname__}'
    return ('error', stage, index, blob, name, str(ex), text)


def _import_exception(record: tuple[Any, ...]) -> BaseException:
    _, _, _, blob, name, message, text = record
    ex: Any = None
    if blob is not None:
        try:
            ex = pickle.loads(blob)
        except Exception:
            ex = None
    if not isinstance(ex, BaseException):
        ex = RuntimeError(f'{name}: {message}')
    if ex.__cause__ is None:
        ex.__cause__ = _RemoteTraceback(f'\n"""\n{text}"""')
    return ex


def _map_packed(func: Callable[..., Any], *packed_columns: tuple[Any, ...]) -> tuple[Any, ...]:
    """Map a chunk sent as :func:`pack` output (in a worker interpreter or process).

    Returns ``('ok', packed results)`` (``('stopped', packed results)`` if func raised
    StopIteration at some leaves) or ``('error', stage, index, ...)``, where stage is 'unpack'
    (the leaves could not be rebuilt here), 'func' (func raised at leaf `index` of the chunk) or
    'results' (the results could not be packed).
    """
    try:
        columns = [unpack(packed) for packed in packed_columns]
    except Exception as ex:
        return _export_exception('unpack', 0, ex)
    results: list[Any] = []
    _worker_state.depth = getattr(_worker_state, 'depth', 0) + 1
    try:
        stopped = _map_into(results, func, columns)
    except Exception as ex:
        return _export_exception('func', len(results), ex)
    finally:
        _worker_state.depth -= 1
    try:
        return ('stopped' if stopped else 'ok', _pack_list(results))
    except Exception as ex:
        return _export_exception('results', 0, ex)


def _prepare_worker(path: list[str]) -> None:
    """Initializer of the default interpreter pool: the creator's ``sys.path``, as
    multiprocessing gives its spawned children."""
    import sys

    sys.path[:] = path


_pools_lock = threading.Lock()
_pools: dict[tuple[str, int], Executor] = {}
_shut_down = False


def _default_workers() -> int:
    count = getattr(os, 'process_cpu_count', os.cpu_count)()
    return max(1, count or 1)


def _gil_enabled() -> bool:
    is_gil_enabled = getattr(sys, '_is_gil_enabled', None)
    return True if is_gil_enabled is None else bool(is_gil_enabled())


def _interpreter_pool_type() -> type[Executor] | None:
    if sys.version_info < (3, 14):
        return None
    import concurrent.futures

    return concurrent.futures.InterpreterPoolExecutor  # type: ignore[attr-defined,no-any-return]


# (module, qualified name) of the functions that a worker interpreter of the default pool could
# not run (their module cannot be imported in a subinterpreter): they run on threads.
_home_only: set[tuple[str, str]] = set()


def _by_reference(func: Any) -> bool:
    """Whether pickle sends ``func`` by module and qualified name, found in a fresh interpreter:
    a function, builtin or class at the top level of an importable module (not ``__main__``)."""
    module = getattr(func, '__module__', None)
    qualname = getattr(func, '__qualname__', None)
    if not isinstance(module, str) or not isinstance(qualname, str) or module == '__main__':
        return False
    if '<' in qualname or (module, qualname) in _home_only:  # <lambda>, <locals>
        return False
    try:
        return _lookup(module, qualname) is func
    except Exception:
        return False


def _stays_home(func: Any) -> None:
    with _pools_lock:
        _home_only.add((func.__module__, func.__qualname__))


def _default_backend(func: Any) -> str:
    """The rule of ``executor=None`` (documented in tree_map's docstring)."""
    if not _gil_enabled():
        return 'threads'
    if sys.version_info >= (3, 14) and _C.is_current_interpreter_main() and _by_reference(func):
        return 'interpreters'
    return 'threads'


def _pool(backend: str, workers: int) -> Executor | None:
    """A default pool; None once they are shut down at interpreter exit (calls made later, from
    other exit hooks, map in the calling thread)."""
    with _pools_lock:
        if _shut_down:
            return None
        pool = _pools.get((backend, workers))
        if pool is None:
            if backend == 'interpreters':
                pool_type: Any = _interpreter_pool_type()
                pool = pool_type(
                    max_workers=workers,
                    thread_name_prefix='optree-parallel-interpreter',
                    initializer=_prepare_worker,
                    initargs=(list(sys.path),),
                )
            else:
                pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix='optree-parallel')
            _pools[backend, workers] = pool
        return pool


def shutdown(wait: bool = True) -> None:
    """Shut down the worker pools that :func:`tree_map` created for ``executor=None``.

    Called at interpreter exit; call it earlier to release the threads or subinterpreters. A
    later :func:`tree_map` call creates new pools; one made after the exit hook (from another
    exit hook), or that finds its pool shut down meanwhile, maps in the calling thread.
    """
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.shutdown(wait=wait, cancel_futures=True)


def _shutdown_at_exit() -> None:
    global _shut_down
    with _pools_lock:
        _shut_down = True
    shutdown(wait=True)


atexit.register(_shutdown_at_exit)


def _check_count(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f'optree.parallel.tree_map: {name} must be a positive int or None, got {value!r}'
        )
    return value


def _leaf_path(treespec: PyTreeSpec, index: int) -> Any:
    try:
        return treespec.paths()[index]
    except Exception:
        return None


def _raise_at(ex: BaseException, treespec: PyTreeSpec, index: int, note: str = '') -> None:
    path = _leaf_path(treespec, index)
    ex.add_note(
        f'optree.parallel.tree_map: {note or "func raised"} at leaf {index} of the tree, '
        f'path {path!r}'
    )
    raise ex


def tree_map(
    func: Callable[..., U],
    tree: PyTree[T],
    /,
    *rests: PyTree[S],
    executor: Executor | None = None,
    max_workers: int | None = None,
    chunksize: int | None = None,
    is_leaf: Callable[[T], bool] | None = None,
    none_is_leaf: bool = False,
    namespace: str = '',
) -> PyTree[U]:
    """Map ``func`` over the leaves of ``tree`` (and ``rests``) in parallel: :func:`optree.tree_map`
    on workers.

    The tree is flattened once (``rests`` through :meth:`PyTreeSpec.flatten_up_to`), the leaves
    are mapped in chunks of consecutive leaves on the workers, and the results are unflattened
    once. The result equals ``optree.tree_map(func, tree, *rests, ...)``. If ``func`` raises,
    the exception of the first failing leaf (in flatten order) is raised, with a note giving the
    leaf's index and path; unlike the serial map, leaves after it may have been mapped too.

    **Where it runs.** ``executor`` takes any :class:`concurrent.futures.Executor`. A
    :class:`~concurrent.futures.ThreadPoolExecutor` gets the leaves themselves; any other executor
    (an :class:`~concurrent.futures.InterpreterPoolExecutor`, a
    :class:`~concurrent.futures.ProcessPoolExecutor`, ``dask.distributed``'s
    ``Client.get_executor()``) gets each chunk as :func:`pack` output and sends the results back
    the same way, so ``func`` must reach the workers (pickled by the executor) and leaves and
    results must pickle where they are not natively shareable. With ``executor=None`` (the
    default) optree picks what runs in parallel in this interpreter, and reuses the pool across
    calls (shut down at exit, or by :func:`shutdown`):

    - on a free-threaded build with the GIL disabled (3.13t, 3.14t): threads;
    - on CPython 3.14+ with a GIL, in the main interpreter, when ``func`` is found by module and
      qualified name (a function, builtin or class at the top level of an importable module,
      not ``__main__``, not a lambda): a pool of subinterpreters, whose ``sys.path`` is set to
      this interpreter's; a chunk whose leaves cannot be rebuilt there, or whose results cannot
      come back, is mapped (again) in the calling thread instead, and a tree whose leaves do not
      pickle goes to threads; a ``func`` that the workers cannot run at all (its module, or one
      it imports, cannot be imported in a subinterpreter, as numpy's) is mapped in the calling
      thread, and goes to threads from then on;
    - otherwise (CPython 3.11-3.13 with a GIL, lambdas and closures on 3.14): threads. With a GIL,
      threads run ``func`` in parallel only where it releases the GIL (I/O, NumPy, ...).

    With the default thread pool the calling thread is one of the ``max_workers``: it maps the
    first chunk, then the chunks no pool worker has started yet, from the last one back. With
    the default interpreter pool and no ``chunksize``, the calling thread first maps leaves for
    about 0.2 ms to measure ``func``, and the rest too when it would take less than
    about 2 ms (handing chunks to subinterpreters costs more); otherwise ``max_workers``
    subinterpreters map the rest, in chunks of at least about 5 ms, while the calling thread
    waits (the workers need this interpreter's GIL to take and return chunks). A
    tree that makes a single chunk, a call with ``max_workers=1``, and a call made from inside a
    worker of the default pools are mapped in the calling thread alone.

    Args:
        func: A function that takes ``1 + len(rests)`` arguments, the leaf of ``tree`` and the
            matching subtrees of ``rests``.
        tree: A pytree to map over; its structure is the structure of the result.
        *rests: Pytrees that have ``tree``'s structure as a prefix of their own.
        executor: The executor to map on; None to use the default pools.
        max_workers: The number of workers with the default pools, the calling thread included
            (default: the number of CPUs this process may use); with an ``executor``, the number
            of workers to size chunks for (default: the executor's, where it says).
        chunksize: Leaves per chunk (default: the leaves split into 4 chunks per worker for
            threads and 2 per worker for other executors; for the default interpreter pool,
            sized from the measured pace, as above).
        is_leaf: An optionally specified function called at each flattening step; a true result
            makes the node a leaf (see :func:`optree.tree_map`).
        none_is_leaf: Whether to treat None as a leaf rather than a node with no children.
        namespace: The registry namespace of custom node types.

    Returns:
        A pytree of ``tree``'s structure with ``func``'s results at its leaves.

    >>> import operator, optree.parallel
    >>> optree.parallel.tree_map(operator.neg, {'x': 7, 'y': (42, 64)})
    {'x': -7, 'y': (-42, -64)}
    """
    leaves, treespec = _flatten(tree, is_leaf, none_is_leaf, namespace)
    columns: list[list[Any]] = [leaves]
    if rests:
        flatten_up_to = treespec.flatten_up_to
        columns += [flatten_up_to(rest) for rest in rests]
    max_workers = _check_count('max_workers', max_workers)
    chunksize = _check_count('chunksize', chunksize)
    n = len(leaves)

    if executor is None:
        workers = max_workers or _default_workers()
        nested = getattr(_worker_state, 'depth', 0) > 0
        backend = 'inline' if nested or workers == 1 else _default_backend(func)
        done: list[Any] | None = None
        if chunksize is None:
            chunks = workers * (4 if backend == 'threads' else 2)
            left = n
            if backend == 'interpreters':
                outcome, complete, pace = _map_prefix(func, columns)
                if complete:
                    return _finish(treespec, [outcome])
                done = outcome
                left -= len(done)
                chunks = max(workers, min(chunks, int(left * pace / _MIN_CHUNK_SECONDS)))
            chunksize = max(1, math.ceil(left / chunks))
        # With threads the calling thread is one of the workers (see _run). With interpreters it
        # only waits: a pool worker needs this interpreter's GIL to take a chunk and to hand its
        # results back, and a calling thread running Python holds that GIL for up to a switch
        # interval (5 ms) per handoff, which serialized the map.
        caller_maps = backend == 'threads'
        pool = None
        if backend != 'inline' and n > chunksize:
            pool = _pool(backend, workers - 1 if caller_maps else workers)
        if pool is None:
            if done is not None:
                return _finish(treespec, [done, _map_local(func, columns, len(done), n)])
            return _finish(treespec, [_map_local(func, columns, 0, n)])
        return _run(
            func,
            treespec,
            columns,
            chunksize,
            pool,
            local=backend == 'threads',
            fallback=True,
            caller_maps=caller_maps,
            done=done,
        )

    if not callable(getattr(executor, 'submit', None)):
        raise TypeError(
            f'optree.parallel.tree_map: executor must be a concurrent.futures.Executor '
            f'(with a submit method), got {executor!r}'
        )
    interpreter_pool = _interpreter_pool_type()
    local = isinstance(executor, ThreadPoolExecutor) and not (
        interpreter_pool is not None and isinstance(executor, interpreter_pool)
    )
    if chunksize is None:
        workers = max_workers or getattr(executor, '_max_workers', None) or _default_workers()
        chunksize = max(1, math.ceil(n / (workers * (4 if local else 2))))
    if n == 0:
        return treespec.unflatten([])
    return _run(
        func, treespec, columns, chunksize, executor, local=local, fallback=False, caller_maps=False
    )


def _run(
    func: Callable[..., Any],
    treespec: PyTreeSpec,
    columns: list[list[Any]],
    chunksize: int,
    executor: Any,
    *,
    local: bool,
    fallback: bool,
    caller_maps: bool,
    done: list[Any] | None = None,
) -> Any:
    """Maps the chunks on `executor`. With `fallback` (the default pools), what cannot travel
    to a worker is mapped in the calling thread. With `caller_maps`, the calling thread is a
    worker too: it maps the first chunk, then takes chunks that no worker has started yet,
    from the last one back. `done` holds the results of leaves the calling thread has already
    mapped, from the first one."""
    n = len(columns[0])
    mapped = 0 if done is None else len(done)
    bounds = [(start, min(start + chunksize, n)) for start in range(mapped, n, chunksize)]
    if done is not None:
        bounds.insert(0, (0, mapped))
    first = 1 if caller_maps or done is not None else 0  # chunks before it: the calling thread's
    if not local:
        try:
            chunks = [[_pack_list(column[a:b]) for column in columns] for a, b in bounds[first:]]
        except Exception:
            if not fallback:
                raise
            # Leaves that do not pickle stay in this interpreter: threads.
            executor = _pool('threads', getattr(executor, '_max_workers', 1))
            if executor is None:  # shut down at exit
                return _finish(treespec, [_map_local(func, columns, 0, n)])
            local = True
    futures: list[Future[Any]] = []
    outcomes: list[Any] = [None] * len(bounds)
    try:
        for index in range(first, len(bounds)):
            try:
                if local:
                    future = executor.submit(_map_local, func, columns, *bounds[index])
                else:
                    future = executor.submit(_map_packed, func, *chunks[index - first])
            except RuntimeError:
                if not fallback:
                    raise
                # A default pool shut down meanwhile (shutdown() in another thread, or the
                # interpreter's exit): the chunks it did not take are mapped here, below.
                break
            futures.append(future)
        if done is not None:
            outcomes[0] = done
        elif first:
            outcomes[0] = _map_local(func, columns, *bounds[0])
            if type(outcomes[0]) is tuple:  # the very first chunk failed
                return _finish(treespec, outcomes[:1])
        if caller_maps:
            # Chunks no worker has started: here, from the last one back (workers start them
            # in order, so the first one that cannot be cancelled ends the search).
            for index in range(len(bounds) - 1, 0, -1):
                if index <= len(futures) and not futures[index - 1].cancel():
                    break
                outcomes[index] = _map_local(func, columns, *bounds[index])
        for index in range(first, len(bounds)):
            outcome = outcomes[index]
            if outcome is None and index - first >= len(futures):
                # Not submitted: the default pool shut down meanwhile (see above).
                outcome = _map_local(func, columns, *bounds[index])
            elif outcome is None:
                try:
                    outcome = futures[index - first].result()
                except CancelledError:
                    if not fallback:
                        raise
                    # shutdown() in another thread cancelled it: here.
                    outcome = _map_local(func, columns, *bounds[index])
                except Exception:
                    if not fallback or local:
                        raise
                    # The worker could not run the chunk at all (func, or a module it needs,
                    # cannot be imported in a subinterpreter): here, and on threads from now on.
                    _stays_home(func)
                    outcome = _map_local(func, columns, *bounds[index])
                else:
                    if not local:
                        outcome = _receive(outcome, func, columns, bounds[index], fallback)
            outcomes[index] = outcome
            if type(outcome) is tuple:  # a failure: later chunks cannot matter
                return _finish(treespec, outcomes[: index + 1])
    finally:
        for future in futures:
            future.cancel()
    return _finish(treespec, outcomes)


def _receive(
    outcome: Any,
    func: Callable[..., Any],
    columns: list[list[Any]],
    bounds: tuple[int, int],
    fallback: bool,
) -> Any:
    """A remote chunk's outcome as _map_local gives it: the results, or (index, exception)."""
    start, stop = bounds
    if type(outcome) is not tuple or not outcome:
        raise TypeError(f'optree.parallel.tree_map: unexpected worker result {outcome!r}')
    if outcome[0] == 'ok':
        return unpack(outcome[1])
    if outcome[0] == 'stopped':
        return _WithStops(unpack(outcome[1]))
    _, stage, index, *_ = outcome
    if stage != 'func' and fallback:
        return _map_local(func, columns, start, stop)
    ex = _import_exception(outcome)
    if stage == 'unpack':
        ex.add_note(
            'optree.parallel.tree_map: the worker could not rebuild the leaves of the '
            f'chunk of leaves {start}-{stop - 1}'
        )
        raise ex
    if stage == 'results':
        ex.add_note(
            'optree.parallel.tree_map: the worker could not send back the results of '
            f'the chunk of leaves {start}-{stop - 1}'
        )
        raise ex
    return (start + index, ex)


class _Replay:
    """What optree.tree_map's unflatten reads from its map object, replayed from the results of
    the chunks in order: StopIteration at each leaf where func raised it (unflatten reads on past
    it, and raises for too few leaves when the next read gives none either), then the exception
    of the failed chunk, if any, where func raised it."""

    def __init__(
        self,
        results: list[Any],
        failure: tuple[int, BaseException] | None,
        treespec: PyTreeSpec,
    ) -> None:
        self._results = results
        self._index = 0
        self._failure = failure
        self._treespec = treespec

    def __iter__(self) -> _Replay:
        return self

    def __next__(self) -> Any:
        index = self._index
        if index < len(self._results):
            self._index = index + 1
            item = self._results[index]
            if item is _STOPPED:
                raise StopIteration
            return item
        if self._failure is not None:
            (leaf, ex), self._failure = self._failure, None
            _raise_at(ex, self._treespec, leaf)
        raise StopIteration


def _finish(treespec: PyTreeSpec, outcomes: list[Any]) -> Any:
    results: list[Any] = []
    failure = None
    stopped = False
    for outcome in outcomes:
        if type(outcome) is tuple:
            failure = outcome
            break
        stopped = stopped or type(outcome) is _WithStops
        results.extend(outcome)
    if stopped:
        return treespec.unflatten(_Replay(results, failure, treespec))
    if failure is not None:
        index, ex = failure
        _raise_at(ex, treespec, index)
    return treespec.unflatten(results)
