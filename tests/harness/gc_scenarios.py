"""Scenarios of ``test_gc_threads.py`` and ``test_interpreters_gc.py``: treespecs and iterators
in reference cycles, collected by the cyclic GC in threads, inside subinterpreters and during a
subinterpreter's finalization; one leaf iterator shared by threads.

Each ``scenario_*`` function runs in the main interpreter of a child process (a crash or a hang
fails one test, not the session) and raises ``AssertionError`` on failure. ``make_garbage`` also
runs inside subinterpreters, which import this module by name (it imports only the standard
library and optree).
"""

from __future__ import annotations

import gc
import itertools
import os
import sys
import threading
import time
from typing import Any

import optree

from harness.subinterpreters import (
    THREAD_TIMEOUT,
    Subinterpreter,
    read_tokens,
    report_figures,
    run_threads,
)


class Sentinel:
    """Writes its token to ``fd`` when it is freed (also during interpreter finalization)."""

    def __init__(self, token: str, fd: int, write: Any = os.write) -> None:
        self.token, self.fd, self.write = token, fd, write

    def __del__(self) -> None:
        self.write(self.fd, self.token.encode() + b'\n')


class Holder:
    """Any object: a dict key, custom metadata or a path entry that can point at a treespec."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Holder) and other.name == self.name

    def __lt__(self, other: Holder) -> bool:
        return self.name < other.name


# What make_garbage builds, by token suffix; 'registered-*' are only collectable once their type
# is unregistered (while registered, the registry keeps the type alive by design).
GARBAGE_KINDS = (
    'registered-type',
    'registered-type-repeated',
    'registered-metadata',
    'registered-entries',
    'dict-key',
    'iterator-stack',
    'iterator-predicate',
)


def make_garbage(tag: str, fd: int, *, unregister: bool, namespace: str = 'gc') -> set[str]:
    """Build one reference cycle of each kind of ``GARBAGE_KINDS`` through a treespec or a leaf
    iterator, each holding a ``Sentinel``; keep no reference to any. Returns the tokens."""
    tokens = set()

    def sentinel(kind: str) -> Sentinel:
        tokens.add(f'{tag}:{kind}')
        return Sentinel(f'{tag}:{kind}', fd)

    def new_type(kind: str, metadata: Any = None, entries: Any = None) -> type:
        cls = type(f'Cyclic_{kind}', (), {'sentinel': sentinel(kind)})
        flatten = (
            (lambda obj: ((1, 2), metadata))
            if entries is None
            else (lambda obj: ((1, 2), metadata, entries))
        )
        optree.register_pytree_node(cls, flatten, lambda m, c: cls(), namespace=namespace)
        return cls

    # A treespec whose custom nodes' registration reaches back to it through the type.
    for kind, count in (('registered-type', 1), ('registered-type-repeated', 3)):
        cls = new_type(kind)
        cls.spec = optree.tree_structure([cls() for _ in range(count)], namespace=namespace)
        if unregister:
            optree.unregister_pytree_node(cls, namespace=namespace)
    # ... through custom metadata and path entries (these hold the type too).
    holder = Holder('metadata')
    cls = new_type('registered-metadata', metadata=holder)
    holder.spec = optree.tree_structure(cls(), namespace=namespace)
    if unregister:
        optree.unregister_pytree_node(cls, namespace=namespace)
    holder = Holder('entries')
    cls = new_type('registered-entries', entries=(holder, Holder('second')))
    holder.spec = optree.tree_structure(cls(), namespace=namespace)
    if unregister:
        optree.unregister_pytree_node(cls, namespace=namespace)
    # A treespec whose dict keys reach back to it.
    key = Holder('key')
    key.sentinel = sentinel('dict-key')
    key.spec = optree.tree_structure({key: 1, Holder('other'): [2, {3: 4}]})
    # An iterator whose pending subtrees reach back to it.
    tree = {'a': 1, 'b': {'c': 2}}
    iterator = optree.tree_iter(tree)
    assert next(iterator) == 1
    tree['b']['d'] = iterator
    tree['b']['sentinel'] = sentinel('iterator-stack')
    assert next(iterator) == 2
    # An iterator whose leaf predicate reaches back to it.

    def is_leaf(x: Any) -> bool:
        return False

    is_leaf.iterator = optree.tree_iter({'a': [1, 2]}, is_leaf=is_leaf)  # type: ignore[attr-defined]
    is_leaf.sentinel = sentinel('iterator-predicate')  # type: ignore[attr-defined]
    assert next(is_leaf.iterator) == 1  # type: ignore[attr-defined]
    return tokens


# ------------------------------------------------------------------------------ scenarios


def scenario_garbage_collected_in_threads(threads: int, rounds: int) -> None:
    """Threads build cycles through treespecs and iterators while others collect; every cycle
    of an unregistered type (and every other kind) is freed by the collector."""
    read_fd, write_fd = os.pipe()
    expected: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def build(index: int) -> None:
        for round_ in range(rounds):
            tokens = make_garbage(
                f't{index}r{round_}', write_fd, unregister=True, namespace=f'gc-{index}'
            )
            with lock:
                expected.update(tokens)

    def collect() -> None:
        while not stop.is_set():
            gc.collect()
            time.sleep(0.001)

    try:
        collector = threading.Thread(target=collect, daemon=True)
        collector.start()
        try:
            run_threads([lambda i=i: build(i) for i in range(threads)])
        finally:
            stop.set()
            collector.join(THREAD_TIMEOUT)
        gc.collect()
        released = read_tokens(read_fd)
        assert released == expected, sorted(expected - released)[:10]
        report_figures(cycles_collected=len(released))
    finally:
        os.close(read_fd)
        os.close(write_fd)


def _leaf_tree(width: int, depth: int, counter: Any) -> Any:
    if depth == 0:
        return next(counter)
    children = [_leaf_tree(width, depth - 1, counter) for _ in range(width)]
    shape = depth % 3
    if shape == 0:
        return {f'k{width - i}': child for i, child in enumerate(children)}  # sorted != inserted
    if shape == 1:
        return tuple(children)
    return children


def scenario_shared_iterator(threads: int, rounds: int) -> None:
    """``threads`` threads call next() on one iterator until it is exhausted: every leaf comes
    out exactly once, each thread gets its leaves in flatten order, and a next() from inside the
    leaf predicate raises RuntimeError instead of hanging or corrupting the walk."""
    if hasattr(sys, 'setswitchinterval'):
        sys.setswitchinterval(1e-6)  # GIL builds: switch threads as often as possible
    reentrant_errors = []
    for round_ in range(rounds):
        tree = _leaf_tree(width=4, depth=5, counter=itertools.count())
        order = optree.tree_leaves(tree)
        position = {leaf: index for index, leaf in enumerate(order)}
        use_predicate = round_ % 2 == 1
        box: list[Any] = []  # the iterator, for its own predicate

        def is_leaf(x: Any, box: list[Any] = box) -> bool:
            if isinstance(x, int) and x % 97 == 0:
                try:
                    next(box[0])
                except RuntimeError as ex:
                    reentrant_errors.append(str(ex))
            return False

        iterator = optree.tree_iter(tree, is_leaf=is_leaf if use_predicate else None)
        box.append(iterator)
        results: list[list[int]] = [[] for _ in range(threads)]
        start = threading.Barrier(threads, timeout=THREAD_TIMEOUT)

        def drain(
            index: int, it: Any = iterator, start: Any = start, results: Any = results
        ) -> None:
            start.wait()
            for leaf in it:
                results[index].append(leaf)

        run_threads([lambda i=i: drain(i) for i in range(threads)])
        merged = sorted(itertools.chain.from_iterable(results), key=position.__getitem__)
        assert merged == order, 'a leaf was lost or repeated'
        for got in results:
            assert got == sorted(got, key=position.__getitem__), 'a thread got leaves out of order'
    assert reentrant_errors, 'the predicate never re-entered next()'
    assert set(reentrant_errors) == {'PyTreeIter is already iterating.'}, set(reentrant_errors)
    report_figures(rounds=rounds, threads=threads, reentrant_next_refused=len(reentrant_errors))


# Subinterpreter code: optree and this module in a fresh interpreter.
SETUP = 'import gc, optree\nfrom harness import gc_scenarios\n'


def scenario_garbage_collected_in_subinterpreters(count: int, rounds: int) -> None:
    """``count`` subinterpreters, one per thread, build cycles and collect them ``rounds`` times
    at once; the cycles of unregistered types and all others are freed there and then."""
    pipes = [os.pipe() for _ in range(count)]
    failures: list[str] = []

    def drive(index: int) -> None:
        read_fd, write_fd = pipes[index]
        with Subinterpreter() as interpreter:
            interpreter.exec(SETUP)
            for round_ in range(rounds):
                tokens = interpreter.call(
                    f'result = gc_scenarios.make_garbage("i{index}r{round_}", {write_fd}, '
                    'unregister=True)\ngc.collect()'
                )
                released = read_tokens(read_fd)
                if released != tokens:
                    failures.append(f'interpreter {index}: not freed: {sorted(tokens - released)}')

    try:
        run_threads([lambda i=i: drive(i) for i in range(count)])
        assert not failures, failures[:3]
        report_figures(interpreters=count, cycles_per_interpreter=rounds * len(GARBAGE_KINDS))
    finally:
        for read_fd, write_fd in pipes:
            os.close(read_fd)
            os.close(write_fd)


def scenario_garbage_collected_at_finalization(count: int) -> None:
    """Subinterpreters (one per thread, finalizing at once) leave cycles through treespecs and
    iterators for their finalization to collect, with the collector disabled until then: types
    still registered, types unregistered, live treespecs in module globals too. Everything is
    released when they are destroyed, and nothing is released before."""
    pipes = [os.pipe() for _ in range(count)]
    failures: list[str] = []

    def drive(index: int) -> None:
        read_fd, write_fd = pipes[index]
        interpreter = Subinterpreter()
        try:
            tokens = interpreter.call(
                SETUP
                + 'gc.disable()\n'
                + f'result = gc_scenarios.make_garbage("i{index}u", {write_fd}, unregister=True)\n'
                + f'result |= gc_scenarios.make_garbage("i{index}r", {write_fd}, '
                'unregister=False)\n'
                + 'live = optree.tree_structure([gc_scenarios.Holder("live")])\n'
            )
            early = read_tokens(read_fd)
            if early:
                failures.append(f'interpreter {index}: freed while alive: {sorted(early)[:3]}')
        finally:
            interpreter.close()
        released = read_tokens(read_fd)
        if released != tokens:
            failures.append(f'interpreter {index}: not freed: {sorted(tokens - released)[:5]}')

    try:
        run_threads([lambda i=i: drive(i) for i in range(count)])
        assert not failures, failures[:3]
        report_figures(interpreters=count, cycles_per_interpreter=2 * len(GARBAGE_KINDS))
    finally:
        for read_fd, write_fd in pipes:
            os.close(read_fd)
            os.close(write_fd)
