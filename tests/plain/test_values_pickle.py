"""Pickling treespecs, with hand-written expected values: round trips on every protocol keep the
structure, none_is_leaf and the node data; the state has optree 0.20.0's layout. No reference
interpreter needed (the values were read off optree 0.20.0)."""

from __future__ import annotations

import pickle
from collections import OrderedDict, namedtuple

import pytest

import optree

P = namedtuple('P', ['x', 'y'])
SPEC = optree.tree_structure({'x': OrderedDict(b=1, a=None), 'y': P(1, [2])}, none_is_leaf=True)


@pytest.mark.parametrize('protocol', range(pickle.HIGHEST_PROTOCOL + 1))
def test_round_trip(protocol):
    loaded = pickle.loads(pickle.dumps(SPEC, protocol))
    assert loaded == SPEC
    assert repr(loaded) == (
        "PyTreeSpec({'x': OrderedDict({'b': *, 'a': *}), 'y': P(x=*, y=[*])}, NoneIsLeaf)"
    )
    assert loaded.none_is_leaf is True
    assert loaded.unflatten([1, 2, 3, 4]) == {'x': OrderedDict(b=1, a=2), 'y': P(3, [4])}


def test_state_layout():
    nodes, none_is_leaf, namespace = SPEC.__getstate__()
    assert none_is_leaf is True
    assert namespace == ''
    # One tuple per node in post-order: (kind, arity, node data, ..., num_leaves, num_nodes, ...).
    assert nodes[2] == (7, 2, ['b', 'a'], None, None, 2, 3, None)
    assert nodes[-1] == (5, 2, ['x', 'y'], None, None, 4, 8, {'x': None, 'y': None})
    assert len(nodes) == SPEC.num_nodes


def test_a_leaf_spec_round_trips():
    spec = optree.treespec_leaf()
    assert pickle.loads(pickle.dumps(spec)) == spec
