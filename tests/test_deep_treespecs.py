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


def _chain_state(depth: int) -> tuple:
    """optree 0.20.0's pickle state of `depth` levels: one-element lists around a leaf."""
    leaf, list_kind = int(optree.PyTreeKind.LEAF), int(optree.PyTreeKind.LIST)
    nodes = [(leaf, 0, None, None, None, 1, 1, None)]
    nodes += [(list_kind, 1, None, None, None, 1, n, None) for n in range(2, depth + 1)]
    return (tuple(nodes), False, '')


def _setstate(state: tuple) -> optree.PyTreeSpec:
    spec = optree.PyTreeSpec.__new__(optree.PyTreeSpec)
    spec.__setstate__(state)
    return spec


def test_crafted_deep_pickle_is_rejected():
    assert _setstate(_chain_state(2)) == optree.tree_structure([1])
    with pytest.raises(RecursionError, match='PyTreeSpec depth'):
        _setstate(_chain_state(DEPTH_LIMIT + 10))


def test_pickle_state_of_a_deep_spec_is_flat():
    # Saving and loading walk the nodes in a loop: the state is a flat tuple, whatever the depth.
    spec = _chain(DEPTH_LIMIT)
    state = spec.__getstate__()
    assert state == _chain_state(DEPTH_LIMIT)
    assert _setstate(state) == spec
    assert pickle.loads(pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL)) == spec
