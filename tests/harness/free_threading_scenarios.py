"""Scenarios of ``test_free_threading.py``, each run in the main interpreter of a child process.

Readers flatten, unflatten, map and iterate shared trees while writers register and unregister
the node type of those trees and toggle ``dict_insertion_ordered`` in the same namespace. Every
node is classified against the registry as it is when the node is reached, so different nodes of
one tree may see different states; what must never happen is a node that is half one state and
half the other, a result that matches no state, a crash or a deadlock.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import optree
import optree._C as _C

from harness.subinterpreters import report_figures, run_threads

NAMESPACE = 'free-threading'


class Node:
    """Registered and unregistered over and over; equal by items, so results compare."""

    __slots__ = ('items',)

    def __init__(self, *items: Any) -> None:
        self.items = items

    def __eq__(self, other: object) -> bool:
        return type(other) is Node and other.items == self.items

    def __hash__(self) -> int:
        return hash(self.items)

    def __add__(self, other: int) -> Node:
        # A leaf Node maps to the same value as a flattened one: tree_map's result does not
        # depend on the registry state.
        return Node(*(item + other for item in self.items))

    def __repr__(self) -> str:
        return f'Node{self.items!r}'


def _flatten_node(node: Node) -> tuple[tuple[Any, ...], None]:
    return node.items, None


def _unflatten_node(metadata: None, children: Any) -> Node:
    return Node(*children)


def shared_tree(size: int) -> list[dict[str, Any]]:
    # Insertion order 'b' then 'a' differs from sorted order: a dict shows which it used.
    return [{'b': Node(2 * i, 2 * i + 1), 'a': 10_000 + i} for i in range(size)]


def _match_leaves(leaves: list[Any], tree: list[dict[str, Any]]) -> None:
    """The leaves of ``tree`` where each dict is sorted or insertion-ordered, and each Node is a
    leaf or two leaves; raise AssertionError naming the first element matching neither."""
    position = 0

    def take_node(node: Node) -> None:
        nonlocal position
        if leaves[position] is node:
            position += 1
        else:
            assert leaves[position : position + 2] == list(node.items), (position, leaves)
            position += 2

    for index, element in enumerate(tree):
        assert position < len(leaves), f'leaves end at element {index}'
        if leaves[position] == element['a']:  # sorted: 'a' first
            position += 1
            take_node(element['b'])
        else:  # insertion order: 'b' first
            take_node(element['b'])
            assert leaves[position] == element['a'], (index, position, leaves[position])
            position += 1
    assert position == len(leaves), f'{len(leaves) - position} extra leaves'


def scenario_gil_stays_disabled() -> None:
    assert not sys._is_gil_enabled(), 'the GIL was enabled before optree was imported'
    import optree.accessors
    import optree.dataclasses
    import optree.functools

    assert not sys._is_gil_enabled(), 'importing optree enabled the GIL'
    tree = shared_tree(100)
    optree.register_pytree_node(Node, _flatten_node, _unflatten_node, namespace=NAMESPACE)
    leaves, spec = optree.tree_flatten(tree, namespace=NAMESPACE)
    assert optree.tree_unflatten(spec, leaves) == tree
    run_threads([lambda: optree.tree_map(lambda x: x + 1, tree, namespace=NAMESPACE)] * 4)
    assert not sys._is_gil_enabled(), 'using optree enabled the GIL'


def scenario_readers_and_writers(
    readers: int, writers: int, seconds: float, tree_size: int
) -> None:
    """``readers`` threads flatten / unflatten / map / iterate one shared tree while ``writers``
    threads register and unregister ``Node`` and toggle dict order in the same namespace."""
    tree = shared_tree(tree_size)
    mapped = [{'b': node['b'] + 1, 'a': node['a'] + 1} for node in tree]
    baseline_size = _C.get_registry_size(NAMESPACE)
    stop = threading.Event()
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def count(name: str, amount: int) -> None:
        with lock:
            counts[name] = counts.get(name, 0) + amount

    def reader(kind: int) -> None:
        done = 0
        specs = []
        while not stop.is_set():
            operation = (done + kind) % 4
            if operation == 0:
                leaves, spec = optree.tree_flatten(tree, namespace=NAMESPACE)
                _match_leaves(leaves, tree)
                assert spec.num_leaves == len(leaves)
                specs.append((spec, leaves))
            elif operation == 1 and specs:
                # Unflatten a treespec made under an earlier registry state: it keeps what its
                # nodes were registered with, whatever the registry says now.
                spec, leaves = specs.pop()
                assert optree.tree_unflatten(spec, leaves) == tree
            elif operation == 2:
                assert optree.tree_map(lambda x: x + 1, tree, namespace=NAMESPACE) == mapped
            else:
                _match_leaves(list(optree.tree_iter(tree, namespace=NAMESPACE)), tree)
            done += 1
        count('reader operations', done)

    def register_toggler() -> None:
        toggles = 0
        while not stop.is_set():
            try:
                optree.register_pytree_node(
                    Node, _flatten_node, _unflatten_node, namespace=NAMESPACE
                )
            except ValueError:
                pass  # another writer registered it first
            try:
                optree.unregister_pytree_node(Node, namespace=NAMESPACE)
            except ValueError:
                pass  # another writer unregistered it first
            toggles += 1
        count('register/unregister toggles', toggles)

    def order_toggler() -> None:
        toggles = 0
        while not stop.is_set():
            _C.set_dict_insertion_ordered(toggles % 2 == 0, NAMESPACE)
            assert _C.is_dict_insertion_ordered(NAMESPACE, False) in (True, False)
            toggles += 1
        count('dict order toggles', toggles)

    def timer() -> None:
        time.sleep(seconds)
        stop.set()

    writer_threads = [register_toggler if i % 2 == 0 else order_toggler for i in range(writers)]
    run_threads(
        [lambda k=k: reader(k) for k in range(readers)] + writer_threads + [timer],
        timeout=seconds + 120,
    )
    _C.set_dict_insertion_ordered(False, NAMESPACE)
    try:
        optree.unregister_pytree_node(Node, namespace=NAMESPACE)
    except ValueError:
        pass
    assert _C.get_registry_size(NAMESPACE) == baseline_size
    assert not sys._is_gil_enabled()
    assert counts['reader operations'] >= readers, counts
    report_figures(threads=readers + writers, seconds=seconds, **counts)


def scenario_racing_registrations(threads: int, rounds: int) -> None:
    """Threads register the same type at once (exactly one wins each round) and distinct types
    (all win); afterwards every registration is gone again."""
    baseline = _C.get_registry_size(NAMESPACE)
    own_types = [type(f'Own{i}', (Node,), {'__slots__': ()}) for i in range(threads)]
    barrier = threading.Barrier(threads, timeout=60)
    wins = [0] * threads

    def racer(index: int) -> None:
        for _ in range(rounds):
            barrier.wait()
            try:
                optree.register_pytree_node(
                    Node, _flatten_node, _unflatten_node, namespace=NAMESPACE
                )
                wins[index] += 1
            except ValueError:
                pass
            optree.register_pytree_node(
                own_types[index], _flatten_node, _unflatten_node, namespace=NAMESPACE
            )
            assert optree.tree_leaves(own_types[index](1, 2), namespace=NAMESPACE) == [1, 2]
            barrier.wait()
            if index == 0:
                optree.unregister_pytree_node(Node, namespace=NAMESPACE)
            optree.unregister_pytree_node(own_types[index], namespace=NAMESPACE)
            barrier.wait()
            assert _C.get_registry_size(NAMESPACE) == baseline

    run_threads([lambda i=i: racer(i) for i in range(threads)], timeout=300)
    assert sum(wins) == rounds, wins
    assert _C.get_registry_size(NAMESPACE) == baseline
    report_figures(threads=threads, rounds=rounds)


def scenario_pickling_races(threads: int, seconds: float, tree_size: int) -> None:
    """Threads pickle and unpickle one shared treespec, and load one shared pickle state whose
    key lists and original-key dicts another thread keeps changing in place. Each load gives a
    consistent treespec or a RuntimeError (a state caught half-changed), never a crash."""
    import pickle

    tree = shared_tree(tree_size)
    optree.register_pytree_node(Node, _flatten_node, _unflatten_node, namespace=NAMESPACE)
    leaves, spec = optree.tree_flatten(tree, namespace=NAMESPACE)
    state = spec.__getstate__()
    stop = threading.Event()
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def count(name: str, amount: int) -> None:
        with lock:
            counts[name] = counts.get(name, 0) + amount

    def round_tripper() -> None:
        done = 0
        while not stop.is_set():
            loaded = pickle.loads(pickle.dumps(spec))
            assert loaded == spec
            assert optree.tree_unflatten(loaded, leaves) == tree
            done += 1
        count('pickle round trips', done)

    def state_loader() -> None:
        loaded_count = rejected = 0
        while not stop.is_set():
            loaded = optree.PyTreeSpec.__new__(optree.PyTreeSpec)
            try:
                loaded.__setstate__(state)
            except RuntimeError as ex:
                assert 'Malformed pickled PyTreeSpec' in str(ex), ex
                rejected += 1
                continue
            assert loaded.num_leaves == len(leaves)
            rebuilt = loaded.unflatten(leaves)
            assert len(optree.tree_leaves(rebuilt, namespace=NAMESPACE)) == len(leaves)
            assert loaded.__getstate__()[0][-1][0] == optree.PyTreeKind.LIST
            loaded_count += 1
        count('states loaded', loaded_count)
        count('states rejected', rejected)

    def scribbler() -> None:
        changes = 0
        while not stop.is_set():
            for node in state[0]:
                if type(node[2]) is list:
                    node[2].reverse()
                if type(node[7]) is dict and node[7]:
                    key = next(iter(node[7]))
                    del node[7][key]
                    node[7][key] = None
            changes += 1
        count('state changes', changes)

    def timer() -> None:
        time.sleep(seconds)
        stop.set()

    workers = [round_tripper if i % 2 == 0 else state_loader for i in range(threads)]
    run_threads([*workers, scribbler, timer], timeout=seconds + 120)
    optree.unregister_pytree_node(Node, namespace=NAMESPACE)
    assert not sys._is_gil_enabled()
    report_figures(threads=threads + 1, seconds=seconds, **counts)
