"""Treespecs deeper than flatten can build (through compose, transform, from_collection or a
crafted pickle) are capped, so the structure queries, which recurse, never overflow the C stack.
"""

from __future__ import annotations

import pickle
import threading

import pytest

import optree

DEPTH_LIMIT = 4 * optree.MAX_RECURSION_DEPTH


def _chain(depth: int) -> optree.PyTreeSpec:
    """A spec of `depth` levels: nested one-element lists around a leaf, composed as needed."""
    step = min(depth, optree.MAX_RECURSION_DEPTH)
    tree: object = 0
    for _ in range(step - 1):
        tree = [tree]
    spec = optree.tree_structure(tree)
    levels = step
    while levels < depth:
        extra = min(depth - levels, optree.MAX_RECURSION_DEPTH - 1)
        spec = spec.compose(_chain(extra + 1))  # replacing the leaf adds `extra` levels
        levels += extra
    return spec


def _exercise(spec: optree.PyTreeSpec) -> None:
    rebuilt = spec.unflatten([1])
    assert spec.flatten_up_to(rebuilt) == [1]
    assert len(spec.paths()) == 1
    assert repr(spec).count('[') == spec.num_nodes - 1
    assert spec.is_prefix(spec)
    assert hash(spec) == hash(pickle.loads(pickle.dumps(spec)))
    assert len(spec.accessors()) == 1


def test_composed_specs_up_to_the_limit_work_in_a_thread():
    spec = _chain(DEPTH_LIMIT)
    assert spec.num_nodes == DEPTH_LIMIT
    errors: list[BaseException] = []

    def run() -> None:
        try:
            _exercise(spec)
        except BaseException as error:  # reported below
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert errors == []
    _exercise(spec)


def test_compose_beyond_the_limit_raises_recursion_error():
    spec = _chain(DEPTH_LIMIT)
    with pytest.raises(RecursionError, match='PyTreeSpec depth'):
        spec.compose(_chain(2))


def test_from_collection_beyond_the_limit_raises_recursion_error():
    spec = _chain(DEPTH_LIMIT)
    with pytest.raises(RecursionError, match='PyTreeSpec depth'):
        optree.treespec_list([spec])


def test_transform_beyond_the_limit_raises_recursion_error():
    spec = _chain(DEPTH_LIMIT // 2)
    with pytest.raises(RecursionError, match='PyTreeSpec depth'):
        spec.transform(None, lambda leaf: _chain(DEPTH_LIMIT // 2 + 2))


def test_crafted_deep_pickle_is_rejected():
    # The state layout: one record per node (kind byte, present-objects byte, 8-byte arity).
    def record(kind: int, arity: int) -> bytes:
        return bytes([kind, 0]) + arity.to_bytes(8, 'little')

    leaf, list_kind = 1, 4
    layout = record(leaf, 0) + record(list_kind, 1) * (DEPTH_LIMIT + 10)
    state = (layout, (), False, '')
    reduce_function = optree.tree_structure([1]).__reduce__()[0]
    assert reduce_function((record(leaf, 0) + record(list_kind, 1), (), False, '')) == (
        optree.tree_structure([1])
    )
    with pytest.raises(RecursionError, match='PyTreeSpec depth'):
        reduce_function(state)
